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
    pair.carry_index();
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
