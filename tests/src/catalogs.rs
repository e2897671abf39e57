//! Apps with AppStream data, and catalogs, for the catalog and software
//! centre tests: the fixture app deployed from its repository with a
//! metainfo file and 64/128 px PNG icons added, published from that deploy
//! directory; hand-made catalogs named by a hand-made store index.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::ctl::{self, ok_json};
use crate::fixtures;
use crate::pair::Pair;
use crate::Stack;

/// The colour of the test icons (RGBA), so a screenshot can be checked.
pub const ICON_COLOUR: [u8; 4] = [0xe0, 0x40, 0x10, 0xff];

/// The MIME type the AppStream test app's desktop file claims.
pub const MIME_TYPE: &str = "application/x-flatipfs-test";

/// A deploy directory of `org.test.Hello` from fixture repository `repo`
/// with AppStream data naming it `name` and PNG icons; without
/// `with_appstream`, only the desktop file is there.
pub fn hello_deploy(pair: &Pair, repo: &str, name: &str, with_appstream: bool) -> PathBuf {
    let scratch = pair
        .publisher
        .dir
        .join(format!("appstream-{repo}-{}", fastrand_suffix()));
    let dir = fixtures::deploy_dir(&pair.apps.join(repo), &pair.app_ref, &scratch).unwrap();
    if with_appstream {
        let metainfo = dir.join("files/share/metainfo/org.test.Hello.metainfo.xml");
        std::fs::create_dir_all(metainfo.parent().unwrap()).unwrap();
        std::fs::write(
            &metainfo,
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<component type="desktop-application">
  <id>org.test.Hello</id>
  <metadata_license>CC0-1.0</metadata_license>
  <project_license>MIT</project_license>
  <name>{name}</name>
  <summary>Greets you from IPFS</summary>
  <description><p>A small test app installed through flatipfs.</p></description>
  <launchable type="desktop-id">org.test.Hello.desktop</launchable>
</component>
"#
            ),
        )
        .unwrap();
        // A MIME type, so that the desktop database shows the app.
        for base in ["export", "files"] {
            let desktop = dir.join(format!("{base}/share/applications/org.test.Hello.desktop"));
            let mut text = std::fs::read_to_string(&desktop).unwrap();
            assert!(!text.contains("\n[Desktop Action"), "{text}");
            text.push_str(&format!("MimeType={MIME_TYPE};\n"));
            std::fs::write(&desktop, text).unwrap();
        }
        for size in [64u32, 128] {
            let png = flatipfs_format::appstream::solid_icon(size, ICON_COLOUR);
            for base in ["export/share/icons", "files/share/icons"] {
                let icon = dir.join(format!(
                    "{base}/hicolor/{size}x{size}/apps/org.test.Hello.png"
                ));
                std::fs::create_dir_all(icon.parent().unwrap()).unwrap();
                std::fs::write(&icon, &png).unwrap();
            }
        }
    }
    dir
}

fn fastrand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:x}")
}

/// Publishes deploy directory `dir` to remote `main` as `version` and
/// tells the client; the publish result's JSON (warnings included).
pub fn publish_dir(pair: &Pair, dir: &Path, version: &str) -> Value {
    let out = ok_json(
        &pair.publisher,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            "--version",
            version,
            dir.to_str().unwrap(),
        ],
    );
    pair.wait_until_client_resolves_index();
    out
}

/// Publishes the runtime from `repo-v1` and the app with AppStream data
/// named `name` as version 1.
pub fn publish_with_appstream(pair: &Pair, name: &str) -> Value {
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let dir = hello_deploy(pair, "repo-v1", name, true);
    publish_dir(pair, &dir, "1")
}

/// Asks the client's daemon to refresh (`update --check`).
pub fn refresh(stack: &Stack) {
    ok_json(stack, &["update", "--check", "--json"]);
}

/// `flatipfsctl remote ls main --json` as root: the apps.
pub fn offered(stack: &Stack) -> Vec<Value> {
    ok_json(stack, &["remote", "ls", "main", "--json"])["apps"]
        .as_array()
        .unwrap()
        .clone()
}

/// Adds directory tree `files` (relative path → bytes) to the publisher's
/// node; its CID.
pub fn add_tree(pair: &Pair, files: &[(&str, Vec<u8>)]) -> String {
    let root = pair
        .publisher
        .dir
        .join(format!("tree-{}", fastrand_suffix()));
    for (path, data) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, data).unwrap();
    }
    pair.publisher
        .ipfs(
            1,
            &["add", "-r", "-Q", "--cid-version=1", root.to_str().unwrap()],
        )
        .unwrap()
        .trim()
        .to_string()
}

/// Publishes a store index like the current one naming catalog `cid`.
pub fn offer_catalog(pair: &Pair, cid: &str) {
    pair.publish_handmade_index(|index| {
        let sequence = index["sequence"].as_u64().unwrap() + 1;
        index["sequence"] = sequence.into();
        index["appstream"] = cid.into();
    });
}

/// `flatipfsctl ARGS` against `stack` as `user`; its JSON (must succeed).
pub fn ok_json_as(stack: &Stack, user: &str, args: &[&str]) -> Value {
    let out = ctl::flatipfsctl(stack, Some(user), args);
    assert!(
        out.status.success(),
        "flatipfsctl {args:?} as {user}: {out:?}"
    );
    ctl::last_json(&out)
}

/// `GetIcon` (remote `main`) as root on `stack`'s bus: the PNG, or the
/// D-Bus error as text.
pub fn get_icon(stack: &Stack, id: &str, size: u32) -> Result<Vec<u8>, String> {
    let connection = zbus::blocking::connection::Builder::address(stack.bus_address.as_str())
        .unwrap()
        .build()
        .unwrap();
    connection
        .call_method(
            Some("org.flatipfs.Manager1"),
            "/org/flatipfs/Manager1",
            Some("org.flatipfs.Manager1"),
            "GetIcon",
            &("main", id, size),
        )
        .map_err(|e| e.to_string())
        .map(|reply| reply.body().deserialize::<Vec<u8>>().unwrap())
}

/// Refreshes (`update --check`); the catalog errors it reports.
pub fn refresh_errors(stack: &Stack) -> Vec<String> {
    ok_json(stack, &["update", "--check", "--json"])["catalog_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}
