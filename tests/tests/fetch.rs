//! The background fetch across two Kubo nodes at the scale of a real app:
//! a release of thousands of small files is fetched completely and every
//! file reads back with the published bytes. (A fetch interrupted by the
//! publisher's node stopping and resuming when it is back is covered in
//! install.rs, `a_degraded_app_runs_…_resumes_when_the_publisher_is_back`.)

use std::path::Path;
use std::time::Duration;

use flatipfs_tests::ctl::{flatipfsctl, ok_json, run_hello};
use flatipfs_tests::fixtures::deploy_dir;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::wait_for;
use flatipfs_tests::trees::assert_same_tree;
use flatipfs_tests::users;

const LIMIT: Duration = Duration::from_secs(300);
const SMALL_FILES: usize = 2_000;

/// Writes `count` files of 1–8 KiB of distinct bytes below `dir`, 100 to a
/// directory.
fn write_small_files(dir: &Path, count: usize) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // xorshift64: deterministic, distinct content for every file.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..count {
        let sub = dir.join(format!("d{:03}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        let len = 1024 + (next() % 7169) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        std::fs::write(sub.join(format!("f{i:05}")), bytes).unwrap();
    }
}

#[test]
fn a_release_of_thousands_of_small_files_is_fetched_completely() {
    let pair = Pair::up("");
    users::ensure_test_users().unwrap();
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let scratch = tempfile::tempdir().unwrap();
    let original = deploy_dir(&pair.apps.join("repo-v1"), &pair.app_ref, scratch.path()).unwrap();
    write_small_files(&original.join("files/many"), SMALL_FILES);
    let published = ok_json(
        &pair.publisher,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            original.to_str().unwrap(),
        ],
    );
    assert!(published["release"].is_string(), "{published}");
    pair.wait_until_client_resolves_index();

    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let installed = ok_json(
        client,
        &["install", "--no-wait", "--json", "main", "org.test.Hello"],
    );
    let mut complete = || {
        let out = flatipfsctl(client, None, &["info", "--json", "org.test.Hello"]);
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(info["state"] == "installed")
    };
    wait_for("the whole release to be fetched", LIMIT, &mut complete).unwrap();

    // Every block is on the client's node: the release root is pinned
    // there, and the publisher can go away without any read failing.
    let info = ok_json(client, &["info", "--json", "org.test.Hello"]);
    assert_eq!(info["fetched_bytes"], info["total_bytes"], "{info}");
    pair.stop_publisher_node();
    let mount_point = Path::new(installed["mount_point"].as_str().unwrap()).to_owned();
    assert_same_tree(&original.join("files"), &mount_point);
    let many = std::fs::read_dir(mount_point.join("many"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum::<usize>();
    assert_eq!(many, SMALL_FILES);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}
