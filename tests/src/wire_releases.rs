//! Releases for the wire tests (packs and deltas): the test app's deploy
//! directory with larger files added (text-like, so they compress and
//! diff), published as a deploy directory; and what a client's node moved
//! and recorded.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::ctl;
use crate::edited_releases::edited_deploy_dir;
use crate::pair::Pair;
use crate::Stack;

/// `lines` lines of a log-like text, edited at every `every`-th line by
/// `edition` (0: the original).
pub fn text(lines: usize, every: usize, edition: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..lines {
        let mark = if edition > 0 && i % every == 0 {
            format!("changed in edition {edition}")
        } else {
            String::new()
        };
        let hash = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        out.extend_from_slice(
            format!(
                "{i:08} symbol_{hash:06x} section .text offset {} {mark}\n",
                i * 64
            )
            .as_bytes(),
        );
    }
    out
}

/// The test app from `repo-v1` with `files` (path under `deploy/`,
/// content) added, in a directory below `into`.
pub fn app_with_files(pair: &Pair, into: &Path, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let app_ref = pair.app_ref.clone();
    let deploy = edited_deploy_dir(pair, "repo-v1", &app_ref, into, |t| t.to_string());
    for (path, data) in files {
        let path = deploy.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    }
    deploy
}

/// Publishes `dir` as `version` with `extra` flags; the `publish --json`
/// output. The index is carried to the client.
pub fn publish(pair: &Pair, dir: &Path, version: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "publish",
        "--json",
        "--remote",
        "main",
        "--version",
        version,
    ];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    let out = ctl::ok_json(&pair.publisher, &args);
    pair.wait_until_client_resolves_index();
    out
}

/// Bytes the stack's node 1 received over bitswap so far.
pub fn received(stack: &Stack) -> u64 {
    let text = stack.ipfs(1, &["stats", "bitswap", "--enc=json"]).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["DataReceived"].as_u64().unwrap()
}

/// What the client's daemon recorded of how `release` came
/// (`releases/<release>.wire.json`): delta, pack, plain, delta_files,
/// pack_files, refused.
pub fn wire_record(stack: &Stack, release: &str) -> Value {
    let path = stack
        .dir
        .join("state/releases")
        .join(format!("{release}.wire.json"));
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Err(_) => Value::Null,
    }
}

/// Size in bytes of `/ipfs/{release}/{path}` on the publisher.
pub fn size_on_publisher(pair: &Pair, release: &str, path: &str) -> u64 {
    pair.publisher
        .ipfs(1, &["cat", &format!("/ipfs/{release}/{path}")])
        .unwrap()
        .len() as u64
}

/// `data` as one zstd frame (the `zstd` command); from a pipe, the frame
/// does not declare its size.
pub fn zstd_frame(data: &[u8], declare_size: bool) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::write(&input, data).unwrap();
    if declare_size {
        let out = Command::new("zstd")
            .args(["-q", "-c", "-3"])
            .arg(&input)
            .output()
            .unwrap();
        assert!(out.status.success());
        return out.stdout;
    }
    let mut child = Command::new("zstd")
        .args(["-q", "-c", "-3", "--no-content-size", "--zstd=wlog=17"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Adds `data` on the publisher (pinned); its CID.
pub fn add_on_publisher(pair: &Pair, data: &[u8]) -> String {
    let file = pair.publisher.dir.join("wire-blob");
    std::fs::write(&file, data).unwrap();
    pair.publisher
        .ipfs(
            1,
            &[
                "add",
                "-Q",
                "--cid-version=1",
                "--raw-leaves",
                file.to_str().unwrap(),
            ],
        )
        .unwrap()
        .trim()
        .to_string()
}

/// The bytes of `/ipfs/{path}` on the publisher.
pub fn cat_on_publisher(pair: &Pair, path: &str) -> Vec<u8> {
    pair.publisher
        .ipfs_bytes(1, &["cat", &format!("/ipfs/{path}")])
        .unwrap()
}

/// The manifest of `release` on the publisher.
pub fn manifest_on_publisher(pair: &Pair, release: &str) -> Value {
    serde_json::from_slice(&cat_on_publisher(pair, &format!("{release}/manifest"))).unwrap()
}

/// The CID of file `path` in `manifest`.
pub fn file_cid(manifest: &Value, path: &str) -> String {
    manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in the manifest"))["cid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The encodings of a release taken away from the publisher (their pins
/// and blocks), so that a withheld block of the release cannot be routed
/// around through a pack or a delta; see [`Pair::withhold`].
#[derive(Default)]
pub struct WithheldEncodings {
    /// (pin CID, pin name) removed.
    pins: Vec<(String, String)>,
    /// (block CID, bytes) removed.
    blocks: Vec<(String, Vec<u8>)>,
}

/// Takes the encodings of `release` away from the publisher.
pub fn withhold_encodings(pair: &Pair, release: &str) -> WithheldEncodings {
    let node = &pair.publisher;
    let manifest = manifest_on_publisher(pair, release);
    let encodings = &manifest["encodings"];
    if encodings.is_null() {
        return WithheldEncodings::default();
    }
    let mut blobs: Vec<String> = Vec::new();
    for list in ["pack", "deltas"] {
        for e in encodings[list].as_array().into_iter().flatten() {
            blobs.push(e["cid"].as_str().unwrap().to_string());
        }
    }
    let mut pins = Vec::new();
    let listed = node
        .ipfs(1, &["pin", "ls", "--type=recursive", "--names"])
        .unwrap();
    let wanted = format!(
        "{}@{} encodings",
        manifest["id"].as_str().unwrap(),
        manifest["version"].as_str().unwrap()
    );
    for line in listed.lines() {
        let mut parts = line.splitn(3, ' ');
        let (cid, _, name) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        if name.ends_with(&wanted) {
            let cid = cid.unwrap().to_string();
            node.ipfs(1, &["pin", "rm", &cid]).unwrap();
            pins.push((cid, name.to_string()));
        }
    }
    let mut blocks = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for blob in blobs {
        let refs = node.ipfs(1, &["refs", "-r", "--unique", &blob]).unwrap();
        for block in std::iter::once(blob.as_str()).chain(refs.lines().map(str::trim)) {
            if block.is_empty() || !seen.insert(block.to_string()) {
                continue;
            }
            let data = node.ipfs_bytes(1, &["block", "get", block]).unwrap();
            let _ = node.ipfs(1, &["block", "rm", block]);
            blocks.push((block.to_string(), data));
        }
    }
    WithheldEncodings { pins, blocks }
}

/// Puts withheld encodings back on the publisher.
pub fn give_back_encodings(pair: &Pair, withheld: &WithheldEncodings) {
    let node = &pair.publisher;
    let file = node.dir.join("withheld-encoding-block");
    for (cid, data) in &withheld.blocks {
        std::fs::write(&file, data).unwrap();
        let codec = if cid.starts_with("bafk") {
            "raw"
        } else {
            "dag-pb"
        };
        node.ipfs(
            1,
            &["block", "put", "--cid-codec", codec, file.to_str().unwrap()],
        )
        .unwrap();
    }
    for (cid, name) in &withheld.pins {
        node.ipfs(1, &["pin", "add", "--name", name, cid]).unwrap();
    }
}
