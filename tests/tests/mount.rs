//! The release filesystem (what installed apps are served by) against real
//! Kubo nodes and a real FUSE mount: published on node 1, mounted from
//! node 2 with `flatipfsd mount-release`, so every byte travels.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use flatipfs_tests::ctl::{create_remote, publish_release};
use flatipfs_tests::fixtures::{self, deploy_dir, hello_ref};
use flatipfs_tests::stack::wait_for;
use flatipfs_tests::trees::{assert_same_tree, mounted_options};
use flatipfs_tests::users::{self, PLAIN_USER};
use flatipfs_tests::{paths, Stack, StackOptions, TestStack};

const LIMIT: Duration = Duration::from_secs(60);

/// Mounts `release` from node `node` on DIR/`name`; returns the mount point.
fn mount(stack: &Stack, node: usize, release: &str, name: &str, read_timeout: &str) -> PathBuf {
    let mountpoint = stack.dir.join(name);
    std::fs::create_dir_all(&mountpoint).unwrap();
    let mut command = Command::new(paths::binary("flatipfsd").unwrap());
    command
        .args([
            "mount-release",
            "--kubo-api",
            &stack.kubo_node(node).unwrap().api,
            "--read-timeout",
            read_timeout,
        ])
        .arg(release)
        .arg(&mountpoint);
    stack.start_process(name, command).unwrap();
    let mut mounted = || Ok(mounted_options(&mountpoint).is_some());
    wait_for("the release mount", LIMIT, &mut mounted).unwrap();
    mountpoint
}

#[test]
fn a_mounted_release_shows_exactly_the_published_tree_read_only() {
    let apps = fixtures::test_apps().unwrap();
    let reference = hello_ref(&apps).unwrap();
    let stack = TestStack::up(&StackOptions::default()).unwrap();
    users::ensure_test_users().unwrap();
    create_remote(&stack, "main");
    let release = publish_release(&stack, &apps.join("repo-v1"), &reference);
    let mounted = mount(&stack, 2, &release, "mnt", "30s");

    let scratch = tempfile::tempdir().unwrap();
    let original = deploy_dir(&apps.join("repo-v1"), &reference, scratch.path())
        .unwrap()
        .join("files");
    assert_same_tree(&original, &mounted);

    let options = mounted_options(&mounted).unwrap();
    for option in [
        "ro",
        "nosuid",
        "nodev",
        "allow_other",
        "default_permissions",
    ] {
        assert!(
            options.split(',').any(|o| o == option),
            "{option} missing from {options}"
        );
    }
    // Nothing can be written.
    for result in [
        std::fs::write(mounted.join("new-file"), b"x"),
        std::fs::write(mounted.join("bin/hello.sh"), b"x"),
        std::fs::create_dir(mounted.join("new-dir")),
        std::fs::remove_file(mounted.join("bin/hello.sh")),
    ] {
        let e = result.expect_err("a write into the mount succeeded");
        assert_eq!(e.raw_os_error(), Some(nix::libc::EROFS), "{e}");
    }
    // Other users read it too (allow_other), within the published modes.
    let mut cat = users::as_user(PLAIN_USER, "cat").unwrap();
    cat.arg(mounted.join("bin/hello.sh"));
    let out = users::output(&mut cat).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 1"));
    assert_eq!(
        std::fs::metadata(mounted.join("bin/hello.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    // Stopping the stack leaves nothing mounted.
    let dir = stack.dir.clone();
    drop(stack);
    assert!(
        mounted_options(&dir.join("mnt")).is_none(),
        "still mounted after down"
    );
}

#[test]
fn a_read_kubo_cannot_serve_fails_with_eio_in_bounded_time_and_works_once_the_node_is_back() {
    let apps = fixtures::test_apps().unwrap();
    let reference = hello_ref(&apps).unwrap();
    let stack = TestStack::up(&StackOptions::default()).unwrap();
    create_remote(&stack, "main");
    let release = publish_release(&stack, &apps.join("repo-v2"), &reference);
    // Node 2 mounts it (the manifest and the tree check's directory blocks
    // come from the publisher, no file content), then the publisher goes away.
    let mounted = mount(&stack, 2, &release, "mnt", "2s");
    stack.stop_kubo(1).unwrap();

    // Metadata needs no network: listing and stat work with the publisher gone.
    assert!(
        std::fs::read_dir(mounted.join("share/hello"))
            .unwrap()
            .count()
            >= 2
    );
    assert_eq!(
        std::fs::metadata(mounted.join("share/hello/data.txt"))
            .unwrap()
            .len(),
        300_000
    );
    // Tiny files are inlined in their CID: readable with no node at all.
    assert_eq!(
        std::fs::read_to_string(mounted.join("share/hello/NEWS")).unwrap(),
        "Version 2 adds this file.\n"
    );
    // Content that is nowhere to be had fails with EIO instead of hanging.
    let e = std::fs::read(mounted.join("share/hello/data.txt")).expect_err("read data no node has");
    assert_eq!(e.raw_os_error(), Some(nix::libc::EIO), "{e}");

    stack.start_kubo(1).unwrap();
    // Node 2 bootstraps from node 1: it reconnects by itself, and node 1
    // finds the blocks through routing.
    let mut readable = || Ok(std::fs::read(mounted.join("share/hello/data.txt")).is_ok());
    wait_for(
        "data.txt to become readable with the publisher back",
        LIMIT,
        &mut readable,
    )
    .unwrap();
    assert_eq!(
        std::fs::read(mounted.join("share/hello/data.txt")).unwrap(),
        vec![b'h'; 300_000]
    );
}
