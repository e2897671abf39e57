//! Hostile documents for the malicious-release tests: a store index the
//! publisher's key signs but that the test wrote by hand.

use serde_json::Value;

use crate::pair::Pair;

impl Pair {
    /// The store index remote `main` currently publishes, as one schema 1
    /// JSON document (a sharded index is read whole): the publisher's
    /// node's own newest record, read fresh (`--nocache`: a cached resolve
    /// can name an index replaced since).
    pub fn current_index(&self) -> (String, Value) {
        let node = &self.publisher;
        let resolved = node
            .ipfs(
                1,
                &[
                    "name",
                    "resolve",
                    "--offline",
                    "--nocache",
                    &format!("/ipns/{}", self.ipns),
                ],
            )
            .unwrap();
        let cid = resolved.trim().trim_start_matches("/ipfs/").to_string();
        (cid.clone(), crate::index_layout::read_whole(node, 1, &cid))
    }

    /// Publishes a hand-made store index under remote `main`'s name: the
    /// current one changed by `edit`, as one schema 1 document (which
    /// clients still read), signed with the remote's key as the
    /// daemon would, and resolved by the client's node. Returns its CID.
    pub fn publish_handmade_index(&self, edit: impl FnOnce(&mut Value)) -> String {
        let (_, mut index) = self.current_index();
        edit(&mut index);
        let node = &self.publisher;
        let file = node.dir.join("handmade-index");
        std::fs::write(&file, serde_json::to_vec(&index).unwrap()).unwrap();
        let cid = node
            .ipfs(1, &["add", "-Q", "--cid-version=1", file.to_str().unwrap()])
            .unwrap()
            .trim()
            .to_string();
        self.publish_index_cid(cid)
    }

    /// Publishes `cid` under remote `main`'s name, signed with the remote's
    /// key as the daemon would, and waits until the client's node resolves
    /// it through routing. Returns `cid`.
    pub fn publish_index_cid(&self, cid: String) -> String {
        self.publisher
            .ipfs(
                1,
                &[
                    "name",
                    "publish",
                    "--key=flatipfs-remote-main",
                    "--allow-offline",
                    "--lifetime=48h",
                    "--ttl=1m",
                    &format!("/ipfs/{cid}"),
                ],
            )
            .unwrap();
        self.wait_until_client_resolves_index();
        cid
    }

    /// Like [`Pair::publish_handmade_index`], with the entry of `id` now
    /// naming release root `release` at a higher sequence: an update the
    /// client will see and try.
    pub fn offer_release(&self, id: &str, release: &str) -> String {
        self.publish_handmade_index(|index| {
            let sequence = index["sequence"].as_u64().unwrap() + 1;
            index["sequence"] = sequence.into();
            let entry = &mut index["apps"][id];
            let previous = serde_json::json!({
                "release": entry["release"].clone(),
                "sequence": entry["sequence"].clone(),
                "version": entry["version"].clone(),
                "published": entry["published"].clone(),
            });
            entry["release"] = release.into();
            entry["sequence"] = sequence.into();
            entry["version"] = format!("{sequence}").into();
            entry["history"] = serde_json::json!([previous]);
        })
    }
}
