//! Driving the real GNOME Software against a stack: the flatipfs plugin
//! built and installed (`gnome-software/`, `make install`), then
//! `gnome-software-cmd` or `gnome-software` under `xvfb-run
//! dbus-run-session` with the stack's system bus, a throw-away home, and
//! PackageKit's plugin blocked (no PackageKit on the private bus).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

use crate::{paths, Stack};

/// `gnome-software-cmd`.
pub const GS_CMD: &str = "/usr/libexec/gnome-software-cmd";

/// Builds and installs the plugin (once per test process).
pub fn install_plugin() -> Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let dir = paths::project_root().join("gnome-software");
        let out = Command::new("make")
            .args(["-C", dir.to_str().unwrap(), "install"])
            .output()
            .map_err(|e| format!("make: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building the GNOME Software plugin failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A home directory for GNOME Software (its caches), below the stack.
pub fn home(stack: &Stack) -> PathBuf {
    let home = stack.dir.join("gs-home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// `program ARGS` under `xvfb-run dbus-run-session` against `stack`.
pub fn headless(stack: &Stack, program: &str, args: &[&str]) -> Command {
    let home = home(stack);
    let mut command = Command::new("xvfb-run");
    command
        .args([
            "-a",
            "-s",
            "-screen 0 1280x900x24",
            "dbus-run-session",
            "--",
            program,
        ])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus_address)
        .env("FLATPAK_CONFIG_DIR", stack.flatpak_config_dir())
        .env("GNOME_SOFTWARE_PLUGINS_BLOCKLIST", "packagekit")
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("GSETTINGS_BACKEND", "memory")
        .env("NO_AT_BRIDGE", "1")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("DISPLAY");
    command
}

/// `gnome-software-cmd ARGS` against `stack`; its output.
pub fn gs_cmd(stack: &Stack, args: &[&str]) -> Result<Output> {
    install_plugin()?;
    let mut all = vec!["--plugin-blocklist=packagekit"];
    all.extend_from_slice(args);
    headless(stack, GS_CMD, &all)
        .output()
        .context("running gnome-software-cmd under xvfb-run")
}

/// Like [`gs_cmd`]; stdout, failing unless it succeeded.
pub fn gs_cmd_ok(stack: &Stack, args: &[&str]) -> Result<String> {
    let out = gs_cmd(stack, args)?;
    if !out.status.success() {
        bail!(
            "gnome-software-cmd {args:?} failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Whether `path` is a PNG.
pub fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|d| d.starts_with(b"\x89PNG"))
}

/// `gnome-software-cmd ARGS` with a system bus on which no flatipfsd runs
/// (the session bus of `dbus-run-session` stands in for it).
pub fn gs_cmd_without_daemon(stack: &Stack, args: &[&str]) -> Result<Output> {
    install_plugin()?;
    let mut script = String::from(
        "DBUS_SYSTEM_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS exec \"$0\" --plugin-blocklist=packagekit \"$@\"",
    );
    script.push('\n');
    let mut all = vec!["-c", script.as_str(), GS_CMD];
    all.extend_from_slice(args);
    headless(stack, "sh", &all)
        .output()
        .context("running gnome-software-cmd under xvfb-run")
}
