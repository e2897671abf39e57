//! Flatpak's deploy triggers: after the exports of the installation change
//! (install, update, rollback, uninstall), the scripts Flatpak runs after a
//! deploy (`/usr/share/flatpak/triggers/*.trigger`, or `$FLATPAK_TRIGGERSDIR`:
//! desktop database, icon cache, MIME database) are run on the installation,
//! so the desktop's application list follows. As Flatpak does, each runs in
//! `bwrap` with the whole system read-only, only the installation writable,
//! no network; each has a time limit; a failure is logged, never fatal.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// Longest a trigger may run.
const LIMIT: Duration = Duration::from_secs(60);

fn triggers_dir() -> PathBuf {
    std::env::var_os("FLATPAK_TRIGGERSDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/flatpak/triggers"))
}

fn bwrap() -> Option<PathBuf> {
    ["/usr/bin/bwrap", "/usr/local/bin/bwrap"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The triggers to run, in name order.
pub fn list() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(triggers_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "trigger") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Runs every trigger on `installation`; returns the ones that failed.
pub fn run(installation: &Path) -> Vec<String> {
    let Some(bwrap) = bwrap() else {
        warn!("bwrap not found: Flatpak's triggers not run; the desktop may not see new apps until its next login");
        return vec!["bwrap not found".into()];
    };
    let base = installation.to_string_lossy().to_string();
    let mut failed = Vec::new();
    for trigger in list() {
        let name = trigger.display().to_string();
        let child = Command::new(&bwrap)
            .args([
                "--unshare-ipc",
                "--unshare-net",
                "--unshare-pid",
                "--die-with-parent",
            ])
            .args(["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"])
            .args(["--bind", &base, &base])
            .arg(&trigger)
            .arg(&base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                warn!(trigger = %name, "trigger not started: {e}");
                failed.push(name);
                continue;
            }
        };
        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() > LIMIT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break None,
            }
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(
                &mut std::io::Read::take(&mut pipe, 4096),
                &mut stderr,
            );
        }
        match status {
            Some(s) if s.success() => debug!(trigger = %name, "trigger ran"),
            Some(s) => {
                warn!(trigger = %name, %s, stderr = %stderr.trim(), "trigger failed");
                failed.push(name);
            }
            None => {
                warn!(trigger = %name, "trigger killed after {LIMIT:?}");
                failed.push(name);
            }
        }
    }
    failed
}
