//! Malicious-release suite, catalogs (issue 12): hand-made store indexes
//! naming hand-made AppStream catalogs that try what a hostile publisher
//! could — a catalog too large to hold, entity expansion, too many nodes,
//! apps of other publishers or runtimes, duplicates, escape sequences and
//! over-long text, ids and icon names that climb out of the cache, bad
//! icons. Each catalog is refused with the reason named in the refresh's
//! `catalog_errors` (or, for an icon, the icon alone is dropped); the
//! catalog cached before stays listed, nothing is written outside the
//! remote's cache directory, and the installed app stays runnable.

use std::path::Path;

use flatipfs_format::appstream::{solid_icon, MAX_CATALOG_BYTES};
use flatipfs_tests::catalogs::{
    add_tree, get_icon, offer_catalog, offered, publish_with_appstream, refresh_errors,
};
use flatipfs_tests::ctl::{ok_json, run_hello};
use flatipfs_tests::pair::Pair;

/// A catalog directory's files: path → bytes.
type Files = Vec<(&'static str, Vec<u8>)>;

const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";

fn component(id: &str, name: &str, extra: &str) -> String {
    format!("<component type=\"desktop-application\"><id>{id}</id><name>{name}</name><summary>Evil</summary>{extra}</component>")
}

fn catalog(components: &str) -> Vec<u8> {
    format!("<?xml version=\"1.0\"?>\n<components version=\"0.14\" origin=\"main\">{components}</components>")
        .into_bytes()
}

/// Every file below `dir`, relative.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_catalogs_are_refused_and_the_cached_catalog_stays() {
    let pair = Pair::up(NO_AUTOMATIC_UPDATES);
    publish_with_appstream(&pair, "Hello World");
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(refresh_errors(client), Vec::<String>::new());
    let good = offered(client);
    assert_eq!(good[0]["name"], "Hello World");
    let cache = client.dir.join("state/catalogs");
    let cached_files = files_below(&cache);
    assert_eq!(
        cached_files,
        [
            "main/catalog.json",
            "main/icons/128x128/org.test.Hello.png",
            "main/icons/64x64/org.test.Hello.png"
        ]
    );

    let hello = |name: &str, extra: &str| component("org.test.Hello", name, extra);
    let mut oversized = catalog(&hello("Big", ""));
    oversized.resize(MAX_CATALOG_BYTES as usize + 1, b' ');
    let attacks: Vec<(&str, Files, String)> = vec![
        (
            "larger than the limit",
            vec![("catalog.xml", oversized)],
            format!("over the limit of {MAX_CATALOG_BYTES}"),
        ),
        (
            "entity expansion",
            vec![(
                "catalog.xml",
                b"<?xml version=\"1.0\"?><!DOCTYPE c [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><components><component><id>org.test.Hello</id><name>&b;</name><summary>s</summary></component></components>".to_vec(),
            )],
            "not well-formed XML".into(),
        ),
        (
            "too many nodes",
            vec![("catalog.xml", catalog(&hello("Nodes", &"<x/>".repeat(250_000))))],
            "not well-formed XML".into(),
        ),
        (
            "an app of another publisher",
            vec![("catalog.xml", catalog(&(hello("Hello", "") + &component("org.evil.App", "Bank", ""))))],
            "org.evil.App is not an app of the store index".into(),
        ),
        (
            "a runtime dressed as an app",
            vec![("catalog.xml", catalog(&component("org.test.Platform", "Platform", "")))],
            "org.test.Platform is not an app of the store index".into(),
        ),
        (
            "the same app twice",
            vec![("catalog.xml", catalog(&(hello("One", "") + &hello("Two", ""))))],
            "org.test.Hello appears twice".into(),
        ),
        (
            "a C0 escape as a character reference",
            vec![(
                "catalog.xml",
                catalog(&hello("Hello&#x1b;]0;pwned&#x7;", "")),
            )],
            "not well-formed XML".into(),
        ),
        (
            "a terminal escape in the name (C1 CSI; XML refuses C0 itself)",
            vec![(
                "catalog.xml",
                catalog(&hello("Hello\u{9b}2J\u{9b}31m", "")),
            )],
            "name holds control characters".into(),
        ),
        (
            "a bidirectional override in the name",
            vec![("catalog.xml", catalog(&hello("Hello\u{202e}dlroW", "")))],
            "name holds bidirectional overrides".into(),
        ),
        (
            "an over-long name",
            vec![("catalog.xml", catalog(&hello(&"H".repeat(129), "")))],
            "over the limit of 128".into(),
        ),
        (
            "an id climbing out of the cache",
            vec![("catalog.xml", catalog(&component("../../../etc/passwd", "x", "")))],
            "without a valid <id>".into(),
        ),
        (
            "an icon naming another file",
            vec![(
                "catalog.xml",
                catalog(&hello("Icon", "<icon type=\"cached\" width=\"64\" height=\"64\">../../../../etc/shadow</icon>")),
            )],
            "icon names another file".into(),
        ),
        (
            "an icon size nobody asked for",
            vec![(
                "catalog.xml",
                catalog(&hello("Icon", "<icon type=\"cached\" width=\"65536\" height=\"65536\">org.test.Hello.png</icon>")),
            )],
            "icon size 65536 not expected".into(),
        ),
        (
            "not UTF-8",
            vec![("catalog.xml", b"<components>\xff\xfe</components>".to_vec())],
            "not well-formed XML: not UTF-8".into(),
        ),
        (
            "no catalog.xml in the catalog",
            vec![("other.xml", catalog(&hello("Gone", "")))],
            "cannot be fetched".into(),
        ),
    ];
    for (attack, files, reason) in attacks {
        let cid = add_tree(&pair, &files);
        offer_catalog(&pair, &cid);
        let errors = refresh_errors(client);
        assert!(
            errors.len() == 1
                && errors[0].contains(&reason)
                && errors[0].contains("the cached catalog stays"),
            "{attack}: expected {reason:?}, got {errors:?}"
        );
        assert_eq!(offered(client)[0]["name"], "Hello World", "{attack}");
        assert_eq!(files_below(&cache), cached_files, "{attack}");
        assert_eq!(
            run_hello(client),
            "Hello from org.test.Hello version 1",
            "{attack}"
        );
    }

    // Bad icons: the catalog is taken, each bad icon alone is dropped.
    let mut huge = solid_icon(64, [0; 4]);
    huge[16..20].copy_from_slice(&60000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let icons = "<icon type=\"cached\" width=\"64\" height=\"64\">org.test.Hello.png</icon><icon type=\"cached\" width=\"128\" height=\"128\">org.test.Hello.png</icon>";
    for (attack, icon64, icon128) in [
        (
            "not PNGs",
            b"<svg onload=\"alert(1)\"/>".to_vec(),
            b"GIF89a".to_vec(),
        ),
        (
            "a header claiming 60000 px, and the wrong size",
            huge,
            solid_icon(64, [0; 4]),
        ),
        (
            "larger than the limit",
            vec![0u8; 2 << 20],
            vec![0u8; 2 << 20],
        ),
    ] {
        let cid = add_tree(
            &pair,
            &[
                ("catalog.xml", catalog(&hello("Bad Icons", icons))),
                ("icons/64x64/org.test.Hello.png", icon64),
                ("icons/128x128/org.test.Hello.png", icon128),
            ],
        );
        offer_catalog(&pair, &cid);
        assert_eq!(refresh_errors(client), Vec::<String>::new(), "{attack}");
        assert_eq!(offered(client)[0]["name"], "Bad Icons", "{attack}");
        for size in [64, 128] {
            let refused = get_icon(client, "org.test.Hello", size).unwrap_err();
            assert!(refused.contains("NotFound"), "{attack}: {refused}");
        }
        assert_eq!(files_below(&cache), ["main/catalog.json"], "{attack}");
        assert_eq!(
            run_hello(client),
            "Hello from org.test.Hello version 1",
            "{attack}"
        );
    }
}
