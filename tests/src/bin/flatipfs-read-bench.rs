//! `flatipfs-read-bench`: the read measurements of `scripts/bench-reads.sh`,
//! done the same way on any tree (a mount, its local copy), so that the two
//! can be compared side by side in one run.
//!
//!     flatipfs-read-bench seq ROOT            # read every file once, in order
//!     flatipfs-read-bench random ROOT COUNT   # COUNT random 4 KiB preads
//!     flatipfs-read-bench drop DIR            # drop DIR's files from the page cache
//!
//! `seq` and `random` print the seconds taken and the bytes read. The files
//! are taken in path order and the random offsets come from a fixed seed, so
//! two trees with the same content get exactly the same reads. `drop` uses
//! `posix_fadvise(DONTNEED)`, which needs no privilege (the machine's
//! `drop_caches` may not be writable).

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Regular files below `root`, in path order.
fn files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort_by(|a, b| a.strip_prefix(root).ok().cmp(&b.strip_prefix(root).ok()));
    Ok(out)
}

fn seq(root: &Path) -> Result<(f64, u64)> {
    let files = files(root)?;
    let mut buffer = vec![0u8; 128 << 10];
    let started = Instant::now();
    let mut bytes = 0u64;
    for path in &files {
        let mut file = File::open(path)?;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    Ok((started.elapsed().as_secs_f64(), bytes))
}

fn random(root: &Path, count: u64) -> Result<(f64, u64)> {
    let mut open = Vec::new();
    for path in files(root)? {
        let size = std::fs::metadata(&path)?.len();
        if size >= 4096 {
            open.push((File::open(&path)?, size));
        }
    }
    if open.is_empty() {
        bail!("no file of 4 KiB or more below {}", root.display());
    }
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    let mut bytes = 0u64;
    for _ in 0..count {
        let (file, size) = &open[(next() % open.len() as u64) as usize];
        let offset = (next() % (size - 4095)) & !4095;
        file.read_exact_at(&mut buffer, offset.min(size - 4096))?;
        bytes += 4096;
    }
    Ok((started.elapsed().as_secs_f64(), bytes))
}

fn drop_cache(dir: &Path) -> Result<()> {
    for path in files(dir)? {
        let file = File::open(&path)?;
        nix::fcntl::posix_fadvise(
            file.as_raw_fd(),
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str> {
        args.get(i)
            .map(String::as_str)
            .context("usage: flatipfs-read-bench seq ROOT | random ROOT COUNT | drop DIR")
    };
    let (seconds, bytes) = match arg(0)? {
        "seq" => seq(Path::new(arg(1)?))?,
        "random" => random(Path::new(arg(1)?), arg(2)?.parse()?)?,
        "drop" => return drop_cache(Path::new(arg(1)?)),
        other => bail!("unknown command {other:?}"),
    };
    println!("{seconds:.6} {bytes}");
    Ok(())
}
