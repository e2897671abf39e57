//! The daemon's own hardening (issue 9, deliverables 5 and 6), tried
//! against real components: a second daemon cannot take over, a manifest
//! with an absurd `published` fails its job instead of hanging it, one
//! `Refresh` at a time per user, a cancelled install leaves no runtime
//! behind, and an app stays with the publisher key it was installed from.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flatipfs_dbus::BUS_NAME;
use flatipfs_tests::ctl::ok_json;
use flatipfs_tests::paths;
use flatipfs_tests::{StackOptions, TestStack};

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
