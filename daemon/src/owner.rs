//! Single ownership: one `flatipfsd` per state directory and per bus.
//!
//! The daemon takes an exclusive `flock` on `flatipfsd.lock` in its state
//! directory for its whole life (the file says which pid holds it), asks
//! for `org.flatipfs.Manager1` without allowing replacement and without
//! queueing, and stops when the bus says the name was lost. A second daemon
//! started against the same state directory or the same bus fails with a
//! message naming the owner; the first keeps serving.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use nix::fcntl::{Flock, FlockArg};
use zbus::fdo::{DBusProxy, RequestNameFlags, RequestNameReply};

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "flatipfsd.lock";

/// Why this daemon cannot be the owner.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("another flatipfsd ({}) owns {}", pid_text(.pid), .path.display())]
    StateTaken { pid: Option<u32>, path: PathBuf },
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another process ({}) owns {name} on the system bus; is another flatipfsd running?", pid_text(.pid))]
    NameTaken { name: String, pid: Option<u32> },
    #[error("cannot request {name} on the system bus: {source}")]
    Request {
        name: String,
        #[source]
        source: Box<zbus::Error>,
    },
}

fn pid_text(pid: &Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".into(),
    }
}

/// The state directory's lock, held until dropped (the process's life).
#[derive(Debug)]
pub struct StateLock {
    _lock: Flock<File>,
    pub path: PathBuf,
}

/// Locks `state_directory` (created if missing) for this process, or says
/// which process holds it.
pub fn lock_state_directory(state_directory: &Path) -> Result<StateLock, OwnerError> {
    let path = state_directory.join(LOCK_FILE);
    let io = |source| OwnerError::Lock {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_directory).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = Read::by_ref(&mut file).take(32).read_to_string(&mut text);
            return Err(OwnerError::StateTaken {
                pid: text.trim().parse().ok(),
                path: state_directory.to_owned(),
            });
        }
        Err((_, errno)) => return Err(io(errno.into())),
    };
    lock.set_len(0).map_err(io)?;
    lock.rewind().map_err(io)?;
    writeln!(lock, "{}", std::process::id()).map_err(io)?;
    lock.sync_all().map_err(io)?;
    Ok(StateLock { _lock: lock, path })
}

/// Owns `name` on `connection`'s bus: no replacement allowed, no queueing.
/// Fails naming the current owner's pid when the name is taken.
pub async fn claim_bus_name(connection: &zbus::Connection, name: &str) -> Result<(), OwnerError> {
    let request = |source| OwnerError::Request {
        name: name.to_string(),
        source: Box::new(source),
    };
    let reply = connection
        .request_name_with_flags(name, RequestNameFlags::DoNotQueue.into())
        .await;
    match reply {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => Ok(()),
        Ok(RequestNameReply::Exists | RequestNameReply::InQueue) | Err(zbus::Error::NameTaken) => {
            Err(OwnerError::NameTaken {
                name: name.to_string(),
                pid: owner_pid(connection, name).await,
            })
        }
        Err(e) => Err(request(e)),
    }
}

/// The pid of the process owning `name`, if the bus says.
async fn owner_pid(connection: &zbus::Connection, name: &str) -> Option<u32> {
    let dbus = DBusProxy::new(connection).await.ok()?;
    let bus_name: zbus::names::BusName = name.try_into().ok()?;
    let owner = dbus.get_name_owner(bus_name.clone()).await.ok()?;
    dbus.get_connection_unix_process_id(owner.into()).await.ok()
}

/// Resolves when the bus tells this connection it lost `name` (or the
/// signal stream ends: the connection is gone).
pub async fn name_lost(connection: &zbus::Connection, name: &str) -> zbus::Result<()> {
    let dbus = DBusProxy::new(connection).await?;
    let mut lost = dbus.receive_name_lost_with_args(&[(0, name)]).await?;
    let _ = lost.next().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_state_directory_names_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = lock_state_directory(&state).unwrap();
        let text = std::fs::read_to_string(&first.path).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        // A second open file description conflicts like another process would.
        let err = lock_state_directory(&state).unwrap_err();
        assert!(
            matches!(&err, OwnerError::StateTaken { pid: Some(p), .. } if *p == std::process::id()),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "another flatipfsd (pid {}) owns {}",
                std::process::id(),
                state.display()
            )
        );
        drop(first);
        // Released with its holder: the next daemon may start.
        lock_state_directory(&state).unwrap();
    }
}
