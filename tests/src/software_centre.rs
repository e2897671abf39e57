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
/// Its settings (a GSettings keyfile): no welcome dialog, no automatic
/// downloads of updates behind the test's back.
pub fn home(stack: &Stack) -> PathBuf {
    let home = stack.dir.join("gs-home");
    let settings = home.join("config/glib-2.0/settings");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::write(
        settings.join("keyfile"),
        "[org/gnome/software]\nfirst-run=false\ndownload-updates=false\nallow-updates=true\n",
    )
    .unwrap();
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
        .env("GSETTINGS_BACKEND", "keyfile")
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

/// Starts `gnome-software --mode=MODE` under Xvfb against `stack` and
/// takes a screenshot of the whole screen every 2 s into `shots/` (below
/// the stack) until `ready(shot)` says yes or `seconds` pass; returns the
/// accepted screenshot's path.
pub fn screenshot_when(
    stack: &Stack,
    mode: &str,
    seconds: u32,
    ready: impl Fn(&Path) -> bool,
) -> Result<PathBuf> {
    install_plugin()?;
    let shots = stack.dir.join("shots");
    std::fs::create_dir_all(&shots)?;
    // The script runs inside the X server's and the session bus's life.
    let script = format!(
        "gnome-software --verbose --mode={mode} >\"{dir}/gnome-software.log\" 2>&1 &\n\
         gs=$!\n\
         i=0\n\
         while [ $i -lt {n} ]; do\n\
           sleep 2; i=$((i+1))\n\
           import -window root \"{dir}/shot-$i.png\" 2>/dev/null\n\
           [ -e \"{dir}/stop\" ] && break\n\
         done\n\
         kill $gs; wait $gs 2>/dev/null; exit 0\n",
        dir = shots.display(),
        n = seconds / 2,
    );
    let mut child = headless(stack, "sh", &["-c", &script]).spawn()?;
    let mut found = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds as u64 + 30);
    let mut next = 1;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("the headless session failed: {status}");
            }
            // Look at what is left, then stop.
        }
        let shot = shots.join(format!("shot-{next}.png"));
        let after = shots.join(format!("shot-{}.png", next + 1));
        // A screenshot is complete once the next one is started (or the
        // script is over).
        if shot.exists() && (after.exists() || child.try_wait()?.is_some()) {
            if is_png(&shot) && ready(&shot) {
                found = Some(shot);
                break;
            }
            next += 1;
            continue;
        }
        if child.try_wait()?.is_some() && !shot.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    std::fs::write(shots.join("stop"), b"")?;
    let _ = child.wait();
    if found.is_none() {
        // Kept for a look after the stack's directory is gone.
        let keep = paths::project_root().join("target/gnome-software-shots");
        let _ = std::fs::remove_dir_all(&keep);
        let _ = Command::new("cp").arg("-r").arg(&shots).arg(&keep).status();
        bail!(
            "no screenshot was accepted; the screenshots and the log are in {}",
            keep.display()
        );
    }
    Ok(found.unwrap())
}

/// How many pixels of the PNG at `path` have colour `rgb` (±8 per channel).
pub fn pixels_of_colour(path: &Path, rgb: [u8; 3]) -> Result<usize> {
    let out = Command::new("convert")
        .arg(path)
        .args(["-depth", "8", "rgb:-"])
        .output()
        .context("convert (imagemagick)")?;
    if !out.status.success() {
        bail!("convert failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out
        .stdout
        .chunks_exact(3)
        .filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 8))
        .count())
}

/// `gnome-software-cmd ARGS` against `stack` run as test user `user` (its
/// own X server, session bus and home, owned by it); every plugin error is
/// made the command's (GS_SELF_TEST_PLUGIN_ERROR_FAIL_HARD).
pub fn gs_cmd_as(stack: &Stack, user: &str, args: &[&str]) -> Result<Output> {
    install_plugin()?;
    let home = stack.dir.join(format!("gs-home-{user}"));
    let settings = home.join("config/glib-2.0/settings");
    std::fs::create_dir_all(&settings)?;
    std::fs::write(
        settings.join("keyfile"),
        "[org/gnome/software]\nfirst-run=false\ndownload-updates=false\n",
    )?;
    let account = nix::unistd::User::from_name(user)?.with_context(|| format!("no user {user}"))?;
    let chown = Command::new("chown")
        .args(["-R", &format!("{}:{}", account.uid, account.gid)])
        .arg(&home)
        .status()?;
    if !chown.success() {
        bail!("chown {} failed", home.display());
    }
    let mut command = crate::users::as_user(user, "xvfb-run")?;
    command
        .args([
            "-a",
            "dbus-run-session",
            "--",
            GS_CMD,
            "--plugin-blocklist=packagekit",
        ])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus_address)
        .env("FLATPAK_CONFIG_DIR", stack.flatpak_config_dir())
        .env("GS_SELF_TEST_PLUGIN_ERROR_FAIL_HARD", "1")
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_RUNTIME_DIR", &home)
        .env("GSETTINGS_BACKEND", "keyfile")
        .env("NO_AT_BRIDGE", "1")
        .env("TMPDIR", "/tmp")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("DISPLAY")
        .current_dir(&home);
    command
        .output()
        .context("running gnome-software-cmd as a test user")
}
