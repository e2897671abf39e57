//! Running a subprocess with a time limit: every one-shot command the daemon
//! runs (`flatpak`, `ipfs init`/`config`) goes through [`output`], so that a
//! hung child can never hold a job, a start-up or a lock forever. On expiry
//! the child's whole process group is killed and the error names the
//! command and the limit.

use std::process::{Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

/// Why a command gave no output.
#[derive(Debug, thiserror::Error)]
pub enum SubprocessError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {} and was killed", humantime_serde::re::humantime::format_duration(*.limit))]
    TimedOut { command: String, limit: Duration },
}

impl From<SubprocessError> for std::io::Error {
    fn from(e: SubprocessError) -> Self {
        match e {
            SubprocessError::Spawn { source, .. } => source,
            e @ SubprocessError::TimedOut { .. } => {
                std::io::Error::new(std::io::ErrorKind::TimedOut, e.to_string())
            }
        }
    }
}

/// `program arg…`, for messages.
fn describe(command: &Command) -> String {
    let std = command.as_std();
    std::iter::once(std.get_program())
        .chain(std.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` (stdin from /dev/null, output captured) in a process
/// group of its own; kills the group if it has not finished within `limit`.
pub async fn output(command: &mut Command, limit: Duration) -> Result<Output, SubprocessError> {
    let described = describe(command);
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SubprocessError::Spawn {
            command: described.clone(),
            source,
        })?;
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(result) => result.map_err(|source| SubprocessError::Spawn {
            command: described,
            source,
        }),
        Err(_) => {
            // The child itself is killed (and reaped) on drop; this takes
            // whatever it started along.
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            Err(SubprocessError::TimedOut {
                command: described,
                limit,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_past_its_limit_is_killed_with_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 10", pid_file.display());
        let mut command = Command::new("sh");
        command.args(["-c", &script]);
        let err = output(&mut command, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SubprocessError::TimedOut { limit, .. } if *limit == Duration::from_millis(100)),
            "{err:?}"
        );
        assert!(err.to_string().contains("sleep 10"), "{err}");
        assert!(err.to_string().contains("within 100ms"), "{err}");
        // The child is gone (or a zombie waiting to be reaped), not sleeping.
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let mut alive = true;
        for _ in 0..100 {
            alive = std::fs::read_to_string(&stat)
                .is_ok_and(|s| s.split(' ').nth(2).is_none_or(|state| state != "Z"));
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!alive, "the timed-out child still runs");
    }

    #[tokio::test]
    async fn a_quick_command_gives_its_output_and_a_missing_one_a_spawn_error() {
        let mut command = Command::new("echo");
        command.arg("hello");
        let out = output(&mut command, Duration::from_secs(30)).await.unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hello\n");
        let mut missing = Command::new("/nonexistent/flatpak");
        let err = output(&mut missing, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(matches!(err, SubprocessError::Spawn { .. }), "{err:?}");
    }
}
