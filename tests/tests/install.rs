//! Installing through the daemon across two Kubo nodes: published by one
//! stack, installed by another stack's flatipfsd, so every block travels.
//! The app runs with the real `flatpak` for root and for a user, the mount
//! shows exactly the published tree read-only, and uninstall leaves nothing
//! mounted, nothing pinned and nothing in MFS.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flatipfs_tests::ctl::{flatipfsctl, ok_json};
use flatipfs_tests::fixtures::deploy_dir;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::{run_ok, wait_for};
use flatipfs_tests::trees::{assert_same_tree, mounted_options};
use flatipfs_tests::users::{self, PLAIN_USER};
use flatipfs_tests::{paths, Stack};

const LIMIT: Duration = Duration::from_secs(90);

/// `flatpak ARGS` as root against the stack's installations.
fn flatpak(stack: &Stack, args: &[&str]) -> Command {
    let mut command = Command::new(paths::system_program("/usr/bin/flatpak", "flatpak").unwrap());
    command
        .env("FLATPAK_CONFIG_DIR", stack.flatpak_config_dir())
        .args(args);
    command
}

/// Mount points below the stack's installation.
fn mounts_below(dir: &Path) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(String::from)
        .collect()
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
    let out = run_ok(&mut flatpak(client, &["run", "org.test.Hello"])).unwrap();
    assert_eq!(out.trim(), "Hello from org.test.Hello version 1");
    let home = client.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let user = nix::unistd::User::from_name(PLAIN_USER).unwrap().unwrap();
    nix::unistd::chown(&home, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut as_user = users::as_user(PLAIN_USER, "/usr/bin/flatpak").unwrap();
    as_user
        .env("FLATPAK_CONFIG_DIR", client.flatpak_config_dir())
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", &home)
        .args(["run", "org.test.Hello"]);
    let out = users::output(&mut as_user).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
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
