//! Desktop visibility: after install, update, rollback and uninstall the
//! daemon runs Flatpak's deploy triggers on its installation, so the
//! desktop database (MIME handlers), the icon cache and the application
//! list follow the app; its export links go with it.

use std::path::Path;
use std::time::SystemTime;

use flatipfs_tests::catalogs::{hello_deploy, publish_dir, publish_with_appstream, MIME_TYPE};
use flatipfs_tests::ctl::{ok_json, run_hello};
use flatipfs_tests::pair::Pair;

const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";

/// The desktop database's handlers of the test MIME type (what
/// `update-desktop-database` wrote into `mimeinfo.cache`).
fn handlers(exports: &Path) -> Option<String> {
    let cache = std::fs::read_to_string(exports.join("share/applications/mimeinfo.cache")).ok()?;
    cache
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{MIME_TYPE}=")))
        .map(str::to_string)
}

fn icon_cache_time(exports: &Path) -> Option<SystemTime> {
    std::fs::metadata(exports.join("share/icons/hicolor/icon-theme.cache"))
        .and_then(|m| m.modified())
        .ok()
}

#[test]
fn the_desktop_follows_install_update_rollback_and_uninstall() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    publish_with_appstream(&pair, "Hello World");
    let client = &pair.client;
    let exports = client.dir.join("state/installation/exports");
    let desktop = exports.join("share/applications/org.test.Hello.desktop");
    assert_eq!(handlers(&exports), None);

    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert!(desktop.exists(), "the desktop file is exported");
    assert_eq!(
        handlers(&exports).as_deref(),
        Some("org.test.Hello.desktop;")
    );
    let installed_icons = icon_cache_time(&exports).expect("the icon cache was built");
    assert!(exports
        .join("share/icons/hicolor/64x64/apps/org.test.Hello.png")
        .exists());

    // An update runs them again (the icon cache is rebuilt).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let dir = hello_deploy(&pair, "repo-v2", "Hello World", true);
    publish_dir(&pair, &dir, "2");
    ok_json(client, &["update", "--json", "org.test.Hello"]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
    let updated_icons = icon_cache_time(&exports).unwrap();
    assert!(
        updated_icons > installed_icons,
        "icon cache rebuilt on update"
    );
    assert_eq!(
        handlers(&exports).as_deref(),
        Some("org.test.Hello.desktop;")
    );

    // So does a rollback.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok_json(client, &["rollback", "--json", "org.test.Hello"]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    assert!(icon_cache_time(&exports).unwrap() > updated_icons);
    assert!(desktop.exists());

    // Uninstalled: gone from the application list and the MIME handlers,
    // and no export link of it is left.
    ok_json(client, &["uninstall", "--json", "org.test.Hello"]);
    assert!(!desktop.exists() && std::fs::symlink_metadata(&desktop).is_err());
    assert_eq!(handlers(&exports), None);
    let mut links = Vec::new();
    let mut dirs = vec![exports.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                dirs.push(e.path());
            } else if t.is_symlink() {
                links.push(e.path());
            }
        }
    }
    assert_eq!(
        links,
        Vec::<std::path::PathBuf>::new(),
        "stale export links"
    );
}
