//! Publishing through the daemon, checked from a second Kubo node: remotes,
//! releases from a Flatpak repo and from a deploy directory, determinism,
//! and bad input that must leave the index naming the previous release.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use flatipfs_tests::ctl::{create_remote, flatipfsctl, last_json, ok_json, publish_repo};
use flatipfs_tests::fixtures::{self, deploy_dir, hello_ref};
use flatipfs_tests::network::wait_until_resolved;
use flatipfs_tests::users::{self, PLAIN_USER};
use flatipfs_tests::{paths, Stack, StackOptions, TestStack};
use serde_json::Value;

/// The store index as node `node` resolves it.
fn index_on(stack: &Stack, node: usize, ipns: &str) -> Value {
    let path = stack
        .ipfs(
            node,
            &["name", "resolve", "--nocache", &format!("/ipns/{ipns}")],
        )
        .unwrap();
    flatipfs_tests::index_layout::read_whole(stack, node, path.trim().trim_start_matches("/ipfs/"))
}

#[test]
fn a_release_published_on_one_node_is_read_back_on_another() {
    let apps = fixtures::test_apps().unwrap();
    let reference = hello_ref(&apps).unwrap();
    let stack = TestStack::up(&StackOptions::default()).unwrap();
    let ipns = create_remote(&stack, "main");

    // A new remote publishes an empty index.
    wait_until_resolved(&stack, 1, &stack, 2, &ipns).unwrap();
    let empty = index_on(&stack, 2, &ipns);
    assert_eq!(empty["apps"], serde_json::json!({}));

    let published = publish_repo(&stack, &apps.join("repo-v1"), &reference);
    assert_eq!(published["app"], "org.test.Hello");
    assert_eq!(published["version"], "1");
    assert_eq!(published["index"], format!("/ipns/{ipns}"));
    assert_eq!(published["sequence"], 2);
    let release = published["release"].as_str().unwrap();

    // Node 2 finds the new record through routing, resolves the index and reads the release.
    wait_until_resolved(&stack, 1, &stack, 2, &ipns).unwrap();
    let index = index_on(&stack, 2, &ipns);
    assert_eq!(index["apps"]["org.test.Hello"]["release"], release);
    assert_eq!(index["apps"]["org.test.Hello"]["kind"], "app");
    let manifest: Value = serde_json::from_str(
        &stack
            .ipfs(2, &["cat", &format!("/ipfs/{release}/manifest")])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["id"], "org.test.Hello");
    assert_eq!(manifest["kind"], "app");
    assert_eq!(
        manifest["runtime"].as_str().unwrap(),
        format!(
            "org.test.Platform/{}/master",
            reference.split('/').nth(2).unwrap()
        )
    );
    assert_eq!(manifest["import"]["chunker"], "buzhash");
    assert_eq!(manifest["import"]["kubo_version"], "0.43.1");
    assert_eq!(manifest["deploy"], published["deploy"]);

    // Every file's bytes, read through node 2, equal the deployed original;
    // modes and symlinks are in the manifest.
    let scratch = tempfile::tempdir().unwrap();
    let original = deploy_dir(&apps.join("repo-v1"), &reference, scratch.path()).unwrap();
    let entries = manifest["entries"].as_array().unwrap();
    let entry = |path: &str| {
        entries
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("{path} missing"))
    };
    for e in entries.iter().filter(|e| e["type"] == "file") {
        let path = e["path"].as_str().unwrap();
        let want = std::fs::read(original.join(path)).unwrap();
        assert_eq!(e["size"].as_u64().unwrap(), want.len() as u64);
        let got = Command::new(paths::kubo_binary().unwrap())
            .env("IPFS_PATH", &stack.kubo[1].repo)
            .args([
                "--timeout=60s",
                "cat",
                &format!("/ipfs/{}", e["cid"].as_str().unwrap()),
            ])
            .output()
            .unwrap();
        assert!(got.status.success());
        assert_eq!(got.stdout, want, "{path} differs");
    }
    assert_eq!(
        entry("files/bin/hello.sh")["mode"].as_u64().unwrap() & 0o777,
        0o755
    );
    assert_eq!(entry("files/bin/hello")["type"], "symlink");
    assert_eq!(entry("files/bin/hello")["target"], "hello.sh");
    assert_eq!(
        entry("files/bin/hello-absolute")["target"],
        "/app/bin/hello.sh"
    );
    assert_eq!(entry("metadata")["type"], "file");
    // Tiny files are inlined: the empty .ref needs no block at all.
    assert_eq!(entry("files/.ref")["cid"], "bafkqaaa");
    assert_eq!(manifest["import"]["inline_limit"], 32);
    let desktop = stack
        .ipfs(
            2,
            &[
                "cat",
                &format!("/ipfs/{release}/deploy/export/share/applications/org.test.Hello.desktop"),
            ],
        )
        .unwrap();
    assert!(
        desktop.contains("Exec=/usr/bin/flatpak run"),
        "published in deployed form: {desktop}"
    );
    assert!(
        !entries.iter().any(|e| e["path"] == "deploy"),
        "Flatpak's own deploy file is not published"
    );
}

