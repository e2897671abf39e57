//! The Flatpak integration points against the real `flatpak` binary: a
//! release published on node 1, laid out as a deploy in a flatipfs-owned
//! installation and served over FUSE from node 2, is listed, described and
//! run by `flatpak`, for root and for an unprivileged user.

use std::process::Command;
use std::time::Duration;

use flatipfs_tests::ctl::{create_remote, publish_release, run_hello_as_user};
use flatipfs_tests::fixtures::{self, hello_ref};
use flatipfs_tests::stack::{run_ok, wait_for};
use flatipfs_tests::users;
use flatipfs_tests::{paths, StackOptions, TestStack};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_release_served_from_ipfs_runs_with_flatpak_for_root_and_users() {
    let apps = fixtures::test_apps().unwrap();
    let app_ref = hello_ref(&apps).unwrap();
    let runtime_ref = app_ref.replace("app/org.test.Hello", "runtime/org.test.Platform");
    let stack = TestStack::up(&StackOptions::default()).unwrap();
    users::ensure_test_users().unwrap();
    create_remote(&stack, "main");
    let runtime = publish_release(&stack, &apps.join("repo-v1"), &runtime_ref);
    let app = publish_release(&stack, &apps.join("repo-v1"), &app_ref);

    let config = stack.flatpak_config_dir();
    let installation = stack.dir.join("installation");
    std::fs::create_dir_all(&config).unwrap();
    for (name, release) in [("runtime", &runtime), ("app", &app)] {
        let mut command = Command::new(paths::binary("flatipfsd").unwrap());
        command
            .args([
                "mount-release",
                "--kubo-api",
                &stack.kubo[1].api,
                "--installation",
            ])
            .arg(&installation)
            .arg("--flatpak-config-dir")
            .arg(&config)
            .arg(release);
        stack
            .start_process(&format!("serve-{name}"), command)
            .unwrap();
    }
    // A ref's directory in an installation is the ref itself.
    let active = installation
        .join(&app_ref)
        .join("active/files/bin/hello.sh");
    let runtime_active = installation
        .join(&runtime_ref)
        .join("active/files/bin/bash");
    let mut ready = || Ok(active.exists() && runtime_active.exists());
    wait_for("both releases active and mounted", LIMIT, &mut ready).unwrap();

    let flatpak = |args: &[&str]| {
        let mut command =
            Command::new(paths::system_program("/usr/bin/flatpak", "flatpak").unwrap());
        command.env("FLATPAK_CONFIG_DIR", &config).args(args);
        command
    };
    let list = run_ok(&mut flatpak(&[
        "list",
        "--columns=application,installation",
    ]))
    .unwrap();
    assert!(
        list.contains("org.test.Hello") && list.contains("flatipfs"),
        "{list}"
    );
    let info = run_ok(&mut flatpak(&["info", "org.test.Hello"])).unwrap();
    assert!(info.contains("Origin: flatipfs"), "{info}");
    assert!(info.contains("Runtime: org.test.Platform/"), "{info}");
    let run = run_ok(&mut flatpak(&["run", "org.test.Hello"])).unwrap();
    assert_eq!(run.trim(), "Hello from org.test.Hello version 1");

    // An unprivileged user with a home of its own runs it too.
    assert_eq!(
        run_hello_as_user(&stack),
        "Hello from org.test.Hello version 1"
    );

    // `flatpak update` leaves the deploy alone: its origin remote is disabled.
    let update = run_ok(&mut flatpak(&["update", "-y", "--noninteractive"])).unwrap();
    assert!(update.contains("Nothing to do"), "{update}");
}
