//! Hostile releases against the sandbox: a `metadata` that does not match
//! its manifest (another app's `name=`, another `runtime=`), and updates
//! that widen the app's permissions (`filesystems=host`, a talk name to
//! `org.freedesktop.Flatpak`), by hand and through automatic updates; and
//! an update that moves to another runtime.

use std::time::Duration;

use flatipfs_tests::ctl::{fails_with, flatipfsctl, flatpak, last_json, ok_json, run_hello};
use flatipfs_tests::edited_releases::{edited_deploy_dir, publish_app_with, publish_deploy_dir};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::raw_metadata::release_with_metadata;
use flatipfs_tests::stack::{run_ok, wait_for};
use flatipfs_tests::users::{self, UPDATER_USER};
use flatipfs_tests::Stack;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);
const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";
const HOST: &str = "[Context]\nfilesystems=host;\n";
const TALK_TO_FLATPAK: &str = "[Session Bus Policy]\norg.freedesktop.Flatpak=talk\n";

fn info(stack: &Stack) -> Value {
    ok_json(stack, &["info", "--json", "org.test.Hello"])
}

fn current_version(stack: &Stack) -> String {
    info(stack)["version"].as_str().unwrap().to_string()
}

fn kept_versions(stack: &Stack) -> Vec<String> {
    let mut v: Vec<String> = info(stack)["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn error_name(out: &std::process::Output) -> String {
    last_json(out)["error"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Nothing of the test app is installed or left on disk on the client.
fn assert_nothing_installed(pair: &Pair) {
    let client = &pair.client;
    let listed = ok_json(client, &["list", "--json"]);
    assert_eq!(listed["apps"], serde_json::json!([]), "{listed}");
    for dir in ["app/org.test.Hello", "app/org.test.Other"] {
        let path = client.installation().join(dir);
        assert!(!path.exists(), "{} is left", path.display());
    }
    let exports = client
        .installation()
        .join("exports/share/applications/org.test.Hello.desktop");
    assert!(!exports.exists(), "an export is left");
}

#[test]
fn metadata_that_contradicts_the_manifest_is_refused_before_anything_is_installed() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let client = &pair.client;
    let arch = pair.app_ref.split('/').nth(2).unwrap().to_string();
    let app_ref = pair.app_ref.clone();

    // `name=` of another app under a manifest for org.test.Hello: Flatpak
    // would run it as org.test.Other (its data, its permissions store).
    let dir = tempfile::tempdir().unwrap();
    let other = edited_deploy_dir(&pair, "repo-v1", &app_ref, dir.path(), |text| {
        text.replace("name=org.test.Hello", "name=org.test.Other")
    });
    let other_release = publish_deploy_dir(&pair, &other, "1");
    let disguised = pair.handmade(&other_release, |m| m["id"] = "org.test.Hello".into());
    let error = fails_with(
        client,
        &["install", "--json", &format!("/ipfs/{disguised}")],
        "VerificationFailed",
    );
    assert_eq!(error["exit_code"], 1, "{error}");
    let message = error["message"].to_string();
    assert!(message.contains("name=org.test.Other"), "{message}");
    assert_nothing_installed(&pair);

    // `runtime=` other than the manifest's: the manifest names a harmless
    // runtime (the one installed first), Flatpak would use another.
    let dir = tempfile::tempdir().unwrap();
    let evil_runtime = format!("runtime=org.test.Evil/{arch}/master");
    let swapped = edited_deploy_dir(&pair, "repo-v1", &app_ref, dir.path(), |text| {
        text.replace(
            &format!("runtime=org.test.Platform/{arch}/master"),
            &evil_runtime,
        )
    });
    let swapped_release = publish_deploy_dir(&pair, &swapped, "2");
    let honest_runtime = format!("org.test.Platform/{arch}/master");
    let disguised = pair.handmade(&swapped_release, |m| {
        m["runtime"] = honest_runtime.clone().into()
    });
    let error = fails_with(
        client,
        &["install", "--json", &format!("/ipfs/{disguised}")],
        "VerificationFailed",
    );
    assert_eq!(error["exit_code"], 1, "{error}");
    let message = error["message"].to_string();
    assert!(message.contains("org.test.Evil"), "{message}");
    assert_nothing_installed(&pair);

    // A metadata that GKeyFile would read differently from a reviewer: two
    // [Context] groups (merged by GKeyFile: the second adds the host). The
    // publisher refuses it (`hostile_polish`), so the release is made by
    // hand from an honest one.
    let dir = tempfile::tempdir().unwrap();
    let genuine_dir = edited_deploy_dir(&pair, "repo-v1", &app_ref, dir.path(), |t| t.to_string());
    let genuine = std::fs::read_to_string(genuine_dir.join("metadata")).unwrap();
    let honest = publish_deploy_dir(&pair, &genuine_dir, "3");
    let doubled_release = release_with_metadata(
        &pair,
        &honest,
        format!("{genuine}\n[Context]\nfilesystems=home:ro;\n\n[Context]\nfilesystems=host;\n")
            .as_bytes(),
    );
    let error = fails_with(
        client,
        &["install", "--json", &format!("/ipfs/{doubled_release}")],
        "VerificationFailed",
    );
    assert_eq!(error["exit_code"], 1, "{error}");
    let message = error["message"].to_string();
    assert!(
        message.contains("group [Context] appears twice"),
        "{message}"
    );
    assert_nothing_installed(&pair);

    // An oversized metadata (300 KiB of comments) is refused unread.
    let padded_release = release_with_metadata(
        &pair,
        &honest,
        format!(
            "{genuine}{}",
            "# padding padding padding padding\n".repeat(9000)
        )
        .as_bytes(),
    );
    let error = fails_with(
        client,
        &["install", "--json", &format!("/ipfs/{padded_release}")],
        "VerificationFailed",
    );
    assert_eq!(error["exit_code"], 1, "{error}");
    let message = error["message"].to_string();
    assert!(message.contains("over the limit of 262144"), "{message}");
    assert_nothing_installed(&pair);

    // An honest release of the same app still installs and runs.
    pair.publish_v1();
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

#[test]
fn an_update_that_widens_the_sandbox_is_held_and_needs_an_administrator() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    users::ensure_test_users().unwrap();
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // Version 2 asks for the whole host filesystem.
    publish_app_with(&pair, "repo-v2", "2", HOST);
    let out = flatipfsctl(client, None, &["update", "org.test.Hello"]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("filesystem host: not granted → read-write"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-new-permissions"), "{stderr}");
    let out = flatipfsctl(client, None, &["update", "--json", "org.test.Hello"]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    assert_eq!(
        error_name(&out),
        "org.flatipfs.Manager1.Error.PermissionsChanged"
    );
    // Nothing was deployed; version 1 runs; the hold is visible.
    assert_eq!(kept_versions(client), ["1"]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    let held = info(client);
    assert_eq!(held["available"], "2", "{held}");
    assert_eq!(
        held["pending_permissions"],
        serde_json::json!(["filesystem host: not granted → read-write"]),
        "{held}"
    );
    assert!(
        held["status"].as_str().unwrap().starts_with("update held:"),
        "{held}"
    );
    let shown = flatipfsctl(client, None, &["info", "org.test.Hello"]);
    assert!(shown.status.success(), "{shown:?}");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("held: it needs new permissions")
            && text.contains("- filesystem host: not granted → read-write"),
        "{text}"
    );

    // The hold is durable: a daemon killed and started again shows it.
    client
        .process("flatipfsd")
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGKILL)
        .unwrap();
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
    let restored = info(client);
    assert_eq!(
        restored["pending_permissions"], held["pending_permissions"],
        "{restored}"
    );
    assert!(
        restored["status"]
            .as_str()
            .unwrap()
            .starts_with("update held:"),
        "{restored}"
    );
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // A user allowed `update` may not approve new permissions...
    let out = flatipfsctl(
        client,
        Some(UPDATER_USER),
        &[
            "update",
            "--allow-new-permissions",
            "--json",
            "org.test.Hello",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        [
            "org.freedesktop.DBus.Error.AccessDenied",
            "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
        ]
        .contains(&error_name(&out).as_str()),
        "{out:?}"
    );
    // ...and without the option is told what the update needs.
    let out = flatipfsctl(
        client,
        Some(UPDATER_USER),
        &["update", "--json", "org.test.Hello"],
    );
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    assert_eq!(current_version(client), "1");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // An administrator (root) approves: version 2 with the host filesystem.
    let updated = ok_json(
        client,
        &[
            "update",
            "--allow-new-permissions",
            "--json",
            "org.test.Hello",
        ],
    );
    assert_eq!(updated["to"], "2", "{updated}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
    let shown = run_ok(&mut flatpak(
        client,
        &["info", "--show-permissions", "org.test.Hello"],
    ))
    .unwrap();
    assert!(shown.contains("filesystems=host"), "{shown}");
    let after = info(client);
    assert_eq!(after["pending_permissions"], serde_json::json!([]));
    assert!(
        !after["status"]
            .as_str()
            .unwrap()
            .starts_with("update held:"),
        "{after}"
    );

    // An update that grants nothing new is the ordinary `update` action.
    publish_app_with(&pair, "repo-v2", "3", HOST);
    let out = flatipfsctl(
        client,
        Some(UPDATER_USER),
        &["update", "--json", "org.test.Hello"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(current_version(client), "3");

    // A talk name to org.freedesktop.Flatpak (a sandbox escape) is caught.
    publish_app_with(&pair, "repo-v2", "4", &format!("{HOST}{TALK_TO_FLATPAK}"));
    let out = flatipfsctl(client, None, &["update", "org.test.Hello"]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("session bus name org.freedesktop.Flatpak: not granted → talk"),
        "{stderr}"
    );
    assert!(!stderr.contains("filesystem host"), "{stderr}");
    assert_eq!(current_version(client), "3");
}

#[test]
fn automatic_updates_hold_a_widening_release_and_apply_a_harmless_one() {
    let pair = Pair::up("\n[updates]\npolicy = \"apply\"\ninterval = \"2s\"\njitter = \"1s\"\n");
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);

    // Version 2 talks to org.freedesktop.Flatpak: found, held, not applied.
    publish_app_with(&pair, "repo-v2", "2", TALK_TO_FLATPAK);
    let mut held = || {
        let i = info(client);
        Ok(i["available"] == "2"
            && i["pending_permissions"]
                .as_array()
                .is_some_and(|p| !p.is_empty()))
    };
    wait_for("version 2 to be held", LIMIT, &mut held).unwrap();
    let seen = ok_json(client, &["policy", "--json"])["last_check"]
        .as_u64()
        .unwrap();
    let mut later = || {
        Ok(ok_json(client, &["policy", "--json"])["last_check"]
            .as_u64()
            .unwrap()
            > seen + 2)
    };
    wait_for("more automatic checks", LIMIT, &mut later).unwrap();
    let i = info(client);
    assert_eq!(i["version"], "1", "{i}");
    assert_eq!(i["available"], "2", "{i}");
    assert_eq!(
        i["pending_permissions"],
        serde_json::json!(["session bus name org.freedesktop.Flatpak: not granted → talk"]),
        "{i}"
    );
    assert!(
        i["status"].as_str().unwrap().starts_with("update held:"),
        "{i}"
    );
    assert_eq!(kept_versions(client), ["1"], "nothing was downloaded");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // UpdateAll holds it too, and says so.
    let all = ok_json(client, &["update", "--json"]);
    assert_eq!(all["updated"], serde_json::json!([]), "{all}");
    let listed = all["held_for_permissions"].to_string();
    assert!(listed.contains("org.test.Hello 2"), "{all}");
    assert_eq!(current_version(client), "1");

    // Version 3 grants nothing new: applied by itself, the hold is gone.
    pair.publish_version("repo-v2", "3");
    let mut applied = || Ok(current_version(client) == "3");
    wait_for("version 3 applied", LIMIT, &mut applied).unwrap();
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
    let i = info(client);
    assert_eq!(i["pending_permissions"], serde_json::json!([]), "{i}");
}

#[test]
fn an_update_to_another_runtime_installs_that_runtime_first() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    let arch = pair.app_ref.split('/').nth(2).unwrap().to_string();
    let old_runtime = format!("org.test.Platform/{arch}/master");
    let new_runtime = format!("org.test.Platform2/{arch}/master");

    // The publisher ships a second runtime that grants the host
    // filesystem to every app on it, and moves the app to it: the app's
    // own metadata grants nothing new, the runtime does.
    let runtime_ref = pair.runtime_ref.clone();
    let publish_runtime = |version: &str, extra: &str| {
        let dir = tempfile::tempdir().unwrap();
        let runtime = edited_deploy_dir(&pair, "repo-v1", &runtime_ref, dir.path(), |text| {
            format!(
                "{}\n{extra}",
                text.replace("org.test.Platform", "org.test.Platform2")
            )
        });
        publish_deploy_dir(&pair, &runtime, version);
    };
    publish_runtime("1", HOST);
    let dir = tempfile::tempdir().unwrap();
    let app_ref = pair.app_ref.clone();
    let moved = edited_deploy_dir(&pair, "repo-v2", &app_ref, dir.path(), |text| {
        text.replace(&old_runtime, &new_runtime)
    });
    publish_deploy_dir(&pair, &moved, "2");
    let out = flatipfsctl(client, None, &["update", "org.test.Hello"]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "runtime {new_runtime}: filesystem host: not granted → read-write"
        )),
        "{stderr}"
    );
    let out = flatipfsctl(client, None, &["info", "org.test.Platform2"]);
    assert_eq!(out.status.code(), Some(3), "not installed: {out:?}");
    assert_eq!(current_version(client), "1");

    // The runtime without that grant: the update installs it first.
    publish_runtime("2", "");
    let updated = ok_json(client, &["update", "--json", "org.test.Hello"]);
    assert_eq!(updated["to"], "2", "{updated}");
    let runtime = ok_json(client, &["info", "--json", "org.test.Platform2"]);
    assert_eq!(runtime["kind"], "runtime", "{runtime}");
    assert_eq!(info(client)["runtime"], new_runtime.as_str());
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
    let shown = run_ok(&mut flatpak(client, &["info", "org.test.Hello"])).unwrap();
    assert!(shown.contains(&new_runtime), "{shown}");
    // The old runtime stays (another app may use it) and is no longer
    // needed by this one: it can be uninstalled, the app still runs.
    let old = ok_json(client, &["info", "--json", "org.test.Platform"]);
    assert_eq!(old["kind"], "runtime", "{old}");
    ok_json(client, &["uninstall", "--json", "org.test.Platform"]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
}
