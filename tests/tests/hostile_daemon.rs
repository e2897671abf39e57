//! The daemon's own hardening (issue 9, deliverables 5 and 6), tried
//! against real components: a second daemon cannot take over, a manifest
//! with an absurd `published` fails its job instead of hanging it, one
//! `Refresh` at a time per user, a cancelled install leaves no runtime
//! behind, and an app stays with the publisher key it was installed from.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flatipfs_dbus::proxy::{JobProxyBlocking, ManagerProxyBlocking};
use flatipfs_dbus::BUS_NAME;
use flatipfs_tests::ctl::{flatipfsctl, mounts_below, ok_json, run_hello, state_if_installed};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::wait_for;
use flatipfs_tests::users::{self, ADMIN_USER};
use flatipfs_tests::{paths, Stack, StackOptions, TestStack};
use serde_json::Value;

/// Bounds waits so a broken run fails instead of hanging; never asserted on.
const LIMIT: Duration = Duration::from_secs(90);

/// Runs `command` to its end (killing it and failing the test if it is
/// still running after [`LIMIT`]); its exit status and combined output.
fn run_bounded(mut command: Command) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} was still running after {LIMIT:?}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(&log).unwrap())
}

#[test]
fn a_second_daemon_fails_clearly_and_the_first_keeps_serving() {
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    let first = stack.process("flatipfsd").unwrap();
    let flatipfsd = paths::binary("flatipfsd").unwrap();
    let state = stack.dir.join("state");

    // Same state directory (and bus): refused before it touches anything.
    let mut second = stack.command(&flatipfsd);
    second.arg("--config").arg(&stack.config);
    let (status, out) = run_bounded(second);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "another flatipfsd (pid {}) owns {}",
            first.pid,
            state.display()
        )),
        "{out}"
    );

    // Another state directory, the same bus: the name is not given away.
    let other = stack.dir.join("other-flatipfsd.toml");
    let text = std::fs::read_to_string(&stack.config).unwrap().replace(
        &format!("state_directory = \"{}\"", state.display()),
        &format!(
            "state_directory = \"{}\"",
            stack.dir.join("other-state").display()
        ),
    );
    assert!(text.contains("other-state"), "{text}");
    std::fs::write(&other, text).unwrap();
    let mut third = stack.command(&flatipfsd);
    third.arg("--config").arg(&other);
    let (status, out) = run_bounded(third);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "another process (pid {}) owns {BUS_NAME} on the system bus",
            first.pid
        )),
        "{out}"
    );

    // Even root asking to replace the owner gets nothing: the daemon does
    // not allow replacement (RequestName reply 1 would be "primary owner").
    paths::system_program("/usr/bin/dbus-send", "dbus-bin").unwrap();
    let mut replace = stack.command("/usr/bin/dbus-send");
    replace
        .args([
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.RequestName",
            &format!("string:{BUS_NAME}"),
            // REPLACE_EXISTING | DO_NOT_QUEUE
            "uint32:6",
        ])
        .stdin(Stdio::null());
    let out = replace.output().unwrap();
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(reply.trim_end().ends_with("uint32 3"), "{reply}");

    // The first daemon still owns the name and answers.
    assert!(first.alive());
    let bus = stack.bus().unwrap();
    let dbus = zbus::blocking::fdo::DBusProxy::new(&bus).unwrap();
    let owner = dbus.get_name_owner(BUS_NAME.try_into().unwrap()).unwrap();
    assert_eq!(
        dbus.get_connection_unix_process_id(owner.into()).unwrap(),
        first.pid as u32
    );
    let status = ok_json(&stack, &["status", "--json"]);
    assert!(status.is_object(), "{status}");
    assert!(stack.daemon_log().contains("state directory locked"));
}

/// `flatipfsctl ARGS` as root against `stack`, bounded by [`LIMIT`] (a job
/// that never ends fails the test): exit status and the last JSON line.
fn ctl_bounded(stack: &Stack, args: &[&str]) -> (std::process::ExitStatus, Value) {
    let mut command = Command::new(paths::binary("flatipfsctl").unwrap());
    command
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus_address)
        .env("FLATPAK_CONFIG_DIR", stack.flatpak_config_dir())
        .args(args);
    let (status, out) = run_bounded(command);
    let last = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON from flatipfsctl {args:?}: {out}"));
    (status, last)
}

