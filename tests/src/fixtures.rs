//! Test fixtures built once per machine and shared by tests.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::paths;
use crate::stack::run_ok;

/// The test apps of `tests/fixtures/make-test-apps.sh` (runtime
/// `org.test.Platform`, app `org.test.Hello` v1 and v2), built into
/// `target/test-apps` on first use.
pub fn test_apps() -> Result<PathBuf> {
    let out = paths::project_root().join("target/test-apps");
    std::fs::create_dir_all(out.parent().unwrap())?;
    let lock = File::create(paths::project_root().join("target/test-apps.lock"))?;
    let _guard = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e)?;
    paths::system_program("/usr/bin/flatpak", "flatpak")?;
    let script = paths::project_root().join("tests/fixtures/make-test-apps.sh");
    run_ok(Command::new("bash").arg(&script).arg(&out)).context("building the test apps")?;
    Ok(out)
}

/// The ref of the test app.
pub fn hello_ref(apps: &std::path::Path) -> Result<String> {
    let arch = std::fs::read_to_string(apps.join("arch"))?;
    Ok(format!("app/org.test.Hello/{}/master", arch.trim()))
}

/// Deploys `reference` from `repo` with the real flatpak into a scratch user
/// installation in `into`; returns the deploy directory (as a publisher
/// would have it after `flatpak install`).
pub fn deploy_dir(
    repo: &std::path::Path,
    reference: &str,
    into: &std::path::Path,
) -> Result<PathBuf> {
    let flatpak = |args: &[&str]| {
        run_ok(
            Command::new("flatpak")
                .env("FLATPAK_USER_DIR", into)
                .args(args),
        )
    };
    flatpak(&[
        "--user",
        "remote-add",
        "--if-not-exists",
        "--no-gpg-verify",
        "src",
        &format!("file://{}", repo.display()),
    ])?;
    flatpak(&[
        "--user",
        "install",
        "-y",
        "--noninteractive",
        "--no-deps",
        "src",
        reference,
    ])?;
    let parts: Vec<&str> = reference.split('/').collect();
    Ok(std::fs::canonicalize(
        into.join(parts[0])
            .join(parts[1])
            .join(parts[2])
            .join(parts[3])
            .join("active"),
    )?)
}
