//! Where the project's files, its built binaries and Kubo are.
//!
//! A missing component is an error that says how to get it, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The repository's top directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding `flatipfsd` and `flatipfsctl`: `$FLATIPFS_BIN_DIR`,
/// or the cargo target directory this program was built into.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLATIPFS_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1) {
        if dir.join("flatipfsd").is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    bail!(
        "flatipfsd was not found next to {}: build the workspace first (`cargo build --workspace`) or set FLATIPFS_BIN_DIR",
        exe.display()
    )
}

/// A built binary of this workspace.
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo build --workspace`",
            path.display()
        );
    }
    // `cargo test` builds test targets, not these binaries: refuse to test
    // an old build against new sources.
    let built = std::fs::metadata(&path)?.modified()?;
    let crates: &[&str] = match name {
        "flatipfsd" => &["daemon/src", "dbus/src", "format/src"],
        "flatipfsctl" => &["client/src", "dbus/src"],
        _ => &[],
    };
    let newest = newest_source(&project_root(), crates);
    if let Some((time, source)) = newest {
        if time > built {
            bail!(
                "{} is older than {}: run `cargo build --workspace` (scripts/test.sh does)",
                path.display(),
                source.display()
            );
        }
    }
    Ok(path)
}

/// The most recently changed Rust source below `dirs` (relative to `root`).
fn newest_source(root: &Path, dirs: &[&str]) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut dirs: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(time) = entry.metadata().and_then(|m| m.modified()) {
                    if newest.as_ref().is_none_or(|(t, _)| time > *t) {
                        newest = Some((time, path));
                    }
                }
            }
        }
    }
    newest
}

/// The Kubo binary: `$FLATIPFS_KUBO`, else the one `scripts/build-kubo.sh`
/// builds (or finds in its cache).
pub fn kubo_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("FLATIPFS_KUBO") {
        return Ok(PathBuf::from(path));
    }
    let script = project_root().join("scripts/build-kubo.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}; install Go and run it by hand to see why",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

/// A program from a Debian package, required by the tests.
pub fn system_program(path: &str, package: &str) -> Result<PathBuf> {
    let path = PathBuf::from(path);
    if !path.exists() {
        bail!(
            "{} is missing: install the Debian package `{package}` (scripts/setup.sh does)",
            path.display()
        );
    }
    Ok(path)
}
