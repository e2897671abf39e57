//! The store index's layouts as tests see them: a sharded index (a
//! directory of `index.json` and `shards/`, `docs/release-format.md`) read
//! back whole into the one schema 1 document the older tests edit, and the
//! pieces the index-layout attacks assemble by hand (a document added to
//! the publisher's node, a root directory published under remote `main`'s
//! name).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::pair::Pair;
use crate::stack::Stack;

fn cat_json(node: &Stack, number: usize, path: &str) -> Value {
    let text = node.ipfs(number, &["cat", path]).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Whether `cid` (on Kubo node `number` of `node`) is a sharded index: a
/// directory with an `index.json`.
pub fn is_sharded(node: &Stack, number: usize, cid: &str) -> bool {
    node.ipfs(
        number,
        &[
            "ls",
            "--resolve-type=false",
            "--size=false",
            &format!("/ipfs/{cid}"),
        ],
    )
    .unwrap()
    .lines()
    .any(|l| l.ends_with(" index.json"))
}

/// The root document and every shard (prefix → (CID, document)) of the
/// sharded index `cid`.
pub fn read_shards(
    node: &Stack,
    number: usize,
    cid: &str,
) -> (Value, BTreeMap<String, (String, Value)>) {
    let root = cat_json(node, number, &format!("/ipfs/{cid}/index.json"));
    let mut shards = BTreeMap::new();
    let mut todo: Vec<(String, String)> = root["shards"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(d, c)| (d.clone(), c.as_str().unwrap().to_string()))
        .collect();
    while let Some((prefix, cid)) = todo.pop() {
        let shard = cat_json(node, number, &format!("/ipfs/{cid}"));
        if let Some(children) = shard["shards"].as_object() {
            todo.extend(
                children
                    .iter()
                    .map(|(d, c)| (format!("{prefix}{d}"), c.as_str().unwrap().to_string())),
            );
        }
        shards.insert(prefix, (cid, shard));
    }
    (root, shards)
}

/// The index `cid` (on Kubo node `number` of `node`) as one schema 1
/// document, whatever its layout.
pub fn read_whole(node: &Stack, number: usize, cid: &str) -> Value {
    if !is_sharded(node, number, cid) {
        return cat_json(node, number, &format!("/ipfs/{cid}"));
    }
    let (root, shards) = read_shards(node, number, cid);
    let mut apps = Map::new();
    for (_, shard) in shards.values() {
        if let Some(listed) = shard["apps"].as_object() {
            apps.extend(listed.clone());
        }
    }
    let mut index = serde_json::json!({
        "schema": 1,
        "remote": root["remote"],
        "sequence": root["sequence"],
        "apps": apps,
    });
    for field in ["appstream", "peers"] {
        if let Some(value) = root.get(field) {
            index[field] = value.clone();
        }
    }
    index
}

/// Adds `bytes` to `node` as the daemon adds an index document (CIDv1,
/// raw leaves); returns its CID.
pub fn add_document(node: &Stack, name: &str, bytes: &[u8]) -> String {
    let file = node.dir.join(name);
    std::fs::write(&file, bytes).unwrap();
    node.ipfs(
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

impl Pair {
    /// The sharded index remote `main` currently publishes: its CID, root
    /// document and shards.
    pub fn current_shards(&self) -> (String, Value, BTreeMap<String, (String, Value)>) {
        let (cid, _) = self.current_index();
        assert!(is_sharded(&self.publisher, 1, &cid), "{cid} is not sharded");
        let (root, shards) = read_shards(&self.publisher, 1, &cid);
        (cid, root, shards)
    }

    /// Publishes under remote `main`'s name, signed with its key as the
    /// daemon would, an index directory whose `index.json` is `root` (the
    /// shards it names must be on the publisher's node already), and waits
    /// until the client's node resolves it. Returns its CID.
    pub fn publish_handmade_root(&self, root: &[u8]) -> String {
        let node = &self.publisher;
        let dir = node.dir.join("handmade-index-dir");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.json"), root).unwrap();
        let cid = node
            .ipfs(
                1,
                &[
                    "add",
                    "-Q",
                    "-r",
                    "--cid-version=1",
                    "--raw-leaves",
                    dir.to_str().unwrap(),
                ],
            )
            .unwrap()
            .trim()
            .to_string();
        self.publish_index_cid(cid)
    }
}
