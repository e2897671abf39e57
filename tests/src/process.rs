//! Detached processes a stack owns, recorded so that exactly they are stopped.
//!
//! Each process is started in its own session (so it outlives a `flatipfs-stack
//! up` that returns, and a terminal's Ctrl-C does not reach it) with its output
//! in a log file. Its pid and kernel start time are written to the stack's
//! `pids` file; stopping checks the start time, so a recycled pid is never hit.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// A process started by a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub name: String,
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: identifies this incarnation of the pid.
    pub start_time: u64,
}

/// Starts `command` detached, output to `log`.
pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Owned> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let program = format!("{:?}", command.get_program());
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {name} ({program})"))?;
    let pid = child.id() as i32;
    // The child is reaped in `stop` (waitpid) or by init once we exit.
    std::mem::forget(child);
    let start_time =
        start_time(pid).with_context(|| format!("{name} exited at once; see {}", log.display()))?;
    Ok(Owned {
        name: name.to_string(),
        pid,
        start_time,
    })
}

/// The start time of a live (not zombie) process.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

impl Owned {
    /// Whether this very process still runs.
    pub fn alive(&self) -> bool {
        // Reap it if it is our child and has exited.
        let _ = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG));
        start_time(self.pid) == Some(self.start_time)
    }

    /// SIGTERM, then SIGKILL after `grace`; waits until it is gone.
    pub fn stop(&self, grace: Duration) -> Result<()> {
        if !self.alive() {
            return Ok(());
        }
        let pid = Pid::from_raw(self.pid);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.alive() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = kill(pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.alive() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!("{} (pid {}) survived SIGKILL", self.name, self.pid)
    }

    /// Sends `signal` if this very process still runs.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        if self.alive() {
            kill(Pid::from_raw(self.pid), signal)?;
        }
        Ok(())
    }
}

/// Appends a record to the `pids` file.
pub fn record(pids: &Path, owned: &Owned) -> Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(pids)?;
    writeln!(file, "{} {} {}", owned.name, owned.pid, owned.start_time)?;
    file.sync_all()?;
    Ok(())
}

/// Reads the `pids` file; the last record of a name wins.
pub fn read(pids: &Path) -> Result<Vec<Owned>> {
    let text = match std::fs::read_to_string(pids) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", pids.display())),
    };
    let mut owned: Vec<Owned> = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [name, pid, start] = parts.as_slice() else {
            bail!("{}: malformed line {line:?}", pids.display());
        };
        let record = Owned {
            name: name.to_string(),
            pid: pid.parse()?,
            start_time: start.parse()?,
        };
        owned.retain(|o| o.name != record.name);
        owned.push(record);
    }
    Ok(owned)
}
