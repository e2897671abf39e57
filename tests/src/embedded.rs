//! The daemon's embedded Kubo node as tests see it: its system user, its
//! API socket under the state directory (reachable by root only), and its
//! process (a child of `flatipfsd`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::unistd::User;

use crate::stack::{KuboNode, Stack};

/// The daemon's default `kubo.user` (scripts/setup.sh creates it).
pub const KUBO_USER: &str = "flatipfs-kubo";

/// Creates [`KUBO_USER`] if it is missing, as scripts/setup.sh does.
pub fn ensure_kubo_user() -> Result<()> {
    if User::from_name(KUBO_USER)?.is_some() {
        return Ok(());
    }
    let output = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            KUBO_USER,
        ])
        .output()
        .context("cannot run useradd: install the Debian package `passwd`")?;
    // Another test may have created it in the meantime.
    if !output.status.success() && User::from_name(KUBO_USER)?.is_none() {
        bail!(
            "useradd {KUBO_USER} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The embedded node's API socket in a stack's state directory.
pub fn socket(state: &Path) -> PathBuf {
    state.join("kubo-api/api.sock")
}

/// The embedded node of the stack in `dir`, as a [`KuboNode`] numbered
/// `number`: its repository, and its API as a `/unix/` multiaddr.
pub fn node(dir: &Path, number: usize) -> KuboNode {
    let state = dir.join("state");
    KuboNode {
        number,
        repo: state.join("kubo"),
        api: format!("/unix{}", socket(&state).display()),
        address: String::new(),
    }
}

/// The live `ipfs` processes whose parent is `parent` (the daemon). Run
/// through `/proc/self/fd` when its path is not public, the node's command
/// name is then a number; its executable is still `ipfs`.
pub fn ipfs_children(parent: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let is_ipfs = name == "ipfs" || exe.file_name().is_some_and(|n| n == "ipfs");
        if is_ipfs && fields.get(1) == Some(&parent.to_string().as_str()) && fields[0] != "Z" {
            found.push(pid);
        }
    }
    found
}

/// The one embedded node process of `stack`'s daemon.
pub fn process(stack: &Stack) -> Result<i32> {
    let daemon = stack.process("flatipfsd")?;
    match ipfs_children(daemon.pid).as_slice() {
        [pid] => Ok(*pid),
        other => bail!("expected one embedded ipfs process, found {other:?}"),
    }
}
