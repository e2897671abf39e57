//! Installing through the daemon across two Kubo nodes: published by one
//! stack, installed by another stack's flatipfsd, so every block travels.
//! The app runs with the real `flatpak` for root and for a user, the mount
//! shows exactly the published tree read-only, and uninstall leaves nothing
//! mounted, nothing pinned and nothing in MFS.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flatipfs_tests::ctl::{
    fails_with, flatipfsctl, flatpak, mounts_below, ok_json, run_hello, run_hello_as_user,
    state_if_installed,
};
use flatipfs_tests::fixtures::deploy_dir;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::{run_ok, wait_for};
use flatipfs_tests::trees::{assert_same_tree, mounted_options};
use flatipfs_tests::users::{self, PLAIN_USER};
use flatipfs_tests::{paths, Stack};

const LIMIT: Duration = Duration::from_secs(90);

/// Reads `path` in another thread; the result, or a panic if the read has
/// not returned after `limit` (a hang is a failure, not a slow pass).
fn read_bounded(path: &Path, limit: Duration) -> std::io::Result<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(&path));
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("a read through the mount hung for {limit:?}"))
}

/// The app's state as `flatipfsctl info --json` reports it.
fn state(stack: &Stack, id: &str) -> serde_json::Value {
    ok_json(stack, &["info", "--json", id])
}

const DATA: &str = "share/hello/data.txt";

