//! Malicious-release suite, input documents (issue 9): hand-made manifests
//! and store indexes that try what a hostile publisher (or whoever controls
//! the network path) could — startup sets naming other content, ranges
//! beyond their file or without end, terminal escape sequences in versions,
//! setuid modes. Each is refused with a typed error before anything is
//! installed, or (modes) served clamped; the app installed before stays
//! installed and runnable.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flatipfs_tests::ctl::{
    create_remote, fails_with, flatipfsctl, mounts_below, ok_json, run_hello,
};
use flatipfs_tests::fixtures::{self, deploy_dir, hello_ref};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::{StackOptions, TestStack};
use serde_json::{json, Value};

const ESCAPE_VERSION: &str = "1.0\u{1b}]0;pwned\u{7}";

/// The first regular file of a manifest's `files/` with at least 2 bytes:
/// (index in entries, path, size).
fn some_file(manifest: &Value) -> (usize, String, u64) {
    manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, e)| {
            e["type"] == "file"
                && e["path"].as_str().unwrap().starts_with("files/")
                && e["size"].as_u64().unwrap() >= 2
        })
        .map(|(i, e)| {
            (
                i,
                e["path"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
            )
        })
        .expect("the test app has a file")
}

fn manifest_of(pair: &Pair, release: &str) -> Value {
    let text = pair
        .publisher
        .ipfs(1, &["cat", &format!("/ipfs/{release}/manifest")])
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn hostile_startup_sets_and_versions_are_refused_and_change_nothing() {
    // The client accepts at most 100 startup ranges (limits.max_startup_ranges).
    let pair = Pair::up("[limits]\nmax_startup_ranges = 100\n");
    let release = pair.publish_v1();
    let client = &pair.client;
    let app_dir = client.installation().join("app");
    let manifest = manifest_of(&pair, &release);
    let (_, path, size) = some_file(&manifest);
    let deploy = manifest["deploy"].as_str().unwrap().to_string();
    let range = |cid: &str, offset: u64, length: u64| json!({"path": path, "cid": cid, "offset": offset, "length": length});
    let file_cid = manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path.as_str())
        .unwrap()["cid"]
        .as_str()
        .unwrap()
        .to_string();

    // The runtime is there, so that nothing but the checks stops an install.
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let runtime_mounts = mounts_below(&client.installation());

    // Hand-made releases, installed by /ipfs/ root: VerificationFailed with
    // the reason, nothing mounted, nothing written, nothing listed.
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a CID that is not the file's",
            json!([range(&deploy, 0, 1)]),
            "its CID is not the file's",
        ),
        (
            "a path not in the manifest",
            json!([{"path": "files/../../etc/shadow", "cid": file_cid, "offset": 0, "length": 1}]),
            "not a file of the manifest",
        ),
        (
            "a range beyond the file",
            json!([range(&file_cid, 0, size + 1)]),
            "beyond the end of the file",
        ),
        (
            "a range whose end overflows",
            json!([range(&file_cid, u64::MAX, 2)]),
            "beyond the end of the file",
        ),
        (
            "more ranges than the limit",
            Value::Array(vec![range(&file_cid, 0, 1); 101]),
            "101 ranges, over the limit of 100",
        ),
        (
            // Some 100 MB of manifest: refused by the document limit
            // before it is parsed.
            "a million ranges",
            Value::Array(vec![range(&file_cid, 0, 1); 1_000_000]),
            "larger than",
        ),
    ];
    for (what, startup_set, reason) in cases {
        let root = pair.handmade(&release, |m| m["startup_set"] = startup_set);
        let error = fails_with(
            client,
            &["install", "--json", &format!("/ipfs/{root}")],
            "VerificationFailed",
        );
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(reason), "{what}: {error}");
        assert_eq!(
            mounts_below(&client.installation()),
            runtime_mounts,
            "{what}"
        );
        assert!(!app_dir.exists(), "{what}: {}", app_dir.display());
    }

    // A version carrying a terminal escape sequence: refused at the door,
    // and the error shown on a terminal carries no escape character.
    let root = pair.handmade(&release, |m| m["version"] = ESCAPE_VERSION.into());
    let source = format!("/ipfs/{root}");
    let error = fails_with(
        client,
        &["install", "--json", &source],
        "VerificationFailed",
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("invalid version"),
        "{error}"
    );
    let out = flatipfsctl(client, None, &["install", &source]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid version"), "{stderr}");
    assert!(
        !out.stderr.contains(&0x1b) && !out.stderr.contains(&0x07),
        "{stderr:?}"
    );
    assert!(!app_dir.exists());
    let listed = ok_json(client, &["list", "--json"]);
    let ids: Vec<&str> = listed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["org.test.Platform"], "{listed}");

    // The app, installed for real from the remote.
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    let before = ok_json(client, &["info", "--json", "org.test.Hello"]);
    let runtime_before = ok_json(client, &["info", "--json", "org.test.Platform"]);

    // The remote's index names a version with an escape sequence: the whole
    // index is refused, on a check as on an update.
    let (_, honest) = pair.current_index();
    pair.publish_handmade_index(|index| {
        let sequence = index["sequence"].as_u64().unwrap() + 1;
        index["sequence"] = sequence.into();
        index["apps"]["org.test.Hello"]["version"] = ESCAPE_VERSION.into();
        index["apps"]["org.test.Hello"]["sequence"] = sequence.into();
    });
    let error = fails_with(
        client,
        &["update", "--json", "org.test.Hello"],
        "VerificationFailed",
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("store index") && message.contains("invalid version"),
        "{error}"
    );
    let out = flatipfsctl(client, None, &["update", "org.test.Hello"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(!out.stderr.contains(&0x1b), "{:?}", out.stderr);
    assert!(!out.stdout.contains(&0x1b), "{:?}", out.stdout);

    // The honest index again, at a higher sequence (the attacks below
    // start from the index the publisher's node published last).
    pair.publish_handmade_index(|index| {
        let sequence = index["sequence"].as_u64().unwrap() + 1;
        *index = honest.clone();
        index["sequence"] = sequence.into();
    });

    // The index offers a release whose startup set reads beyond its file:
    // the update is refused, the installed release stays.
    let evil = pair.handmade(&release, |m| {
        m["startup_set"] = json!([range(&file_cid, 1, size)]);
    });
    pair.offer_release("org.test.Hello", &evil);
    let error = fails_with(
        client,
        &["update", "--json", "org.test.Hello"],
        "VerificationFailed",
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("beyond the end of the file"),
        "{error}"
    );

    // Nothing changed: same release, same runtime, still runs.
    let after = ok_json(client, &["info", "--json", "org.test.Hello"]);
    assert_eq!(after["release"], before["release"], "{after}");
    assert_eq!(after["version"], before["version"], "{after}");
    assert_eq!(
        ok_json(client, &["info", "--json", "org.test.Platform"])["release"],
        runtime_before["release"]
    );
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

#[test]
fn setuid_and_world_writable_modes_are_never_served() {
    let pair = Pair::up("");
    let release = pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let manifest = manifest_of(&pair, &release);
    let entries = manifest["entries"].as_array().unwrap();
    let executable = entries
        .iter()
        .find(|e| {
            e["type"] == "file"
                && e["path"].as_str().unwrap().starts_with("files/")
                && e["mode"].as_u64().unwrap() & 0o100 != 0
        })
        .expect("the test app has an executable")["path"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, plain, _) = some_file(&manifest);
    let plain = entries
        .iter()
        .find(|e| {
            e["type"] == "file"
                && e["path"].as_str().unwrap().starts_with("files/")
                && e["mode"].as_u64().unwrap() & 0o100 == 0
        })
        .map_or(plain, |e| e["path"].as_str().unwrap().to_string());
    let dir = entries
        .iter()
        .find(|e| e["type"] == "dir" && e["path"].as_str().unwrap().starts_with("files/"))
        .expect("the test app has a directory in files/")["path"]
        .as_str()
        .unwrap()
        .to_string();

    // Every mode bit set: setuid, setgid, sticky, writable by all.
    let evil = pair.handmade(&release, |m| {
        for e in m["entries"].as_array_mut().unwrap() {
            let path = e["path"].as_str().unwrap().to_string();
            if path == executable || path == dir {
                e["mode"] = 0o7777.into();
            } else if path == plain {
                e["mode"] = 0o6666.into();
            }
        }
    });
    ok_json(client, &["install", "--json", &format!("/ipfs/{evil}")]);
    let info = ok_json(client, &["info", "--json", "org.test.Hello"]);
    assert_eq!(info["release"], evil.as_str(), "{info}");
    let mount = info["mount_point"].as_str().unwrap().to_string();
    let mode = |path: &str| {
        let below = path.strip_prefix("files/").unwrap();
        std::fs::metadata(Path::new(&mount).join(below))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(&executable), 0o755, "{executable}");
    assert_eq!(mode(&dir), 0o755, "{dir}");
    if plain != executable {
        assert_eq!(mode(&plain), 0o644, "{plain}");
    }
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

#[test]
fn a_publisher_refuses_a_startup_set_clients_would_refuse() {
    let apps = fixtures::test_apps().unwrap();
    let reference = hello_ref(&apps).unwrap();
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    let ipns = create_remote(&stack, "main");
    let scratch = tempfile::tempdir().unwrap();
    let dir = deploy_dir(&apps.join("repo-v1"), &reference, scratch.path()).unwrap();
    // One file listed 10001 times: each a file of the release, too many
    // ranges for a client with default limits.
    let startup = scratch.path().join("startup-set");
    std::fs::write(&startup, "files/bin/hello.sh\n".repeat(10_001)).unwrap();
    let error = fails_with(
        &stack,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            "--startup-set",
            startup.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        "org.freedesktop.DBus.Error.InvalidArgs",
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("10001 ranges, over the limit of 10000"),
        "{error}"
    );
    // Nothing was published: the index is still empty.
    let path = stack
        .ipfs(
            1,
            &["name", "resolve", "--nocache", &format!("/ipns/{ipns}")],
        )
        .unwrap();
    let index = flatipfs_tests::index_layout::read_whole(
        &stack,
        1,
        path.trim().trim_start_matches("/ipfs/"),
    );
    assert_eq!(index["apps"], json!({}), "{index}");
}
