//! A polkit text agent for this process while it makes a call that may need
//! a password, as `pkexec` and `systemctl` do: when stdin is a terminal and
//! the caller is not root (root passes without polkit), `pkttyagent
//! --process <own pid> --notify-fd N` runs as a child in the terminal's
//! foreground process group (so it may read the password), the call waits
//! until the agent has registered (it closes N), and the agent is stopped
//! once the call has returned. No `--fallback`: polkit ignores fallback
//! agents of a process without a login session. A missing `pkttyagent`
//! (Debian package `pkexec`) is not an error: the call then fails with
//! `InteractiveAuthorizationRequired` as before.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The longest wait for the agent to register before the call goes ahead.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `pkttyagent`, stopped on drop.
pub struct Agent {
    child: Child,
}

impl Agent {
    /// Starts an agent for this process, if a person may answer it.
    pub async fn start() -> Option<Agent> {
        if !std::io::stdin().is_terminal() || nix::unistd::geteuid().is_root() {
            return None;
        }
        let (read, write) = nix::unistd::pipe().ok()?;
        // Only the agent gets the write end.
        fcntl(read.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
        let child = Command::new("pkttyagent")
            .arg("--process")
            .arg(std::process::id().to_string())
            .arg("--notify-fd")
            .arg(write.as_raw_fd().to_string())
            .stdin(Stdio::inherit())
            // Its banner goes with our messages on stderr; stdout stays ours
            // (pure JSON with --json).
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        drop(write);
        // EOF once the agent has registered, or has exited.
        let registered = tokio::task::spawn_blocking(move || {
            let mut read = File::from(read);
            let mut buf = [0u8; 64];
            while let Ok(n) = read.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        });
        let _ = tokio::time::timeout(REGISTER_TIMEOUT, registered).await;
        Some(Agent { child })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let _ = self.child.wait();
    }
}
