//! Hand-made store indexes: the publisher's current index, edited, signed
//! with the remote's key on the publisher's node and carried to the
//! client, as a publisher that builds its documents by hand would.

use serde_json::Value;

use crate::pair::Pair;

/// Publishes the publisher's current store index of remote `main` with
/// `edit` applied (the IPNS record's sequence grows by one), and carries
/// it to the client's node.
pub fn publish_edited_index(pair: &Pair, edit: impl FnOnce(&mut Value)) {
    let node = &pair.publisher;
    let resolved = node
        .ipfs(1, &["name", "resolve", "--offline", &pair.ipns])
        .unwrap();
    let text = node.ipfs(1, &["cat", resolved.trim()]).unwrap();
    let mut index: Value = serde_json::from_str(&text).unwrap();
    edit(&mut index);
    let file = node.dir.join("handmade-index");
    std::fs::write(&file, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    let cid = node
        .ipfs(1, &["add", "-Q", "--cid-version=1", file.to_str().unwrap()])
        .unwrap();
    node.ipfs(
        1,
        &[
            "name",
            "publish",
            "--allow-offline",
            "--key=flatipfs-remote-main",
            &format!("/ipfs/{}", cid.trim()),
        ],
    )
    .unwrap();
    pair.carry_index();
}
