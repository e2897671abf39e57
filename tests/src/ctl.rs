//! Running `flatipfsctl` against a stack, as the tests do.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::{paths, users, Stack};

/// `flatipfsctl ARGS` against `stack`, as root or as `user`.
pub fn flatipfsctl(stack: &Stack, user: Option<&str>, args: &[&str]) -> Output {
    let bin = paths::binary("flatipfsctl").unwrap();
    let mut command = match user {
        Some(user) => users::as_user(user, bin.to_str().unwrap()).unwrap(),
        None => Command::new(bin),
    };
    command
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus_address)
        .env("FLATPAK_CONFIG_DIR", stack.flatpak_config_dir())
        .args(args);
    users::output(&mut command).unwrap()
}

/// The last line of stdout as JSON (`--json` progress lines come before it).
pub fn last_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout:?} / stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `flatipfsctl ARGS` as root; panics unless it succeeds; its JSON.
pub fn ok_json(stack: &Stack, args: &[&str]) -> Value {
    let out = flatipfsctl(stack, None, args);
    assert!(out.status.success(), "flatipfsctl {args:?}: {out:?}");
    last_json(&out)
}

/// Publishes `reference` from `repo` to remote `main`; the result's JSON.
pub fn publish_repo(stack: &Stack, repo: &Path, reference: &str) -> Value {
    ok_json(
        stack,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            "--repo",
            repo.to_str().unwrap(),
            reference,
        ],
    )
}

/// `flatipfsctl remote create NAME`; the remote's IPNS name (without `/ipns/`).
pub fn create_remote(stack: &Stack, name: &str) -> String {
    let created = ok_json(stack, &["remote", "create", name, "--json"]);
    created["name"]
        .as_str()
        .unwrap()
        .trim_start_matches("/ipns/")
        .to_string()
}

/// Publishes like [`publish_repo`]; just the release root CID.
pub fn publish_release(stack: &Stack, repo: &Path, reference: &str) -> String {
    publish_repo(stack, repo, reference)["release"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `flatpak ARGS` as root against `stack`'s Flatpak configuration (which
/// registers the daemon's installation).
pub fn flatpak(stack: &Stack, args: &[&str]) -> Command {
    let mut command = Command::new(paths::system_program("/usr/bin/flatpak", "flatpak").unwrap());
    command
        .env("FLATPAK_CONFIG_DIR", stack.flatpak_config_dir())
        .args(args);
    command
}

/// What `flatpak run org.test.Hello` prints (as root), trimmed.
pub fn run_hello(stack: &Stack) -> String {
    crate::stack::run_ok(&mut flatpak(stack, &["run", "org.test.Hello"]))
        .unwrap()
        .trim()
        .to_string()
}

/// What `flatpak run org.test.Hello` prints as the unprivileged test user
/// (with a home of its own in the stack's directory), trimmed; panics
/// unless it succeeds.
pub fn run_hello_as_user(stack: &Stack) -> String {
    use std::os::unix::fs::PermissionsExt;
    let home = stack.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let user = nix::unistd::User::from_name(users::PLAIN_USER)
        .unwrap()
        .unwrap();
    nix::unistd::chown(&home, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut as_user = users::as_user(users::PLAIN_USER, "/usr/bin/flatpak").unwrap();
    as_user
        .env("FLATPAK_CONFIG_DIR", stack.flatpak_config_dir())
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", &home)
        .args(["run", "org.test.Hello"]);
    let out = users::output(&mut as_user).unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `flatipfsctl ARGS` as root; panics unless it fails with the D-Bus error
/// `name` (`NotFound`, or a full name such as
/// `org.freedesktop.DBus.Error.InvalidArgs`); the error's JSON.
pub fn fails_with(stack: &Stack, args: &[&str], name: &str) -> Value {
    let out = flatipfsctl(stack, None, args);
    assert!(!out.status.success(), "{args:?} succeeded: {out:?}");
    let error = last_json(&out)["error"].clone();
    let name = if name.contains('.') {
        name.to_string()
    } else {
        format!("org.flatipfs.Manager1.Error.{name}")
    };
    assert_eq!(error["name"], name, "{args:?}: {error}");
    error
}

/// The app's state (`flatipfsctl info`), or `None` when it is not installed
/// (exit code 3).
pub fn state_if_installed(stack: &Stack, id: &str) -> Option<String> {
    let out = flatipfsctl(stack, None, &["info", "--json", id]);
    match out.status.code() {
        Some(0) => Some(last_json(&out)["state"].as_str().unwrap().to_string()),
        Some(3) => None,
        _ => panic!("flatipfsctl info: {out:?}"),
    }
}

/// The mount points below `dir`, from this process's mount table.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(String::from)
        .collect()
}
