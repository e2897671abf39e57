//! A daemon that holds many apps: only current releases are mounted, a kept
//! release is mounted when a rollback (offline) or a running sandbox needs
//! it, everything is runnable again after a restart, and the daemon's
//! threads do not grow with the number of apps.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use flatipfs_tests::ctl::{flatpak, ok_json};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::{run_ok, wait_for};
use flatipfs_tests::Stack;

const LIMIT: Duration = Duration::from_secs(60);
const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";
const APPS: usize = 5;

fn id(n: usize) -> String {
    format!("org.test.Many{n}")
}

/// A tiny app's deploy directory: `start.sh` prints its id and version.
fn app_tree(dir: &Path, id: &str, version: &str, arch: &str) -> PathBuf {
    let tree = dir.join(format!("{id}-{version}"));
    std::fs::create_dir_all(tree.join("files/bin")).unwrap();
    std::fs::write(
        tree.join("files/bin/start.sh"),
        format!("#!/bin/sh\necho \"{id} version {version}\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tree.join("files/bin/start.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(tree.join("files/.ref"), "").unwrap();
    std::fs::write(
        tree.join("metadata"),
        format!(
            "[Application]\nname={id}\nruntime=org.test.Platform/{arch}/master\ncommand=start.sh\n"
        ),
    )
    .unwrap();
    tree
}

fn publish(pair: &Pair, tree: &Path, version: &str) {
    ok_json(
        &pair.publisher,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            "--version",
            version,
            tree.to_str().unwrap(),
        ],
    );
}

fn run(stack: &Stack, id: &str) -> String {
    run_ok(&mut flatpak(stack, &["run", id]))
        .unwrap()
        .trim()
        .to_string()
}

/// FUSE mounts below the client's installation.
fn mounts(stack: &Stack) -> usize {
    let installation = stack.installation();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(&installation))
        .count()
}

fn wait_mounts(stack: &Stack, n: usize) {
    wait_for(
        &format!("{n} mounts"),
        LIMIT,
        &mut || Ok(mounts(stack) == n),
    )
    .unwrap_or_else(|e| panic!("{e}: {} mounted", mounts(stack)));
}

fn threads(stack: &Stack) -> usize {
    let pid = stack.process("flatipfsd").unwrap().pid;
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn only_current_releases_are_mounted_and_everything_survives_a_restart() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let client = &pair.client;
    let arch = pair.runtime_ref.split('/').nth(2).unwrap().to_string();
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let trees = pair.publisher.dir.join("trees");
    for n in 1..=APPS {
        publish(&pair, &app_tree(&trees, &id(n), "1", &arch), "1");
    }
    pair.wait_until_client_resolves_index();

    // One app installed and updated once: the daemon's threads then.
    ok_json(client, &["install", "--json", "main", &id(1)]);
    publish(&pair, &app_tree(&trees, &id(1), "2", &arch), "2");
    pair.wait_until_client_resolves_index();
    ok_json(client, &["update", "--json", &id(1)]);
    // The runtime and app 1's current release; its previous one is kept
    // but not mounted.
    wait_mounts(client, 2);
    let one_app = threads(client);

    for n in 2..=APPS {
        ok_json(client, &["install", "--json", "main", &id(n)]);
    }
    for n in 2..=APPS {
        publish(&pair, &app_tree(&trees, &id(n), "2", &arch), "2");
    }
    pair.wait_until_client_resolves_index();
    // An instance of app 2 that runs across its update.
    let mut running = flatpak(
        client,
        &[
            "run",
            "--command=sh",
            &id(2),
            "-c",
            "cat /app/bin/start.sh; read line; cat /app/bin/start.sh",
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
    for n in 2..=APPS {
        ok_json(client, &["update", "--json", &id(n)]);
        assert_eq!(run(client, &id(n)), format!("{} version 2", id(n)));
    }
    // Every app keeps one previous release on disk.
    for n in 1..=APPS {
        let info = ok_json(client, &["info", "--json", &id(n)]);
        assert_eq!(info["deployments"].as_array().unwrap().len(), 2, "{info}");
    }
    // Mounted: the runtime, each current release, and app 2's old release
    // while its sandbox runs (a sweep runs every few seconds: let several
    // pass).
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(mounts(client), APPS + 2);
    writeln!(running.stdin.as_mut().unwrap()).unwrap();
    let mut after = String::new();
    std::io::Read::read_to_string(&mut out, &mut after).unwrap();
    assert!(running.wait().unwrap().success());
    assert!(
        after.contains("version 1"),
        "the running instance kept its tree: {after}"
    );
    // Once it exits, its old release is unmounted.
    wait_mounts(client, APPS + 1);

    // Threads do not grow per app: five apps (ten kept releases) need no
    // more than one app did, give or take the runtime's idle helpers.
    let mut five_apps = threads(client);
    wait_for("threads back to the one-app level", LIMIT, &mut || {
        five_apps = threads(client);
        Ok(five_apps <= one_app + 4)
    })
    .unwrap_or_else(|e| panic!("{e}: {one_app} threads with 1 app, {five_apps} with {APPS}"));

    // Flatpak sees every app, kept releases with an empty files/ included.
    let listed = run_ok(&mut flatpak(
        client,
        &["list", "--app", "--columns=application"],
    ))
    .unwrap();
    for n in 1..=APPS {
        assert!(listed.contains(&id(n)), "{listed}");
    }
    // (`flatpak info` without an option aborts on these generated apps,
    // with or without a kept release: Flatpak 1.14's own assertion.)
    let info = run_ok(&mut flatpak(client, &["info", "--show-metadata", &id(3)])).unwrap();
    assert!(info.contains(&format!("name={}", id(3))), "{info}");
    let location = run_ok(&mut flatpak(client, &["info", "--show-location", &id(3)])).unwrap();
    assert!(
        Path::new(location.trim())
            .join("files/bin/start.sh")
            .exists(),
        "{location}"
    );

    // Rollback with the publisher's node stopped: the kept release is
    // mounted from its cached manifest, and the one left is unmounted.
    pair.stop_publisher_node();
    ok_json(client, &["rollback", "--json", &id(3)]);
    assert_eq!(run(client, &id(3)), format!("{} version 1", id(3)));
    wait_mounts(client, APPS + 1);

    // A restart: every app runnable again, only current releases mounted.
    client
        .process("flatipfsd")
        .unwrap()
        .stop(Duration::from_secs(30))
        .unwrap();
    client.start_daemon().unwrap();
    wait_for("every app mounted again", LIMIT, &mut || {
        let list = ok_json(client, &["list", "--json"]);
        Ok(list["apps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| !a["mount_point"].as_str().unwrap_or("").is_empty())
            .count()
            == APPS + 1)
    })
    .unwrap();
    for n in 1..=APPS {
        let version = if n == 3 { 1 } else { 2 };
        assert_eq!(run(client, &id(n)), format!("{} version {version}", id(n)));
    }
    assert_eq!(mounts(client), APPS + 1);
    // And the kept releases still roll back after the restart, offline.
    ok_json(client, &["rollback", "--json", &id(4)]);
    assert_eq!(run(client, &id(4)), format!("{} version 1", id(4)));
    wait_mounts(client, APPS + 1);
}
