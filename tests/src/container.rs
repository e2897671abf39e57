//! A Debian 12 container booted with systemd as PID 1, for the test of the
//! Debian package (tests/tests/packaging.rs).
//!
//! The root is made once with `debootstrap --variant=minbase` from the mirror
//! this machine's apt uses (`scripts/debian-mirror.sh`) and cached outside
//! the repository (`~/.cache/flatipfs/container/bookworm`); every boot gets
//! an overlay of it, thrown away afterwards. `systemd-nspawn --boot
//! --register=no --keep-unit` runs it (this machine has no systemd as PID 1);
//! commands run inside through `nsenter` into the container's init. The
//! container shares the host's network, so its Kubo node reaches a
//! publisher's on the host's loopback. `/dev/fuse` is bound in (a 0666 node
//! of our own, never the host's node with its mode changed).
//! See `../shared/reference/system-services.md`, "Booting the real unit".

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::paths;

/// What the cached root has besides minbase: systemd as init, the bus,
/// polkit (with logind), and what the package depends on, so that `dpkg -i`
/// needs no network.
pub const INCLUDE: &str =
    "systemd,systemd-sysv,dbus,polkitd,libpam-systemd,flatpak,adduser,fuse3,ca-certificates";

fn cache() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    std::env::var_os("FLATIPFS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".cache/flatipfs"))
        .join("container")
}

/// The cached Debian 12 root, made first if missing (about a minute and
/// 370 MB; needs the network).
pub fn debian_root() -> Result<PathBuf> {
    let dir = cache();
    fs::create_dir_all(&dir)?;
    let lock = File::create(dir.join("lock"))?;
    let _guard = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("cannot lock the container cache")?;
    let root = dir.join("bookworm");
    let stamp = dir.join("bookworm.include");
    if root.join("usr/lib/systemd/systemd").exists()
        && fs::read_to_string(&stamp).ok().as_deref().map(str::trim) == Some(INCLUDE)
    {
        return Ok(root);
    }
    let _ = fs::remove_dir_all(&root);
    let tmp = dir.join("root.tmp");
    let _ = fs::remove_dir_all(&tmp);
    let mirror =
        run(Command::new("bash").arg(paths::project_root().join("scripts/debian-mirror.sh")))?;
    let debootstrap = paths::system_program("/usr/sbin/debootstrap", "debootstrap")?;
    run(Command::new(debootstrap)
        .arg("--variant=minbase")
        .arg(format!("--include={INCLUDE}"))
        .arg("bookworm")
        .arg(&tmp)
        .arg(mirror.trim()))?;
    fs::rename(&tmp, &root)?;
    fs::write(&stamp, format!("{INCLUDE}\n"))?;
    Ok(root)
}

fn run(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A booted container; powered off and its overlay removed on drop.
pub struct Container {
    nspawn: Child,
    /// The container's PID 1, as the host sees it.
    pub init: u32,
    /// The container's root directory as the host sees it.
    pub root: PathBuf,
    dir: tempfile::TempDir,
    /// Held until after teardown (fields drop after `drop`).
    _lock: Flock<File>,
}

impl Container {
    /// Boots a fresh overlay of [`debian_root`] as machine `name`.
    pub fn boot(name: &str) -> Result<Container> {
        let lower = debian_root()?;
        // nspawn names its cgroups `payload` and `supervisor` below ours
        // here: one container at a time.
        let lock = File::create("/run/flatipfs-tests-container.lock")?;
        let lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .context("cannot lock the container slot")?;
        let dir = tempfile::Builder::new()
            .prefix("flatipfs-container-")
            .tempdir_in("/var/tmp")?;
        let (upper, work, root) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("root"),
        );
        for d in [&upper, &work, &root] {
            fs::create_dir(d)?;
        }
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            ))
            .arg(&root))?;
        let fuse = dir.path().join("fuse");
        run(Command::new("mknod")
            .args(["-m", "666"])
            .arg(&fuse)
            .args(["c", "10", "229"]))?;
        let log = File::create(dir.path().join("console.log"))?;
        let nspawn = paths::system_program("/usr/bin/systemd-nspawn", "systemd-container")?;
        let nspawn = Command::new(nspawn)
            .arg("-D")
            .arg(&root)
            .args([
                "--boot",
                "-M",
                name,
                "--register=no",
                "--keep-unit",
                "--console=pipe",
            ])
            .arg(format!("--bind={}:/dev/fuse", fuse.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start systemd-nspawn")?;
        let mut container = Container {
            init: 0,
            nspawn,
            root,
            dir,
            _lock: lock,
        };
        let start = Instant::now();
        let pid = container.nspawn.id();
        while container.init == 0 {
            if let Ok(children) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
                if let Some(first) = children.split_whitespace().next() {
                    container.init = first.parse()?;
                }
            }
            if let Some(status) = container.nspawn.try_wait()? {
                bail!("systemd-nspawn ended ({status}): {}", container.console());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("no init in the container: {}", container.console());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // `running`, or `degraded` if some unit of the minimal image failed.
        loop {
            let state = container.exec(&["systemctl", "is-system-running"])?;
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!("the container is {state:?}: {}", container.console());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(container)
    }

    /// What the container printed on its console.
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    /// Runs `args` inside as root, with a clean environment.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        self.command(args)
            .output()
            .with_context(|| format!("cannot nsenter for {args:?}"))
    }

    /// The command [`Container::exec`] runs.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg("-t")
            .arg(self.init.to_string())
            .args(["-a", "--", "env", "-i"])
            .args([
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
            ])
            .args(args);
        command
    }

    /// Runs `args` inside; its stdout, or an error with both outputs.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.exec(args)?;
        if !out.status.success() {
            bail!(
                "{args:?} in the container failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Copies a host file into the container at `to` (an absolute path).
    pub fn copy_in(&self, from: &Path, to: &str) -> Result<()> {
        let target = self.root.join(to.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(from, &target)
            .with_context(|| format!("cannot copy {} into the container", from.display()))?;
        Ok(())
    }

    /// Waits until `args` succeeds inside; its stdout.
    pub fn wait_ok(&self, what: &str, timeout: Duration, args: &[&str]) -> Result<String> {
        let start = Instant::now();
        loop {
            match self.ok(args) {
                Ok(out) => return Ok(out),
                Err(e) if start.elapsed() > timeout => bail!("{what}: {e:#}"),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.exec(&["systemctl", "poweroff"]);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(None) = self.nspawn.try_wait() {
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        // Anything still mounted below the root (FUSE mounts of a killed
        // daemon), then the overlay itself.
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&self.root)
            .output();
        // What nspawn leaves behind here (system-services.md).
        for cgroup in ["systemd", "unified"] {
            for sub in ["payload/init.scope", "payload", "supervisor"] {
                let _ = fs::remove_dir(format!("/sys/fs/cgroup/{cgroup}/{sub}"));
            }
        }
    }
}