#[test]
fn a_second_version_shares_what_did_not_change_and_raises_the_sequence() {
    let apps = fixtures::test_apps().unwrap();
    let reference = hello_ref(&apps).unwrap();
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    let ipns = create_remote(&stack, "main");
    let v1 = publish_repo(&stack, &apps.join("repo-v1"), &reference);
    let runtime = reference.replace("app/org.test.Hello", "runtime/org.test.Platform");
    let rt = publish_repo(&stack, &apps.join("repo-v1"), &runtime);
    assert_eq!(rt["app"], "org.test.Platform");
    let v2 = publish_repo(&stack, &apps.join("repo-v2"), &reference);
    assert_eq!(v2["version"], "2");
    assert_eq!(v2["previous"], v1["release"]);
    assert!(v2["sequence"].as_u64() > rt["sequence"].as_u64());
    let shared = v2["shared_bytes"].as_u64().unwrap();
    let new = v2["new_bytes"].as_u64().unwrap();
    // data.txt (300 kB) is unchanged; hello.sh changed and NEWS is new.
    assert!(shared > 300_000, "{v2}");
    assert!(new > 0 && new < 50_000, "{v2}");
    assert_eq!(shared + new, v2["release_bytes"].as_u64().unwrap());

    let index = index_on(&stack, 1, &ipns);
    assert_eq!(index["apps"]["org.test.Hello"]["release"], v2["release"]);
    assert_eq!(index["apps"]["org.test.Hello"]["version"], "2");
    assert_eq!(index["apps"]["org.test.Platform"]["kind"], "runtime");
    let manifest: Value = serde_json::from_str(
        &stack
            .ipfs(
                1,
                &[
                    "cat",
                    &format!("/ipfs/{}/manifest", v2["release"].as_str().unwrap()),
                ],
            )
            .unwrap(),
    )
    .unwrap();
    assert!(manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"] == "files/share/hello/NEWS"));
}

#[test]
fn publishing_the_same_tree_twice_gives_the_same_deploy_cid() {
    let apps = fixtures::test_apps().unwrap();
    let reference = hello_ref(&apps).unwrap();
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    create_remote(&stack, "main");
    let scratch = tempfile::tempdir().unwrap();
    let dir = deploy_dir(&apps.join("repo-v1"), &reference, scratch.path()).unwrap();
    let startup = scratch.path().join("startup-set");
    std::fs::write(&startup, "files/bin/hello.sh\nfiles/share/hello/data.txt\n").unwrap();

    let first = ok_json(
        &stack,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            "--version",
            "1.0",
            "--startup-set",
            startup.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    let second = ok_json(
        &stack,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            "--version",
            "1.0",
            dir.to_str().unwrap(),
        ],
    );
    let from_repo = publish_repo(&stack, &apps.join("repo-v1"), &reference);
    assert_eq!(first["deploy"], second["deploy"]);
    assert_eq!(
        first["deploy"], from_repo["deploy"],
        "a deploy directory and its repo publish the same tree"
    );
    assert_eq!(
        second["new_bytes"].as_u64(),
        Some(second["release_bytes"].as_u64().unwrap() - second["shared_bytes"].as_u64().unwrap())
    );

    let manifest: Value = serde_json::from_str(
        &stack
            .ipfs(
                1,
                &[
                    "cat",
                    &format!("/ipfs/{}/manifest", first["release"].as_str().unwrap()),
                ],
            )
            .unwrap(),
    )
    .unwrap();
    let startup_set = manifest["startup_set"].as_array().unwrap();
    assert_eq!(startup_set.len(), 2);
    assert_eq!(startup_set[0]["path"], "files/bin/hello.sh");
    assert_eq!(startup_set[1]["length"], 300000);
}

/// Publishes with `args`, expects failure with `error_name`, and checks that
/// the index still names `release`.
fn refused(
    stack: &Stack,
    ipns: &str,
    release: &str,
    args: &[&str],
    error_name: &str,
    message: &str,
) {
    let out = flatipfsctl(stack, None, args);
    assert!(!out.status.success(), "{args:?} succeeded: {out:?}");
    let error = last_json(&out);
    assert_eq!(error["error"]["name"], error_name, "{args:?}: {error}");
    let text = error["error"]["message"].as_str().unwrap();
    assert!(
        text.contains(message),
        "{args:?}: {text:?} lacks {message:?}"
    );
    let index = index_on(stack, 1, ipns);
    assert_eq!(
        index["apps"]["org.test.Hello"]["release"], release,
        "{args:?} changed the index"
    );
}

#[test]
fn bad_input_is_refused_with_a_typed_error_and_the_index_keeps_the_previous_release() {
    let apps = fixtures::test_apps().unwrap();
    let reference = hello_ref(&apps).unwrap();
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        extra_config: "\n[limits]\nmax_file_size = 200000\n".into(),
        ..Default::default()
    })
    .unwrap();
    let ipns = create_remote(&stack, "main");
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let good = deploy_dir(
        &apps.join("repo-v1"),
        &reference,
        &scratch.path().join("inst"),
    )
    .unwrap();

    // A small copy of the app that fits under the size limit, published once.
    let small = scratch.path().join("small");
    let copy = Command::new("cp")
        .arg("-a")
        .arg(&good)
        .arg(&small)
        .status()
        .unwrap();
    assert!(copy.success());
    std::fs::remove_file(small.join("files/share/hello/data.txt")).unwrap();
    let first = ok_json(
        &stack,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            small.to_str().unwrap(),
        ],
    );
    let release = first["release"].as_str().unwrap().to_string();
    let check = |args: &[&str], name: &str, message: &str| {
        refused(&stack, &ipns, &release, args, name, message)
    };
    let publish = |target: &Path, name: &str, message: &str| {
        check(
            &[
                "publish",
                "--json",
                "--remote",
                "main",
                target.to_str().unwrap(),
            ],
            name,
            message,
        )
    };
    // A copy of the small app with one more entry made by `add`.
    let variant = |name: &str, add: &dyn Fn(&Path)| {
        let dir = scratch.path().join(name);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&small)
            .arg(&dir)
            .status()
            .unwrap()
            .success());
        add(&dir.join("files"));
        dir
    };
    const NOT_FOUND: &str = "org.flatipfs.Manager1.Error.NotFound";
    const VERIFICATION: &str = "org.flatipfs.Manager1.Error.VerificationFailed";
    const INVALID: &str = "org.freedesktop.DBus.Error.InvalidArgs";

    publish(&scratch.path().join("missing"), NOT_FOUND, "does not exist");
    let repo = apps.join("repo-v1");
    check(
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            "--repo",
            repo.to_str().unwrap(),
            "app/org.test.Nope/x86_64/master",
        ],
        NOT_FOUND,
        "not in the repository",
    );
    let bare = scratch.path().join("bare");
    std::fs::create_dir_all(bare.join("files")).unwrap();
    publish(&bare, VERIFICATION, "no Flatpak `metadata`");

    let fifo = variant("with-fifo", &|files| {
        nix::unistd::mkfifo(&files.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap()
    });
    publish(&fifo, VERIFICATION, "FIFO");
    let device = variant("with-device", &|files| {
        assert!(Command::new("mknod")
            .arg(files.join("null"))
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success())
    });
    publish(&device, VERIFICATION, "character device");
    let socket = variant("with-socket", &|files| {
        // Bound, then closed: the socket file stays.
        std::os::unix::net::UnixListener::bind(files.join("sock")).unwrap();
    });
    publish(&socket, VERIFICATION, "socket");
    publish(&good, VERIFICATION, "over the limit");

    let small_path = small.to_str().unwrap();
    check(
        &["publish", "--json", "--remote", "Not/Valid", small_path],
        INVALID,
        "invalid remote name",
    );
    check(
        &["publish", "--json", "--remote", "nosuch", small_path],
        NOT_FOUND,
        "no publishing remote",
    );
    let bad_create = flatipfsctl(&stack, None, &["remote", "create", "Bad Name", "--json"]);
    assert_eq!(last_json(&bad_create)["error"]["name"], INVALID);
}

