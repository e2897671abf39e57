//! Remotes to install from: trusting one needs authorization, bad input is
//! refused with a typed error, and the list survives a daemon restart.

use std::process::Output;
use std::time::Duration;

use flatipfs_tests::ctl::flatipfsctl;
use flatipfs_tests::users::{self, ADMIN_USER, PLAIN_USER};
use flatipfs_tests::{Stack, StackOptions, TestStack};
use serde_json::Value;

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn names(stack: &Stack, user: Option<&str>) -> Vec<(String, String, bool)> {
    let out = flatipfsctl(stack, user, &["remote", "list", "--json"]);
    assert!(out.status.success(), "{out:?}");
    json(&out)["remotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["address"].as_str().unwrap().into(),
                r["publishing"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn remotes_are_added_listed_and_removed_with_authorization() {
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    users::ensure_test_users().unwrap();
    let created = flatipfsctl(&stack, None, &["remote", "create", "mine", "--json"]);
    let mine = json(&created)["name"].as_str().unwrap().to_string();

    // A remote to install from: here, the one this daemon publishes.
    let add = flatipfsctl(&stack, None, &["remote", "add", "store", &mine, "--json"]);
    assert!(add.status.success(), "{add:?}");
    let expected = vec![
        ("store".to_string(), mine.clone(), false),
        ("mine".to_string(), mine.clone(), true),
    ];
    assert_eq!(names(&stack, None), expected);
    // Listing needs no authorization.
    assert_eq!(names(&stack, Some(PLAIN_USER)), expected);

    // Trusting a remote needs an admin: a plain user is asked for a
    // password it cannot give; the admin group passes.
    let plain = flatipfsctl(
        &stack,
        Some(PLAIN_USER),
        &["remote", "add", "evil", &mine, "--json"],
    );
    assert_eq!(plain.status.code(), Some(4), "{plain:?}");
    assert_eq!(
        json(&plain)["error"]["name"],
        "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
    );
    let admin = flatipfsctl(
        &stack,
        Some(ADMIN_USER),
        &["remote", "add", "second", &mine, "--json"],
    );
    assert!(admin.status.success(), "{admin:?}");

    // Bad input: typed errors, nothing changed.
    for (args, name) in [
        (
            vec!["remote", "add", "store", &mine],
            "org.flatipfs.Manager1.Error.AlreadyInstalled",
        ),
        (
            vec!["remote", "add", "x", "/ipns/example.org"],
            "org.freedesktop.DBus.Error.InvalidArgs",
        ),
        (
            vec!["remote", "add", "x", "/ipfs/bafkqaaa"],
            "org.freedesktop.DBus.Error.InvalidArgs",
        ),
        (
            vec!["remote", "add", "Bad/Name", &mine],
            "org.freedesktop.DBus.Error.InvalidArgs",
        ),
        (
            vec!["remote", "remove", "nosuch"],
            "org.flatipfs.Manager1.Error.NotFound",
        ),
    ] {
        let mut args = args.clone();
        args.push("--json");
        let out = flatipfsctl(&stack, None, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(json(&out)["error"]["name"], name, "{args:?}");
    }
    assert_eq!(names(&stack, None).len(), 3);

    // The list survives a restart of the daemon.
    stack
        .process("flatipfsd")
        .unwrap()
        .stop(Duration::from_secs(15))
        .unwrap();
    stack.start_daemon().unwrap();
    assert_eq!(names(&stack, None).len(), 3);

    let remove = flatipfsctl(&stack, None, &["remote", "remove", "second", "--json"]);
    assert!(remove.status.success(), "{remove:?}");
    assert_eq!(names(&stack, None), expected);
}