/// Like [`ctl_bounded`]; asserts that it failed with D-Bus error `name`
/// (short form); the error's JSON.
fn fails_with(stack: &Stack, args: &[&str], name: &str) -> Value {
    let (status, last) = ctl_bounded(stack, args);
    assert!(!status.success(), "{args:?} succeeded: {last}");
    let error = last["error"].clone();
    assert_eq!(
        error["name"],
        format!("org.flatipfs.Manager1.Error.{name}"),
        "{args:?}: {error}"
    );
    error
}

#[test]
fn a_published_date_past_year_9999_is_refused_with_a_typed_error_and_the_job_ends() {
    let pair = Pair::up("");
    let release = pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let never = serde_json::json!(u64::MAX);

    // A fixed release whose manifest says published 2^64-1.
    let absurd = pair.handmade(&release, |m| m["published"] = never.clone());
    let error = fails_with(
        client,
        &["install", "--json", &format!("/ipfs/{absurd}")],
        "VerificationFailed",
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("published"), "{error}");

    // The same through the remote's index: refused inside the install job,
    // which ends (ctl_bounded fails the test if it never does).
    let (_, genuine) = pair.current_index();
    pair.publish_handmade_index(|index| {
        index["apps"]["org.test.Hello"]["release"] = absurd.clone().into();
    });
    let error = fails_with(
        client,
        &["install", "--json", "main", "org.test.Hello"],
        "VerificationFailed",
    );
    assert!(
        error["message"].as_str().unwrap().contains("published"),
        "{error}"
    );
    assert_eq!(state_if_installed(client, "org.test.Hello"), None);

    // An index entry dated 2^64-1 (the release itself is fine).
    pair.publish_handmade_index(|index| {
        index["apps"]["org.test.Hello"]["release"] = release.clone().into();
        index["apps"]["org.test.Hello"]["published"] = never.clone();
    });
    let error = fails_with(
        client,
        &["install", "--json", "main", "org.test.Hello"],
        "VerificationFailed",
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("18446744073709551615"),
        "{error}"
    );
    assert_eq!(state_if_installed(client, "org.test.Hello"), None);
    assert!(!client.installation().join("app").exists());
    assert!(mounts_below(&client.installation().join("app")).is_empty());

    // Nothing is left holding the app: the genuine index installs it.
    pair.publish_handmade_index(|index| *index = genuine.clone());
    let (status, installed) = ctl_bounded(client, &["install", "--json", "main", "org.test.Hello"]);
    assert!(status.success(), "{installed}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    assert_eq!(
        state_if_installed(client, "org.test.Platform").as_deref(),
        Some("installed")
    );
}

/// Continues a stopped process when dropped (also when the test fails).
struct Frozen<'a>(&'a flatipfs_tests::process::Owned);

impl Frozen<'_> {
    fn freeze(process: &flatipfs_tests::process::Owned) -> Frozen<'_> {
        process.signal(nix::sys::signal::Signal::SIGSTOP).unwrap();
        Frozen(process)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        let _ = self.0.signal(nix::sys::signal::Signal::SIGCONT);
    }
}

#[test]
fn a_user_runs_one_refresh_at_a_time() {
    let pair = Pair::up("");
    users::ensure_test_users().unwrap();
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    let bus = client.bus().unwrap();
    let manager = ManagerProxyBlocking::new(&bus).unwrap();
    let kubo = client.process("kubo-1").unwrap();

    // With the client's Kubo node stopped, a refresh waits in name
    // resolution (up to resolve_timeout): it is still running below.
    let first_path = {
        let _frozen = Frozen::freeze(&kubo);
        let first_path = manager.refresh(Default::default()).unwrap();
        let first = JobProxyBlocking::builder(&bus)
            .path(first_path.clone())
            .unwrap()
            .build()
            .unwrap();
        let second = manager.refresh(Default::default());
        let still_running = first.state().unwrap() == "running";
        assert!(
            still_running,
            "the first refresh ended before the second was asked for; cannot tell"
        );
        let err = second.expect_err("a second refresh of the same user while the first runs");
        assert_eq!(err.kind(), Some(flatipfs_dbus::ErrorKind::Busy), "{err}");
        assert!(err.to_string().contains("flatipfsctl cancel"), "{err}");

        // Another user is not held up by root's refresh.
        let out = flatipfsctl(
            client,
            Some(ADMIN_USER),
            &["update", "--check", "--json", "org.test.Hello"],
        );
        let text = format!("{out:?}");
        assert!(!text.contains("Error.Busy"), "{text}");
        first_path
    };

    // Once root's refresh has ended, root may start the next one.
    let first = JobProxyBlocking::builder(&bus)
        .path(first_path)
        .unwrap()
        .build()
        .unwrap();
    let mut ended = || Ok(first.state()? == "finished");
    wait_for("root's first refresh to end", LIMIT, &mut ended).unwrap();
    let (status, checked) = ctl_bounded(client, &["update", "--check", "--json"]);
    assert!(status.success(), "{checked}");
}