#[test]
fn publishing_needs_authorization() {
    let apps = fixtures::test_apps().unwrap();
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    users::ensure_test_users().unwrap();
    create_remote(&stack, "main");
    let bin = paths::binary("flatipfsctl").unwrap();
    let mut command = users::as_user(PLAIN_USER, bin.to_str().unwrap()).unwrap();
    command
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus_address)
        .args([
            "publish",
            "--json",
            "--remote",
            "main",
            "--repo",
            apps.join("repo-v1").to_str().unwrap(),
            &hello_ref(&apps).unwrap(),
        ]);
    let out = users::output(&mut command).unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let error = last_json(&out);
    // `publish` is auth_admin for everyone: without a terminal to ask on,
    // the daemon says a password is needed.
    assert_eq!(
        error["error"]["name"], "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
        "{error}"
    );
}

#[test]
fn a_publish_job_can_be_cancelled_by_its_initiator_only() {
    use flatipfs_dbus::proxy::{JobProxyBlocking, ManagerProxyBlocking};
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    users::ensure_test_users().unwrap();
    let ipns = create_remote(&stack, "main");
    let scratch = tempfile::tempdir().unwrap();
    let tree = scratch.path().join("big");
    std::fs::create_dir_all(tree.join("files")).unwrap();
    std::fs::write(
        tree.join("metadata"),
        "[Application]\nname=org.test.Big\nruntime=org.test.Platform/x86_64/master\n",
    )
    .unwrap();
    // Enough data that the job is still running when the cancel arrives.
    let data = Command::new("head")
        .args(["-c", "400M", "/dev/urandom"])
        .output()
        .unwrap()
        .stdout;
    std::fs::write(tree.join("files/blob"), data).unwrap();

    let bus = stack.bus().unwrap();
    let manager = ManagerProxyBlocking::new(&bus).unwrap();
    let removed = manager.receive_job_removed().unwrap();
    let options =
        std::collections::HashMap::from([("remote", zbus::zvariant::Value::from("main"))]);
    let path = manager.publish(tree.to_str().unwrap(), options).unwrap();
    let job = JobProxyBlocking::builder(&bus)
        .path(path.clone())
        .unwrap()
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .unwrap();
    assert_eq!(job.kind().unwrap(), "publish");
    assert_eq!(job.state().unwrap(), "running");

    // Someone else may not cancel it (cancel-other needs an admin).
    let mut other = users::as_user(PLAIN_USER, "/usr/bin/dbus-send").unwrap();
    other
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus_address)
        .args([
            "--system",
            "--print-reply",
            "--dest=org.flatipfs.Manager1",
            path.as_str(),
            "org.flatipfs.Manager1.Job.Cancel",
        ]);
    let out = users::output(&mut other).unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("InteractiveAuthorizationRequired"),
        "{out:?}"
    );
    assert_eq!(
        job.state().unwrap(),
        "running",
        "another user's cancel stopped the job"
    );

    // It is listed, and `flatipfsctl cancel` stops it.
    let id = job.id().unwrap();
    let listed = ok_json(&stack, &["jobs", "--json"]);
    let entry = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("job {id} not listed: {listed}"));
    assert_eq!(entry["type"], "publish");
    assert_eq!(entry["state"], "running");
    let missing = flatipfsctl(&stack, None, &["cancel", "999", "--json"]);
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
    ok_json(&stack, &["cancel", &id.to_string(), "--json"]);
    let signal = removed
        .into_iter()
        .find(|s| s.args().map(|a| a.path == path).unwrap_or(false))
        .unwrap();
    let args = signal.args().unwrap();
    assert_eq!(args.result, "cancelled");
    assert_eq!(args.error_name, "org.flatipfs.Manager1.Error.Cancelled");
    // Still readable during the grace period.
    assert_eq!(job.result().unwrap(), "cancelled");
    let listed = ok_json(&stack, &["jobs", "--json"]);
    assert!(
        listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id && j["result"] == "cancelled"),
        "{listed}"
    );
    assert_eq!(job.state().unwrap(), "finished");
    let index = index_on(&stack, 1, &ipns);
    assert!(
        index["apps"].get("org.test.Big").is_none(),
        "a cancelled publication reached the index"
    );
}