/// `flatipfsctl ARGS` started in the background against `stack`.
fn spawn_ctl(stack: &Stack, args: &[&str]) -> std::process::Child {
    Command::new(paths::binary("flatipfsctl").unwrap())
        .env("DBUS_SYSTEM_BUS_ADDRESS", &stack.bus_address)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Asserts that `id` is absent: no object, no files, no mount, no pin.
fn assert_absent(stack: &Stack, id: &str, release: &str) {
    assert_eq!(state_if_installed(stack, id), None);
    let app_dir = stack.installation().join("app").join(id);
    assert!(
        mounts_below(&app_dir).is_empty(),
        "{:?}",
        mounts_below(&app_dir)
    );
    assert!(!app_dir.exists(), "{} is left", app_dir.display());
    let pins = stack.ipfs(1, &["pin", "ls", "--type=recursive"]).unwrap();
    assert!(!pins.contains(release), "{pins}");
}

/// Every mount below the installation answers (none is a dead FUSE mount).
fn assert_no_stale_mount(stack: &Stack) {
    for point in mounts_below(&stack.installation()) {
        std::fs::read_dir(&point).unwrap_or_else(|e| panic!("{point} is stale: {e}"));
    }
}

fn kill_daemon(stack: &Stack) {
    stack
        .process("flatipfsd")
        .unwrap()
        .signal(nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let mut gone = || {
        Ok(!stack
            .process("flatipfsd")
            .map(|p| p.alive())
            .unwrap_or(false))
    };
    wait_for("flatipfsd to die", LIMIT, &mut gone).unwrap();
}

#[test]
fn an_app_installed_from_another_node_runs_and_uninstalls_cleanly() {
    let pair = Pair::up("");
    users::ensure_test_users().unwrap();
    let release = pair.publish_v1();
    let client = &pair.client;

    let installed = ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(installed["id"], "org.test.Hello", "{installed}");
    assert_eq!(installed["state"], "installed", "{installed}");
    assert_eq!(installed["release"], release.as_str(), "{installed}");
    assert_eq!(installed["fetched_bytes"], installed["total_bytes"]);

    // The app and job objects are as documented.
    let bus = client.bus().unwrap();
    flatipfs_tests::introspection::assert_matches_committed(
        &bus,
        &flatipfs_dbus::app_path("org.test.Hello"),
        flatipfs_dbus::APP_INTERFACE,
        flatipfs_dbus::APP_INTROSPECTION_XML,
    );
    let manager = flatipfs_dbus::proxy::ManagerProxyBlocking::new(&bus).unwrap();
    let job = manager
        .list_jobs()
        .unwrap()
        .pop()
        .expect("the install job is in its grace period");
    flatipfs_tests::introspection::assert_matches_committed(
        &bus,
        job.as_str(),
        flatipfs_dbus::JOB_INTERFACE,
        flatipfs_dbus::JOB_INTROSPECTION_XML,
    );

    // The runtime came along from the same remote.
    let listed = ok_json(client, &["list", "--json"]);
    let ids: Vec<&str> = listed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["org.test.Hello", "org.test.Platform"], "{listed}");

    // Flatpak sees it and runs it, as root and as an unprivileged user.
    let list = run_ok(&mut flatpak(
        client,
        &["list", "--columns=application,installation"],
    ))
    .unwrap();
    assert!(list.contains("org.test.Hello"), "{list}");
    let info = run_ok(&mut flatpak(client, &["info", "org.test.Hello"])).unwrap();
    assert!(info.contains("Origin: flatipfs"), "{info}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    assert_eq!(
        run_hello_as_user(client),
        "Hello from org.test.Hello version 1"
    );

    // The mount shows exactly the published tree, read-only.
    let mount_point = installed["mount_point"].as_str().unwrap().to_string();
    let scratch = tempfile::tempdir().unwrap();
    let original = deploy_dir(&pair.apps.join("repo-v1"), &pair.app_ref, scratch.path()).unwrap();
    assert_same_tree(&original.join("files"), Path::new(&mount_point));
    let options = mounted_options(Path::new(&mount_point)).expect("files/ is mounted");
    for option in ["ro", "nosuid", "nodev"] {
        assert!(options.split(',').any(|o| o == option), "{options}");
    }
    let write = std::fs::write(Path::new(&mount_point).join("new-file"), b"x");
    assert_eq!(
        write.unwrap_err().raw_os_error(),
        Some(nix::libc::EROFS),
        "writes into the mount must fail with EROFS"
    );
    // `active` points at the 64-hex deploy holding the mount.
    let active = client.installation().join(&pair.app_ref).join("active");
    let target = std::fs::read_link(&active).unwrap();
    let name = target.to_string_lossy();
    assert!(
        name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );

    // Uninstall: nothing mounted, nothing pinned, nothing in MFS, gone from Flatpak.
    let pins_before = client.ipfs(1, &["pin", "ls", "--type=recursive"]).unwrap();
    assert!(pins_before.contains(&release), "{pins_before}");
    let out = flatipfsctl(client, None, &["uninstall", "org.test.Hello", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let app_dir = client.installation().join("app/org.test.Hello");
    assert!(
        mounts_below(&app_dir).is_empty(),
        "{:?}",
        mounts_below(&app_dir)
    );
    assert!(!app_dir.exists(), "{} is left", app_dir.display());
    let pins = client.ipfs(1, &["pin", "ls", "--type=recursive"]).unwrap();
    assert!(!pins.contains(&release), "{pins}");
    let mfs = client.ipfs(1, &["files", "ls", "/flatpak-apps"]).unwrap();
    assert!(!mfs.contains("org.test.Hello"), "{mfs}");
    let list = run_ok(&mut flatpak(client, &["list", "--columns=application"])).unwrap();
    assert!(!list.contains("org.test.Hello"), "{list}");
    let exports = client.installation().join("exports/share/applications");
    assert!(
        !exports.join("org.test.Hello.desktop").exists(),
        "the desktop file export is left"
    );
    let again = flatipfsctl(client, None, &["info", "org.test.Hello"]);
    assert_eq!(again.status.code(), Some(3), "{again:?}");
    // The runtime stays, still runnable by others.
    let runtime = ok_json(client, &["info", "--json", "org.test.Platform"]);
    assert_eq!(runtime["state"], "installed", "{runtime}");
    let mut ready = || Ok(mounts_below(&app_dir).is_empty());
    wait_for("no mount left", LIMIT, &mut ready).unwrap();
}

#[test]
fn a_degraded_app_runs_fails_missing_reads_with_eio_and_resumes_when_the_publisher_is_back() {
    let pair = Pair::up("");
    users::ensure_test_users().unwrap();
    let release = pair.publish_v1();
    let client = &pair.client;
    // One block of data.txt (not read at start-up) cannot be fetched.
    let withheld = pair.withhold(&release, &format!("deploy/files/{DATA}"));
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);

    let installed = ok_json(
        client,
        &["install", "--no-wait", "--json", "main", "org.test.Hello"],
    );
    assert_eq!(installed["state"], "degraded", "{installed}");
    // Runnable right away, for root (through flatipfsctl run, which warns)
    // and for a user.
    let out = flatipfsctl(client, None, &["run", "org.test.Hello"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Hello from org.test.Hello version 1"
    );
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("still being fetched") && warning.contains('%'),
        "{warning}"
    );
    assert_eq!(
        run_hello_as_user(client),
        "Hello from org.test.Hello version 1"
    );
    let info = state(client, "org.test.Hello");
    assert_eq!(info["state"], "degraded", "{info}");
    assert!(
        info["fetched_bytes"].as_u64() < info["total_bytes"].as_u64(),
        "{info}"
    );
    let listed = flatipfsctl(client, None, &["list"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("fetched)"),
        "{listed:?}"
    );

    // The publisher goes away: reads of the missing data fail with EIO
    // (within the configured read timeout), the app stays degraded.
    pair.stop_publisher_node();
    let mount_point = Path::new(installed["mount_point"].as_str().unwrap()).to_owned();
    let read = read_bounded(&mount_point.join(DATA), LIMIT);
    assert_eq!(
        read.map(|d| d.len()).unwrap_err().raw_os_error(),
        Some(nix::libc::EIO)
    );
    assert_eq!(state(client, "org.test.Hello")["state"], "degraded");

    // Back, with the block: the fetch resumes by itself and completes.
    // (The block is back before the node starts: a peer that answered
    // DONT_HAVE is not asked again by a want already pending.)
    pair.give_back(&withheld);
    pair.start_publisher_node();
    let mut complete = || Ok(state(client, "org.test.Hello")["state"] == "installed");
    wait_for("the fetch to resume and complete", LIMIT, &mut complete).unwrap();
    let data = read_bounded(&mount_point.join(DATA), LIMIT).unwrap();
    assert_eq!(data.len(), 300_000);
    assert!(data.iter().all(|&b| b == b'h'));
    let pins = client.ipfs(1, &["pin", "ls", "--type=recursive"]).unwrap();
    assert!(pins.contains(&release), "{pins}");
}

#[test]
fn ctrl_c_during_install_cancels_it_and_leaves_nothing() {
    let pair = Pair::up("");
    let release = pair.publish_v1();
    let client = &pair.client;
    let _withheld = pair.withhold(&release, &format!("deploy/files/{DATA}"));
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);

    let mut install = spawn_ctl(client, &["install", "main", "org.test.Hello"]);
    let mut degraded =
        || Ok(state_if_installed(client, "org.test.Hello").as_deref() == Some("degraded"));
    wait_for("the install to be running", LIMIT, &mut degraded).unwrap();
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
    let mut gone = || Ok(state_if_installed(client, "org.test.Hello").is_none());
    wait_for("the cancelled install to be removed", LIMIT, &mut gone).unwrap();
    let mut unmounted =
        || Ok(mounts_below(&client.installation().join("app/org.test.Hello")).is_empty());
    wait_for(
        "the cancelled install to be unmounted",
        LIMIT,
        &mut unmounted,
    )
    .unwrap();
    assert_absent(client, "org.test.Hello", &release);
    // The runtime installed before is untouched.
    assert_eq!(state(client, "org.test.Platform")["state"], "installed");
}

#[test]
fn after_sigkill_or_restart_an_app_is_installed_or_absent_never_broken() {
    let pair = Pair::up("");
    let release = pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);

    // 1. Killed while the app is being laid out (an exported file cannot
    //    be fetched; its metadata, checked before the install is recorded,
    //    can): after the restart it is absent.
    let export = pair.withhold(
        &release,
        "deploy/export/share/applications/org.test.Hello.desktop",
    );
    let mut install = spawn_ctl(client, &["install", "--no-wait", "main", "org.test.Hello"]);
    let mut laying_out =
        || Ok(state_if_installed(client, "org.test.Hello").as_deref() == Some("installing"));
    wait_for("the install to start", LIMIT, &mut laying_out).unwrap();
    kill_daemon(client);
    let _ = install.kill();
    let _ = install.wait();
    client.start_daemon().unwrap();
    assert_absent(client, "org.test.Hello", &release);
    assert_no_stale_mount(client);
    pair.give_back(&export);

    // 2. Killed while the app runs degraded: its mount is left dead; after
    //    the restart it is mounted again, runs, and the fetch resumes.
    let data = pair.withhold(&release, &format!("deploy/files/{DATA}"));
    let installed = ok_json(
        client,
        &["install", "--no-wait", "--json", "main", "org.test.Hello"],
    );
    let mount_point = Path::new(installed["mount_point"].as_str().unwrap()).to_owned();
    kill_daemon(client);
    let dead = std::fs::read_dir(&mount_point).map(|_| ()).unwrap_err();
    assert!(
        [nix::libc::ENOTCONN, nix::libc::ECONNABORTED].contains(&dead.raw_os_error().unwrap()),
        "the killed daemon's mount should be dead: {dead}"
    );
    client.start_daemon().unwrap();
    let mut back = || Ok(state_if_installed(client, "org.test.Hello").is_some());
    wait_for("the app to be restored", LIMIT, &mut back).unwrap();
    assert_eq!(state(client, "org.test.Hello")["state"], "degraded");
    assert_no_stale_mount(client);
    let mounts = mounts_below(&client.installation().join("app/org.test.Hello"));
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    pair.give_back(&data);
    let mut complete = || Ok(state(client, "org.test.Hello")["state"] == "installed");
    wait_for("the resumed fetch to complete", LIMIT, &mut complete).unwrap();

    // 3. A clean restart: everything is mounted again, once.
    client.process("flatipfsd").unwrap().stop(LIMIT).unwrap();
    client.start_daemon().unwrap();
    let mut back =
        || Ok(state_if_installed(client, "org.test.Hello").as_deref() == Some("installed"));
    wait_for("the app to be restored", LIMIT, &mut back).unwrap();
    assert_no_stale_mount(client);
    let mounts = mounts_below(&client.installation());
    assert_eq!(mounts.len(), 2, "app and runtime, once each: {mounts:?}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let pair = Pair::up("");
    let release = pair.publish_v1();
    let client = &pair.client;
    let app_dir = client.installation().join("app");

    // An app the remote does not have: NotFound, naming what it has.
    let error = fails_with(
        client,
        &["install", "--json", "main", "org.test.Nope"],
        "NotFound",
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("org.test.Hello"),
        "{error}"
    );
    assert_eq!(error["exit_code"], 3);

    // A remote whose index name resolves nowhere: ResolveFailed, in bounded
    // time (resolve_timeout is 10 s in the test stacks).
    let ghost = pair
        .publisher
        .ipfs(1, &["key", "gen", "--ipns-base=base36", "ghost"])
        .unwrap();
    let address = format!("/ipns/{}", ghost.trim());
    ok_json(client, &["remote", "add", "ghost", &address, "--json"]);
    fails_with(
        client,
        &["install", "--json", "ghost", "org.test.Hello"],
        "ResolveFailed",
    );

    // Hand-made releases with unsafe manifests: VerificationFailed, nothing mounted.
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 4] = [
        ("..", |m| {
            m["entries"][3]["path"] = "files/../../../etc".into()
        }),
        ("absolute", |m| {
            m["entries"][3]["path"] = "/etc/passwd".into()
        }),
        ("duplicate", |m| {
            let entries = m["entries"].as_array_mut().unwrap();
            let copy = entries[3].clone();
            entries.push(copy);
        }),
        ("arch", |m| m["arch"] = "../../..".into()),
    ];
    for (what, edit) in edits {
        let root = pair.handmade(&release, edit);
        let source = format!("/ipfs/{root}");
        let error = fails_with(
            client,
            &["install", "--json", &source],
            "VerificationFailed",
        );
        assert!(
            error["message"].as_str().unwrap().contains("is invalid"),
            "{what}: {error}"
        );
        assert!(mounts_below(&client.installation()).is_empty(), "{what}");
        assert!(!app_dir.exists(), "{what}: {}", app_dir.display());
    }
    let listed = ok_json(client, &["list", "--json"]);
    assert_eq!(listed["apps"], serde_json::json!([]), "{listed}");

    // A manifest whose export/ lists a symlink to a host file that its
    // deploy/ tree does not hold: refused before anything is laid out
    // (docs/security-kubo.md); nothing of the host is copied.
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let evil = pair.handmade(&release, |m| {
        let entries = m["entries"].as_array_mut().unwrap();
        let at = entries
            .iter()
            .position(|e| e["path"] == "export/share/applications")
            .expect("the app exports a desktop file");
        let cid = entries[at]["cid"].clone();
        entries.insert(
            at + 1,
            serde_json::json!({"path": "export/share/applications/evil.desktop",
                "type": "symlink", "mode": 0o777, "target": "/etc/shadow", "cid": cid}),
        );
    });
    let error = fails_with(
        client,
        &["install", "--json", &format!("/ipfs/{evil}")],
        "VerificationFailed",
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("deploy/export/share/applications/evil.desktop is in the manifest but not in the release"),
        "{error}"
    );
    assert!(!app_dir.join("org.test.Hello").exists());
    let installed = ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(installed["state"], "installed", "{installed}");
    let shadow = std::fs::read("/etc/shadow").unwrap();
    let mounts = mounts_below(&client.installation());
    let mut checked = 0;
    for path in flatipfs_tests::trees::walk(&client.installation()) {
        if mounts.iter().any(|m| path.starts_with(m)) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            assert_ne!(target, Path::new("/etc/shadow"), "{}", path.display());
            assert!(!path.ends_with("evil.desktop"), "{}", path.display());
        } else if meta.is_file() {
            assert_ne!(std::fs::read(&path).unwrap(), shadow, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked > 3, "checked only {checked} files");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // Installing an installed app: AlreadyInstalled, the app untouched.
    let error = fails_with(
        client,
        &["install", "--json", "main", "org.test.Hello"],
        "AlreadyInstalled",
    );
    assert!(
        error["message"].as_str().unwrap().contains("update"),
        "{error}"
    );
    assert_eq!(state(client, "org.test.Hello")["state"], "installed");
}

#[test]
fn installing_and_uninstalling_need_authorization_reading_does_not() {
    use flatipfs_tests::users::ADMIN_USER;
    let pair = Pair::up("");
    users::ensure_test_users().unwrap();
    pair.publish_v1();
    let client = &pair.client;
    let refused = |out: &std::process::Output| {
        assert!(!out.status.success(), "{out:?}");
        assert_eq!(out.status.code(), Some(4), "{out:?}");
        let name = flatipfs_tests::ctl::last_json(out)["error"]["name"].clone();
        assert!(
            name == "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
                || name == "org.freedesktop.DBus.Error.AccessDenied",
            "{name}"
        );
    };

    // A plain user is refused before anything happens.
    let out = flatipfsctl(
        client,
        Some(PLAIN_USER),
        &["install", "--json", "main", "org.test.Hello"],
    );
    refused(&out);
    assert_eq!(state_if_installed(client, "org.test.Hello"), None);
    assert!(!client.installation().join("app").exists());

    // The admin group passes; everyone may read.
    let out = flatipfsctl(
        client,
        Some(ADMIN_USER),
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert!(out.status.success(), "{out:?}");
    let listed = flatipfsctl(client, Some(PLAIN_USER), &["list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let info = flatipfsctl(
        client,
        Some(PLAIN_USER),
        &["info", "--json", "org.test.Hello"],
    );
    assert_eq!(
        flatipfs_tests::ctl::last_json(&info)["state"],
        "installed",
        "{info:?}"
    );

    // Uninstalling: refused for the plain user, the app untouched.
    let out = flatipfsctl(
        client,
        Some(PLAIN_USER),
        &["uninstall", "--json", "org.test.Hello"],
    );
    refused(&out);
    assert_eq!(state(client, "org.test.Hello")["state"], "installed");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    let out = flatipfsctl(
        client,
        Some(ADMIN_USER),
        &["uninstall", "--json", "org.test.Hello"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(state_if_installed(client, "org.test.Hello"), None);
}
