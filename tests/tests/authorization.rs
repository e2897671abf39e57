//! Authorization denials that had no test: a plain user (not in the
//! `flatipfs` group, no login session) is refused pin and unpin, vacuum,
//! an app's and the daemon's automatic update policy, updating everything,
//! and creating a publishing remote — and nothing changes. An admin-group
//! user passes where a control shows the command itself works.

use flatipfs_tests::ctl::{flatipfsctl, last_json, ok_json, run_hello};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::users::{self, ADMIN_USER, PLAIN_USER};
use flatipfs_tests::{Stack, StackOptions, TestStack};
use serde_json::Value;

/// Runs `flatipfsctl ARGS --json` as the plain user and asserts polkit's
/// refusal: exit code 4, AccessDenied or InteractiveAuthorizationRequired
/// (what polkit answers a user without a session; system-services.md §2).
fn refused(stack: &Stack, args: &[&str]) {
    let mut args = args.to_vec();
    args.push("--json");
    let out = flatipfsctl(stack, Some(PLAIN_USER), &args);
    assert!(!out.status.success(), "{args:?} passed: {out:?}");
    assert_eq!(out.status.code(), Some(4), "{args:?}: {out:?}");
    let name = last_json(&out)["error"]["name"].clone();
    assert!(
        name == "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
            || name == "org.freedesktop.DBus.Error.AccessDenied",
        "{args:?}: {name}"
    );
}

/// What the refused calls could change, as the daemon's state file says.
fn guarded_state(stack: &Stack) -> Value {
    let state: Value =
        serde_json::from_slice(&std::fs::read(stack.dir.join("state/state.json")).unwrap())
            .unwrap();
    let apps: serde_json::Map<String, Value> = state["apps"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, a)| {
            (
                id.clone(),
                serde_json::json!({
                    "current": a["current"],
                    "update_policy": a["update_policy"],
                    "deployments": a["deployments"],
                }),
            )
        })
        .collect();
    serde_json::json!({
        "apps": apps,
        "automatic_update_policy": state["automatic_update_policy"],
        "publishing": state["publishing"],
        "remotes": state["remotes"],
    })
}

/// The types of the jobs the daemon lists (running or in their grace period).
fn job_types(stack: &Stack) -> Vec<String> {
    let bus = stack.bus().unwrap();
    let manager = flatipfs_dbus::proxy::ManagerProxyBlocking::new(&bus).unwrap();
    manager
        .list_jobs()
        .unwrap()
        .into_iter()
        .filter_map(|path| {
            flatipfs_dbus::proxy::JobProxyBlocking::builder(&bus)
                .path(path)
                .ok()?
                .build()
                .ok()?
                .kind()
                .ok()
        })
        .collect()
}

#[test]
fn pins_vacuum_update_policies_and_update_all_are_refused_to_a_plain_user() {
    let pair = Pair::up("");
    users::ensure_test_users().unwrap();
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    // A newer release, so that UpdateAll would have work to do.
    pair.publish("repo-v2", &pair.app_ref.clone());
    // Root pins version 1, so that unpin has something to undo.
    ok_json(client, &["pin", "--json", "org.test.Hello", "1"]);
    let before = guarded_state(client);
    let jobs_before = job_types(client);

    refused(client, &["unpin", "org.test.Hello", "1"]);
    refused(client, &["pin", "org.test.Platform", "1"]);
    refused(client, &["vacuum"]);
    refused(client, &["policy", "--app", "org.test.Hello", "apply"]);
    refused(client, &["policy", "apply"]);
    refused(client, &["policy", "default"]);
    refused(client, &["update"]);

    assert_eq!(guarded_state(client), before);
    let jobs_after = job_types(client);
    assert_eq!(jobs_after, jobs_before, "a refused call started a job");
    let pins = ok_json(client, &["pins", "--json"]);
    let hello = pins["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "org.test.Hello")
        .unwrap()
        .clone();
    assert_eq!(hello["deployments"][0]["pinned"], true, "{pins}");
    let info = ok_json(client, &["info", "--json", "org.test.Hello"]);
    assert_eq!(info["version"], "1", "{info}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // The control: the admin group may, so the refusals above were polkit's.
    let out = flatipfsctl(
        client,
        Some(ADMIN_USER),
        &["policy", "--app", "org.test.Hello", "none", "--json"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_ne!(guarded_state(client), before);
}

#[test]
fn creating_a_publishing_remote_is_refused_to_a_plain_user() {
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    users::ensure_test_users().unwrap();
    let keys_before = stack.ipfs(1, &["key", "list"]).unwrap();

    refused(&stack, &["remote", "create", "evil"]);

    assert_eq!(stack.ipfs(1, &["key", "list"]).unwrap(), keys_before);
    let listed = ok_json(&stack, &["remote", "list", "--json"]);
    assert!(!listed.to_string().contains("evil"), "{listed}");
    let state = stack.dir.join("state/state.json");
    if state.exists() {
        let text = std::fs::read_to_string(&state).unwrap();
        assert!(!text.contains("evil"), "{text}");
    }
}
