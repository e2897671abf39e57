//! The committed fuzz seeds (`fuzz/corpus/`) mean what their names say: a
//! `valid` seed passes validation (so the fuzzer starts from documents that
//! reach every check), every other seed is refused.

use std::path::Path;

use flatipfs_format::index::{IndexLimits, StoreIndex};
use flatipfs_format::release::{Manifest, ManifestLimits};

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 2, "{target}: too few seeds");
    seeds
}

#[test]
fn manifest_seeds() {
    for (name, data) in seeds("manifest") {
        let manifest: Manifest = serde_json::from_slice(&data).unwrap();
        let verdict = manifest.validate(ManifestLimits::default());
        assert_eq!(
            verdict.is_ok(),
            name.starts_with("valid"),
            "{name}: {verdict:?}"
        );
    }
}

#[test]
fn index_seeds() {
    for (name, data) in seeds("index") {
        let index: StoreIndex = serde_json::from_slice(&data).unwrap();
        let verdict = index.validate(IndexLimits::default());
        assert_eq!(
            verdict.is_ok(),
            name.starts_with("valid"),
            "{name}: {verdict:?}"
        );
    }
}

#[test]
fn exports_seeds() {
    use flatipfs_format::exports::{classify, rewrite, ExportContext};
    // The context of fuzz/fuzz_targets/exports.rs.
    let owned = vec![
        "org.mpris.MediaPlayer2.hello.*".to_string(),
        "org.freedesktop.Notifications".to_string(),
    ];
    let ctx = ExportContext {
        app_id: "org.test.Hello",
        arch: "x86_64",
        branch: "master",
        own_names: &owned,
    };
    for (name, data) in seeds("exports") {
        let i = data.iter().position(|&b| b == b'\n').unwrap();
        let path = std::str::from_utf8(&data[..i]).unwrap();
        let verdict =
            classify(&ctx, path, 0o644).and_then(|kind| rewrite(&ctx, path, kind, &data[i + 1..]));
        assert_eq!(
            verdict.is_ok(),
            name.starts_with("valid"),
            "{name}: {verdict:?}"
        );
    }
}

#[test]
fn metadata_seeds() {
    for (name, data) in seeds("metadata") {
        let verdict = flatipfs_format::metadata::parse(&data);
        assert_eq!(
            verdict.is_ok(),
            name.starts_with("valid"),
            "{name}: {verdict:?}"
        );
    }
}
