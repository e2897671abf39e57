//! AppStream in releases and the store index, and browsing through the
//! daemon: a publisher's app with metainfo and icons, its catalog fetched
//! by the client's daemon on refresh, listed and searched by an
//! unprivileged user, its icon served re-encoded; an app without AppStream
//! data gets a minimal entry and its publisher a warning.

use flatipfs_tests::catalogs::{
    get_icon, hello_deploy, offered, ok_json_as, publish_dir, publish_with_appstream, refresh,
};
use flatipfs_tests::ctl::{flatipfsctl, ok_json, run_hello};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::users::{ensure_test_users, PLAIN_USER};
use serde_json::Value;

const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";

fn hello(apps: &[Value]) -> &Value {
    apps.iter()
        .find(|a| a["id"] == "org.test.Hello")
        .unwrap_or_else(|| panic!("org.test.Hello not offered: {apps:?}"))
}

#[test]
fn a_published_catalog_is_browsed_searched_and_follows_new_releases() {
    ensure_test_users().unwrap();
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    let published = publish_with_appstream(&pair, "Hello World");
    assert_eq!(published["warnings"], serde_json::json!([]), "{published}");

    // The release carries the component and both icons; the index names a
    // catalog holding the app (and not the runtime).
    let release = published["release"].as_str().unwrap();
    let node = &pair.publisher;
    let component = node
        .ipfs(
            1,
            &["cat", &format!("/ipfs/{release}/appstream/component.xml")],
        )
        .unwrap();
    assert!(
        component.contains("<name>Hello World</name>"),
        "{component}"
    );
    for size in [64, 128] {
        let icon = node
            .ipfs_bytes(
                1,
                &[
                    "cat",
                    &format!("/ipfs/{release}/appstream/icons/{size}x{size}/org.test.Hello.png"),
                ],
            )
            .unwrap();
        assert!(flatipfs_format::appstream::sanitize_icon(&icon, size).is_ok());
    }
    let (_, index) = pair.current_index();
    let catalog_cid = index["appstream"]
        .as_str()
        .expect("the index names a catalog");
    let catalog = node
        .ipfs(1, &["cat", &format!("/ipfs/{catalog_cid}/catalog.xml")])
        .unwrap();
    assert!(catalog.contains("<id>org.test.Hello</id>"), "{catalog}");
    assert!(!catalog.contains("org.test.Platform"), "{catalog}");

    // Before a refresh the client knows nothing of it.
    let before = flatipfsctl(&pair.client, None, &["remote", "ls", "main", "--json"]);
    assert!(!before.status.success());
    refresh(&pair.client);

    // An unprivileged user lists and searches.
    let listed = ok_json_as(
        &pair.client,
        PLAIN_USER,
        &["remote", "ls", "main", "--json"],
    );
    let apps = listed["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "{listed}");
    let app = hello(apps);
    assert_eq!(app["name"], "Hello World");
    assert_eq!(app["summary"], "Greets you from IPFS");
    assert_eq!(app["version"], "1");
    assert_eq!(app["installed"], false);
    assert!(app["download_size"].as_u64().unwrap() > 300_000, "{app}");
    let found = ok_json_as(&pair.client, PLAIN_USER, &["search", "world", "--json"]);
    assert_eq!(found["apps"].as_array().unwrap().len(), 1, "{found}");
    let none = ok_json_as(
        &pair.client,
        PLAIN_USER,
        &["search", "nothing-like-it", "--json"],
    );
    assert_eq!(none["apps"], serde_json::json!([]));
    let text = flatipfsctl(&pair.client, Some(PLAIN_USER), &["search", "hello"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("Hello World: Greets you from IPFS"),
        "{text:?}"
    );

    // Icons are served, decoded and re-encoded, at the sizes offered.
    let icon = get_icon(&pair.client, "org.test.Hello", 64).unwrap();
    assert!(flatipfs_format::appstream::sanitize_icon(&icon, 64).is_ok());
    let missing = get_icon(&pair.client, "org.test.Hello", 32).unwrap_err();
    assert!(missing.contains("NotFound"), "{missing}");
    let traversal = get_icon(&pair.client, "../../etc/passwd", 64).unwrap_err();
    assert!(traversal.contains("NotFound"), "{traversal}");

    // Installed: the listing says so.
    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert_eq!(
        run_hello(&pair.client),
        "Hello from org.test.Hello version 1"
    );
    let app = offered(&pair.client);
    assert_eq!(hello(&app)["installed"], true);
    assert_eq!(hello(&app)["installed_version"], "1");

    // A new publication rebuilds the catalog; a refresh brings it.
    let dir = hello_deploy(&pair, "repo-v2", "Hello Again", true);
    publish_dir(&pair, &dir, "2");
    refresh(&pair.client);
    let apps = offered(&pair.client);
    let app = hello(&apps);
    assert_eq!(app["name"], "Hello Again");
    assert_eq!(app["version"], "2");
    assert_eq!(app["installed_version"], "1");
    let found = ok_json(&pair.client, &["search", "again", "--json"]);
    assert_eq!(found["apps"].as_array().unwrap().len(), 1, "{found}");
}

#[test]
fn an_app_without_appstream_gets_a_minimal_entry_and_its_publisher_a_warning() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let dir = hello_deploy(&pair, "repo-v1", "unused", false);
    let published = publish_dir(&pair, &dir, "1");
    let warnings = published["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("no AppStream data")),
        "{published}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("no 64x64 PNG icon")),
        "{published}"
    );
    refresh(&pair.client);
    let apps = offered(&pair.client);
    let app = hello(&apps);
    // From the desktop file's Name (and no Comment: the name again).
    assert_eq!(app["name"], "Hello");
    assert_eq!(app["summary"], "Hello");
    assert!(get_icon(&pair.client, "org.test.Hello", 64).is_err());
}

#[test]
fn the_scheduler_s_checks_fetch_the_catalog_too() {
    let pair = Pair::up("\n[updates]\npolicy = \"check\"\ninterval = \"2s\"\njitter = \"1s\"\n");
    publish_with_appstream(&pair, "Hello World");
    // No Refresh asked for: the automatic checks bring the catalog.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let out = flatipfsctl(&pair.client, None, &["remote", "ls", "main", "--json"]);
        if out.status.success() {
            let apps = flatipfs_tests::ctl::last_json(&out)["apps"].clone();
            if apps.as_array().is_some_and(|a| !a.is_empty()) {
                assert_eq!(apps[0]["name"], "Hello World", "{apps}");
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no catalog after 90 s of automatic checks: {out:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
