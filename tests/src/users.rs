//! Test users and groups, and running programs as them.
//!
//! polkit checks group membership in the user database, so the tests create
//! real users with `useradd` (idempotently, serialized through a lock file so
//! that parallel tests do not race on `/etc/passwd`).

use std::fs::File;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Group, User};

/// The group the shipped polkit rules trust.
pub const ADMIN_GROUP: &str = "flatipfs";
/// An ordinary user, in no special group.
pub const PLAIN_USER: &str = "flatipfs-t-user";
/// A member of [`ADMIN_GROUP`].
pub const ADMIN_USER: &str = "flatipfs-t-admin";
/// A user the test polkit rules make authenticate (a challenge).
pub const CHALLENGED_USER: &str = "flatipfs-t-chal";
/// A user the test polkit rules let `update` (as the shipped defaults let an
/// active local user), but nothing else.
pub const UPDATER_USER: &str = "flatipfs-t-upd";

/// Creates the test users and the admin group if they are missing.
pub fn ensure_test_users() -> Result<()> {
    let lock = File::create("/run/flatipfs-tests-users.lock")
        .context("cannot create /run/flatipfs-tests-users.lock (tests must run as root)")?;
    let _guard = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("cannot lock the test users")?;
    if Group::from_name(ADMIN_GROUP)?.is_none() {
        run(Command::new("groupadd").args(["--system", ADMIN_GROUP]))?;
    }
    for (user, groups) in [
        (PLAIN_USER, None),
        (ADMIN_USER, Some(ADMIN_GROUP)),
        (CHALLENGED_USER, None),
        (UPDATER_USER, None),
    ] {
        if User::from_name(user)?.is_some() {
            continue;
        }
        let mut command = Command::new("useradd");
        command.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ]);
        if let Some(groups) = groups {
            command.args(["--groups", groups]);
        }
        run(command.arg(user))?;
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}: install the Debian package `passwd`"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A command that runs `program` as `user` (with that user's groups),
/// keeping the environment (so `DBUS_SYSTEM_BUS_ADDRESS` reaches it).
pub fn as_user(user: &str, program: &str) -> Result<Command> {
    let account = User::from_name(user)?
        .with_context(|| format!("user {user} does not exist; call ensure_test_users first"))?;
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={}", account.uid))
        .arg(format!("--regid={}", account.gid))
        .arg("--init-groups")
        .arg("--")
        .arg(program)
        .env("HOME", "/")
        .current_dir("/");
    Ok(command)
}

/// Runs a command and returns its output, failing only if it cannot start.
pub fn output(command: &mut Command) -> Result<Output> {
    command
        .output()
        .with_context(|| format!("cannot run {command:?}"))
}