#[test]
fn cancelling_an_install_after_its_runtime_went_in_leaves_neither_app_nor_runtime() {
    let pair = Pair::up("");
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let app_release = pair.publish("repo-v1", &pair.app_ref.clone());
    let client = &pair.client;
    // The runtime goes in first; then the app's desktop file cannot arrive,
    // so the app waits while it is laid out (for up to document_timeout),
    // with the runtime this job installed already there, until it is
    // cancelled. (Metadata is checked before anything is recorded, so
    // withholding it would stop the job before the runtime is installed.)
    let _withheld = pair.withhold(
        &app_release,
        "deploy/export/share/applications/org.test.Hello.desktop",
    );

    let mut install = Command::new(paths::binary("flatipfsctl").unwrap())
        .env("DBUS_SYSTEM_BUS_ADDRESS", &client.bus_address)
        .args(["install", "main", "org.test.Hello"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut in_runtime_phase = || {
        Ok(state_if_installed(client, "org.test.Platform").is_some()
            && state_if_installed(client, "org.test.Hello").as_deref() == Some("installing"))
    };
    wait_for(
        "the runtime to be installed and the app to be laid out",
        LIMIT,
        &mut in_runtime_phase,
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(install.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = install.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(install.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("cancel"), "{stderr}");

    let mut gone = || {
        Ok(state_if_installed(client, "org.test.Platform").is_none()
            && state_if_installed(client, "org.test.Hello").is_none())
    };
    wait_for("the cancelled install to be removed", LIMIT, &mut gone).unwrap();
    let mut unmounted = || Ok(mounts_below(&client.installation()).is_empty());
    wait_for("its mounts to be detached", LIMIT, &mut unmounted).unwrap();
    for dir in ["runtime/org.test.Platform", "app/org.test.Hello"] {
        let path = client.installation().join(dir);
        assert!(!path.exists(), "{} is left", path.display());
    }
    let listed = ok_json(client, &["list", "--json"]);
    assert_eq!(listed["apps"], serde_json::json!([]), "{listed}");
    let state: Value =
        serde_json::from_slice(&std::fs::read(client.dir.join("state/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["apps"], serde_json::json!({}), "{state}");
    let pins = client.ipfs(1, &["pin", "ls", "--type=recursive"]).unwrap();
    assert!(!pins.contains(&app_release), "{pins}");
}

#[test]
fn an_app_is_updated_only_from_the_publisher_it_was_installed_from() {
    let pair = Pair::up("");
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);

    // Another key publishes a newer Hello; the client's admin re-adds
    // `main` pointing at it.
    let other = flatipfs_tests::ctl::create_remote(&pair.publisher, "other");
    let repo = pair.apps.join("repo-v2");
    ok_json(
        &pair.publisher,
        &[
            "publish",
            "--json",
            "--remote",
            "other",
            "--repo",
            repo.to_str().unwrap(),
            &pair.app_ref,
        ],
    );
    pair.wait_until_client_resolves(&other);
    ok_json(client, &["remote", "remove", "main", "--json"]);
    ok_json(
        client,
        &["remote", "add", "main", &format!("/ipns/{other}"), "--json"],
    );

    let error = fails_with(client, &["update", "--json", "org.test.Hello"], "Untrusted");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&pair.ipns) && message.contains(&other),
        "{message}"
    );
    assert!(message.contains("reinstall"), "{message}");
    // Checks do not offer the other publisher's release either.
    let (status, checked) = ctl_bounded(client, &["update", "--check", "--json", "org.test.Hello"]);
    assert!(status.success(), "{checked}");
    assert_eq!(checked["apps"][0]["id"], "org.test.Hello", "{checked}");
    assert_eq!(checked["apps"][0]["available"], "", "{checked}");
    // The app is unchanged and runs.
    let info = ok_json(client, &["info", "--json", "org.test.Hello"]);
    assert_eq!(info["state"], "installed", "{info}");
    assert_eq!(info["version"], "1", "{info}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}
