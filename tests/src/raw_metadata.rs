//! Releases carrying a `metadata` no publisher would publish (the
//! publisher parses it with the clients' strict parser and refuses what
//! they refuse): an honest release's `deploy/` with its `metadata` replaced
//! by raw bytes, assembled by hand on the publisher's Kubo node with a
//! manifest that describes it (so that only the metadata checks can
//! refuse it). Installed by release root (`/ipfs/<root>`).

use crate::pair::Pair;

/// A release root on the publisher's node: `release` with `deploy/metadata`
/// replaced by `metadata`, its manifest's `metadata` entry and `deploy`
/// field updated to match; pinned there.
pub fn release_with_metadata(pair: &Pair, release: &str, metadata: &[u8]) -> String {
    let node = &pair.publisher;
    let ipfs = |args: &[&str]| node.ipfs(1, args).unwrap().trim().to_string();
    let file = node.dir.join("raw-metadata");
    std::fs::write(&file, metadata).unwrap();
    let metadata_cid = ipfs(&["add", "-Q", "--cid-version=1", file.to_str().unwrap()]);
    let dir = format!("/raw-metadata-{metadata_cid}");
    let _ = node.ipfs(1, &["files", "rm", "-r", &dir]);
    ipfs(&["files", "mkdir", "-p", "--cid-version=1", &dir]);
    ipfs(&[
        "files",
        "cp",
        &format!("/ipfs/{release}/deploy"),
        &format!("{dir}/deploy"),
    ]);
    ipfs(&["files", "rm", &format!("{dir}/deploy/metadata")]);
    ipfs(&[
        "files",
        "cp",
        &format!("/ipfs/{metadata_cid}"),
        &format!("{dir}/deploy/metadata"),
    ]);
    let deploy_cid = ipfs(&["files", "stat", "--hash", &format!("{dir}/deploy")]);

    let text = ipfs(&["cat", &format!("/ipfs/{release}/manifest")]);
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["deploy"] = deploy_cid.into();
    let entry = manifest["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["path"] == "metadata")
        .expect("a release has a metadata entry");
    entry["cid"] = metadata_cid.clone().into();
    entry["size"] = metadata.len().into();
    // The honest release's encodings describe its own metadata: dropped.
    if let Some(fields) = manifest.as_object_mut() {
        fields.remove("encodings");
    }
    manifest["schema"] = 1.into();
    let manifest_file = node.dir.join("raw-metadata-manifest");
    std::fs::write(&manifest_file, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let manifest_cid = ipfs(&[
        "add",
        "-Q",
        "--cid-version=1",
        manifest_file.to_str().unwrap(),
    ]);
    ipfs(&[
        "files",
        "cp",
        &format!("/ipfs/{manifest_cid}"),
        &format!("{dir}/manifest"),
    ]);
    let root = ipfs(&["files", "stat", "--hash", &dir]);
    ipfs(&["pin", "add", &root]);
    root
}
