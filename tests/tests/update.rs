//! Updates, rollback, pins and retention across two Kubo nodes: published
//! by one stack, installed and updated by another stack's flatipfsd.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use flatipfs_tests::ctl::{flatipfsctl, flatpak, last_json, ok_json, run_hello};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::wait_for;
use flatipfs_tests::{paths, Stack};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);
const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";

fn info(stack: &Stack) -> Value {
    ok_json(stack, &["info", "--json", "org.test.Hello"])
}

/// (version, current, complete, pinned, held) of every kept release.
fn kept(stack: &Stack) -> Vec<(String, bool, bool, bool, bool)> {
    let mut out: Vec<_> = info(stack)["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["version"].as_str().unwrap().to_string(),
                d["current"].as_bool().unwrap(),
                d["complete"].as_bool().unwrap(),
                d["pinned"].as_bool().unwrap(),
                d["held"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn versions(stack: &Stack) -> Vec<String> {
    kept(stack).into_iter().map(|k| k.0).collect()
}

#[test]
fn a_manual_update_switches_atomically_and_rolls_back_offline_after_vacuum() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let v1 = pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // An instance that keeps running across the update.
    let mut running = flatpak(
        client,
        &[
            "run",
            "--command=sh",
            "org.test.Hello",
            "-c",
            "cat /app/bin/hello.sh; read line; cat /app/bin/hello.sh",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = BufReader::new(running.stdout.take().unwrap());
    let mut before = String::new();
    while !before.contains("version") {
        out.read_line(&mut before).unwrap();
    }
    assert!(before.contains("version 1"), "{before}");

    // Version 2: a check finds it, an update switches to it.
    let v2 = pair.publish("repo-v2", &pair.app_ref.clone());
    let checked = ok_json(client, &["update", "--check", "--json", "org.test.Hello"]);
    assert_eq!(checked["apps"][0]["available"], "2", "{checked}");
    assert_eq!(info(client)["available"], "2");
    let updated = ok_json(client, &["update", "--json", "org.test.Hello"]);
    assert_eq!(
        (
            updated["from"].as_str(),
            updated["to"].as_str(),
            updated["applied"].as_bool()
        ),
        (Some("1"), Some("2"), Some(true)),
        "{updated}"
    );
    assert_eq!(info(client)["available"], "");
    // The running instance still sees version 1; a new start gets version 2.
    writeln!(running.stdin.as_mut().unwrap()).unwrap();
    let mut after = String::new();
    std::io::Read::read_to_string(&mut out, &mut after).unwrap();
    assert!(running.wait().unwrap().success());
    assert!(after.contains("version 1"), "{after}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
    let active = client
        .installation()
        .join(&pair.app_ref)
        .join("active/files");
    assert_eq!(
        std::fs::read_to_string(active.join("share/hello/NEWS")).unwrap(),
        "Version 2 adds this file.\n"
    );
    // Nothing newer: "nothing to do" (exit 5).
    let again = flatipfsctl(client, None, &["update", "--json", "org.test.Hello"]);
    assert_eq!(again.status.code(), Some(5), "{again:?}");
    assert_eq!(
        last_json(&again)["error"]["name"],
        "org.flatipfs.Manager1.Error.NothingToDo"
    );
    assert_eq!(
        kept(client),
        [
            ("1".into(), false, true, false, false),
            ("2".into(), true, true, false, false)
        ]
    );

    // Vacuum and Kubo's GC keep what retention keeps (the previous release).
    let vacuumed = ok_json(client, &["vacuum", "--json"]);
    assert_eq!(vacuumed["garbage_collected"], true, "{vacuumed}");
    let pins = client.ipfs(1, &["pin", "ls", "--type=recursive"]).unwrap();
    assert!(pins.contains(&v1) && pins.contains(&v2), "{pins}");

    // Rollback needs no network: the publisher is gone.
    pair.stop_publisher_node();
    let rolled = ok_json(client, &["rollback", "--json", "org.test.Hello"]);
    assert_eq!(
        (rolled["from"].as_str(), rolled["to"].as_str()),
        (Some("2"), Some("1"))
    );
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    let data = std::fs::read(active.join("share/hello/data.txt")).unwrap();
    assert_eq!(
        data.len(),
        300_000,
        "every block of version 1 is still local"
    );
    assert!(!active.join("share/hello/NEWS").exists());
    assert_eq!(
        kept(client),
        [
            ("1".into(), true, true, false, false),
            ("2".into(), false, true, false, true)
        ]
    );

    // Back online: a manual update returns to 2; a version 3 then pushes
    // version 1 out (one previous release is kept), unpinned and deleted.
    pair.start_publisher_node();
    let updated = ok_json(client, &["update", "--json", "org.test.Hello"]);
    assert_eq!(updated["to"], "2", "{updated}");
    // Version 1 pinned by hand: version 3 keeps it beyond retention.
    ok_json(client, &["pin", "org.test.Hello", "1", "--json"]);
    pair.publish_version("repo-v2", "3");
    let updated = ok_json(client, &["update", "--json", "org.test.Hello"]);
    assert_eq!(updated["to"], "3", "{updated}");
    assert_eq!(updated["removed"], serde_json::json!([]), "{updated}");
    let pinned = ok_json(client, &["pins", "--json"]);
    let hello = pinned["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "org.test.Hello")
        .unwrap()
        .clone();
    let flags: Vec<(String, bool, bool)> = hello["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["version"].as_str().unwrap().to_string(),
                d["pinned"].as_bool().unwrap(),
                d["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(flags.contains(&("1".into(), true, false)), "{flags:?}");
    assert_eq!(versions(client), ["1", "2", "3"]);
    // Unpinned, vacuum removes it: unpinned in Kubo, out of MFS, deleted.
    ok_json(client, &["unpin", "org.test.Hello", "1", "--json"]);
    let vacuumed = ok_json(client, &["vacuum", "--json"]);
    assert_eq!(
        vacuumed["removed"],
        serde_json::json!(["org.test.Hello 1"]),
        "{vacuumed}"
    );
    assert_eq!(versions(client), ["2", "3"]);
    let mfs = client
        .ipfs(1, &["files", "ls", "/flatpak-apps/org.test.Hello"])
        .unwrap();
    assert!(!mfs.contains(&v1), "{mfs}");
    let deploys = std::fs::read_dir(client.installation().join(&pair.app_ref))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_dir())
        .count();
    assert_eq!(deploys, 2, "one deploy directory per kept release");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
}

/// The manager's `LastAutomaticCheck`.
fn last_check(stack: &Stack) -> u64 {
    ok_json(stack, &["policy", "--json"])["last_check"]
        .as_u64()
        .unwrap()
}

/// Waits until the scheduler has checked `n` more times.
fn wait_checks(stack: &Stack, n: usize) {
    for _ in 0..n {
        let seen = last_check(stack);
        let mut later = || Ok(last_check(stack) > seen);
        wait_for("another automatic check", LIMIT, &mut later).unwrap();
    }
}

fn current_version(stack: &Stack) -> String {
    info(stack)["version"].as_str().unwrap().to_string()
}

#[test]
fn automatic_updates_check_download_and_apply_and_respect_a_rollback() {
    let pair = Pair::up("\n[updates]\npolicy = \"check\"\ninterval = \"2s\"\njitter = \"1s\"\n");
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    let policy = ok_json(client, &["policy", "--json"]);
    assert_eq!(policy["policy"], "check", "{policy}");

    // A software centre sees AvailableVersion change as soon as a check
    // finds version 2 (PropertiesChanged), and nothing else changes.
    let bus = client.bus().unwrap();
    let app = flatipfs_dbus::proxy::AppProxyBlocking::builder(&bus)
        .path(flatipfs_dbus::app_path("org.test.Hello"))
        .unwrap()
        .build()
        .unwrap();
    let mut changes = app.receive_available_version_changed();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for change in &mut changes {
            if let Ok(value) = change.get() {
                if !value.is_empty() {
                    let _ = tx.send(value);
                    return;
                }
            }
        }
    });
    let v2 = pair.publish("repo-v2", &pair.app_ref.clone());
    let announced = rx.recv_timeout(LIMIT).expect("AvailableVersion changed");
    assert_eq!(announced, "2");
    let policy = ok_json(client, &["policy", "--json"]);
    let (last, next) = (
        policy["last_check"].as_u64().unwrap(),
        policy["next_check"].as_u64().unwrap(),
    );
    assert!(last > 0 && next >= last, "{policy}");
    wait_checks(client, 2);
    assert_eq!(current_version(client), "1");
    assert_eq!(versions(client), ["1"], "check only marks");
    let pins = client.ipfs(1, &["pin", "ls", "--type=recursive"]).unwrap();
    assert!(!pins.contains(&v2), "{pins}");

    // download: fetched completely, not switched.
    ok_json(client, &["policy", "download", "--json"]);
    let mut downloaded = || Ok(kept(client).contains(&("2".into(), false, true, false, false)));
    wait_for("version 2 downloaded", LIMIT, &mut downloaded).unwrap();
    assert_eq!(current_version(client), "1");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // apply: switched by itself; the next start runs version 2.
    ok_json(client, &["policy", "apply", "--json"]);
    let mut applied = || Ok(current_version(client) == "2");
    wait_for("version 2 applied", LIMIT, &mut applied).unwrap();
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");

    // A rollback holds version 2: the scheduler does not re-apply it...
    ok_json(client, &["rollback", "--json", "org.test.Hello"]);
    wait_checks(client, 3);
    assert_eq!(current_version(client), "1");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    // ...until a newer release is published.
    pair.publish_version("repo-v2", "3");
    let mut newer = || Ok(current_version(client) == "3");
    wait_for("version 3 applied", LIMIT, &mut newer).unwrap();

    // A per-app policy wins over the daemon's.
    ok_json(
        client,
        &["policy", "--app", "org.test.Hello", "check", "--json"],
    );
    pair.publish_version("repo-v2", "4");
    let mut seen = || Ok(info(client)["available"] == "4");
    wait_for("version 4 found", LIMIT, &mut seen).unwrap();
    wait_checks(client, 2);
    assert_eq!(current_version(client), "3");

    // Policy none: no check is planned; the timer's trigger checks at once
    // and acts as the policy says (here: nothing beyond the check).
    ok_json(
        client,
        &["policy", "--app", "org.test.Hello", "default", "--json"],
    );
    ok_json(client, &["policy", "none", "--json"]);
    let mut unplanned = || Ok(ok_json(client, &["policy", "--json"])["next_check"] == 0);
    wait_for("no check planned", LIMIT, &mut unplanned).unwrap();
    pair.publish_version("repo-v2", "5");
    // With no check planned, only the trigger can find version 5.
    ok_json(
        client,
        &["update", "--trigger-automatic-update-policy", "--json"],
    );
    let mut found = || Ok(info(client)["available"] == "5");
    wait_for("the triggered check to find version 5", LIMIT, &mut found).unwrap();
    assert_eq!(info(client)["available"], "5");
    assert_eq!(current_version(client), "3");
}

fn state(stack: &Stack) -> String {
    info(stack)["state"].as_str().unwrap().to_string()
}

#[test]
fn updates_are_exclusive_two_phase_crash_safe_and_authorized() {
    use flatipfs_tests::users::{self, UPDATER_USER};
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    users::ensure_test_users().unwrap();
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);

    // Version 2 with one block the publisher cannot serve: the update
    // stays in its download.
    let v2 = pair.publish("repo-v2", &pair.app_ref.clone());
    let withheld = pair.withhold(&v2, "deploy/files/bin/hello.sh");
    let mut updating = Command::new(paths::binary("flatipfsctl").unwrap())
        .env("DBUS_SYSTEM_BUS_ADDRESS", &client.bus_address)
        .args(["update", "org.test.Hello"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut busy = || Ok(state(client) == "updating");
    wait_for("the update to run", LIMIT, &mut busy).unwrap();
    // A second update (or a rollback) of the same app: Busy, exit 7.
    for args in [
        ["update", "--json", "org.test.Hello"],
        ["rollback", "--json", "org.test.Hello"],
    ] {
        let out = flatipfsctl(client, None, &args);
        assert_eq!(out.status.code(), Some(7), "{args:?}: {out:?}");
        assert_eq!(
            last_json(&out)["error"]["name"],
            "org.flatipfs.Manager1.Error.Busy"
        );
    }
    // The app runs version 1 meanwhile.
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // The new release is laid out and recorded (after its tree check) and
    // waits in its download.
    let mut recorded = || Ok(kept(client).len() == 2);
    wait_for("version 2 to be laid out", LIMIT, &mut recorded).unwrap();
    // SIGKILL in the middle of the update: after the restart the app runs
    // (version 1: the switch had not happened), nothing is stale, and the
    // download resumes once the block is back.
    client
        .process("flatipfsd")
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let _ = updating.wait();
    let mut dead = || {
        Ok(!client
            .process("flatipfsd")
            .map(|p| p.alive())
            .unwrap_or(false))
    };
    wait_for("flatipfsd to die", LIMIT, &mut dead).unwrap();
    client.start_daemon().unwrap();
    let mut back = || {
        Ok(flatipfsctl(client, None, &["info", "org.test.Hello"])
            .status
            .success())
    };
    wait_for("the app to be restored", LIMIT, &mut back).unwrap();
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    assert_eq!(current_version(client), "1");
    let mut downloaded = || Ok(kept(client).contains(&("2".into(), false, true, false, false)));
    assert_eq!(
        kept(client)[1],
        ("2".into(), false, false, false, false),
        "the download waits for the withheld block"
    );
    pair.give_back(&withheld);
    wait_for(
        "the interrupted download to complete",
        LIMIT,
        &mut downloaded,
    )
    .unwrap();
    assert_eq!(current_version(client), "1");

    // Two-phase: what is downloaded is applied with no network at all.
    pair.stop_publisher_node();
    let applied = ok_json(
        client,
        &["update", "--cached-only", "--json", "org.test.Hello"],
    );
    assert_eq!(applied["to"], "2", "{applied}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
    pair.start_publisher_node();
    pair.publish_version("repo-v2", "3");
    let fetched = ok_json(
        client,
        &["update", "--download-only", "--json", "org.test.Hello"],
    );
    assert_eq!(fetched["applied"], false, "{fetched}");
    assert_eq!(current_version(client), "2");
    let nothing = flatipfsctl(
        client,
        None,
        &["update", "--cached-only", "--json", "org.test.Hello"],
    );
    assert!(nothing.status.success(), "{nothing:?}");
    assert_eq!(current_version(client), "3");

    // Authorization: a user allowed `update` may update to the newest
    // release, but going to a given (older) version needs
    // `update-to-version`, and rolling back needs `rollback`.
    let out = flatipfsctl(
        client,
        Some(UPDATER_USER),
        &["update", "--version", "1", "--json", "org.test.Hello"],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let out = flatipfsctl(
        client,
        Some(UPDATER_USER),
        &["rollback", "--json", "org.test.Hello"],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(current_version(client), "3");
    pair.publish_version("repo-v2", "4");
    let out = flatipfsctl(
        client,
        Some(UPDATER_USER),
        &["update", "--json", "org.test.Hello"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(current_version(client), "4");
    // Root may go back to a given version (from the index's history).
    let back = ok_json(
        client,
        &["update", "--version", "1", "--json", "org.test.Hello"],
    );
    assert_eq!(back["to"], "1", "{back}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}
