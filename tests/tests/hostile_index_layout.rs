//! Malicious-release suite, the sharded store index (issue 11 part 6): a
//! hostile publisher (its key signs what it likes) serves a root or shard
//! document that breaks a bound or a rule of the layout — a shard larger
//! than allowed, a root larger than allowed, a shard map naming another
//! shard's document, an app in a shard that is not its own, an app listed
//! twice in one shard, a shard map of more than 16 shards. Each is refused
//! before anything of the index is used: an update fails with
//! `VerificationFailed` saying why, a check reports the remote's index as
//! refused and offers nothing; the installed app and runtime stay as they were and run;
//! and the genuine index is read again afterwards.

use flatipfs_format::index_shards::{shard_hash, MAX_ROOT_BYTES, MAX_SHARD_BYTES};
use flatipfs_tests::ctl::{fails_with, ok_json, run_hello};
use flatipfs_tests::index_layout::add_document;
use flatipfs_tests::pair::Pair;
use serde_json::Value;

const APP: &str = "org.test.Hello";

/// What the client shows of its installation: the app and runtime, and the
/// directories of its installation.
fn installed(pair: &Pair) -> (Value, Value, Vec<String>) {
    let client = &pair.client;
    let app = ok_json(client, &["info", "--json", APP]);
    let runtime = ok_json(client, &["info", "--json", "org.test.Platform"]);
    let mut dirs: Vec<String> = walk(&client.installation());
    dirs.sort();
    (app, runtime, dirs)
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if entry.file_type().unwrap().is_dir() && path.components().count() < 12 {
            out.extend(walk(&path));
        }
    }
    out
}

/// Publishes `root` as the index's root document and checks that an update
/// and a check of the app fail with a verification error saying `expected`,
/// and that nothing installed changed.
fn refused(pair: &Pair, root: &Value, expected: &str) {
    refused_bytes(pair, &serde_json::to_vec(root).unwrap(), expected);
}

fn refused_bytes(pair: &Pair, root: &[u8], expected: &str) {
    let before = installed(pair);
    pair.publish_handmade_root(root);
    let client = &pair.client;
    let error = fails_with(client, &["update", "--json", APP], "VerificationFailed");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("store index") && message.contains(expected),
        "expected {expected:?}: {error}"
    );
    // A check reports the remote's index as refused and offers nothing.
    let checked = ok_json(client, &["update", "--check", "--json", APP]);
    assert!(
        checked["catalog_errors"]
            .to_string()
            .contains("store index")
            && checked["catalog_errors"][0]
                .as_str()
                .unwrap()
                .contains(expected),
        "a check: expected {expected:?}: {checked}"
    );
    assert_eq!(checked["apps"][0]["available"], "", "{checked}");
    assert_eq!(installed(pair), before, "something changed");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

#[test]
fn hostile_sharded_indexes_are_refused_and_change_nothing() {
    let pair = Pair::up("");
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", APP]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // What the daemon published: a sharded index whose root names the
    // shard of each app by the first digit of its hash.
    let (genuine, root, shards) = pair.current_shards();
    let digit = shard_hash(APP)[..1].to_string();
    let (shard_cid, shard) = shards[&digit].clone();
    assert_eq!(root["shards"][&digit], shard_cid.as_str(), "{root}");
    assert!(shard["apps"].get(APP).is_some(), "{shard}");
    let node = &pair.publisher;
    // Every attack is a newer index than the one the client has seen.
    let sequence = root["sequence"].as_u64().unwrap() + 1;
    let mut base = root.clone();
    base["sequence"] = sequence.into();
    let with_shard = |cid: &str| {
        let mut root = base.clone();
        root["shards"][&digit] = cid.into();
        root
    };

    // 1. A shard larger than a client reads (valid JSON: the genuine shard
    // and then blanks).
    let mut big = serde_json::to_vec(&shard).unwrap();
    big.resize(MAX_SHARD_BYTES as usize + 1, b' ');
    let cid = add_document(node, "big-shard", &big);
    refused(
        &pair,
        &with_shard(&cid),
        &format!("larger than {MAX_SHARD_BYTES} bytes"),
    );

    // 2. A root larger than a client reads.
    let mut big = serde_json::to_vec(&base).unwrap();
    big.resize(MAX_ROOT_BYTES as usize + 1, b' ');
    refused_bytes(&pair, &big, &format!("larger than {MAX_ROOT_BYTES} bytes"));

    // 3. The shard map names, at this app's place, the document of another
    // shard (its CID is that of a shard, not of the one that belongs there).
    let other = if digit == "0" { "1" } else { "0" };
    let mut moved = shard.clone();
    moved["prefix"] = other.into();
    let cid = add_document(node, "moved-shard", &serde_json::to_vec(&moved).unwrap());
    refused(
        &pair,
        &with_shard(&cid),
        &format!("the document there is shard \"{other}\""),
    );

    // 4. An app in a shard that is not its own: it would hide from a
    // client looking in its own shard, or shadow it.
    let evil = (0..)
        .map(|n| format!("org.test.Evil{n}"))
        .find(|id| !shard_hash(id).starts_with(&digit))
        .unwrap();
    let mut wrong = shard.clone();
    wrong["apps"][&evil] = shard["apps"][APP].clone();
    let cid = add_document(node, "wrong-shard", &serde_json::to_vec(&wrong).unwrap());
    refused(
        &pair,
        &with_shard(&cid),
        &format!("app \"{evil}\" is listed in shard \"{digit}\", which is not its shard"),
    );

    // 5. A shard that lists the app twice (a reader taking the last one
    // would see another release than one taking the first).
    let text = serde_json::to_string(&shard).unwrap();
    let mut second = shard["apps"][APP].clone();
    second["version"] = "666".into();
    let twice = text.replacen("\"apps\":{", &format!("\"apps\":{{\"{APP}\":{second},"), 1);
    assert_ne!(twice, text);
    let cid = add_document(node, "twice-shard", twice.as_bytes());
    refused(
        &pair,
        &with_shard(&cid),
        &format!("\"{APP}\" is listed twice"),
    );

    // 6. A root whose shard map names more than 16 shards.
    let mut wide = base.clone();
    for key in [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f",
    ] {
        wide["shards"][key] = shard_cid.as_str().into();
    }
    wide["shards"]["10"] = shard_cid.as_str().into();
    refused(
        &pair,
        &wide,
        "17 shards in one shard map, over the limit of 16",
    );

    // The genuine index, published again (a newer sequence): read and used.
    let (genuine_root, _) = flatipfs_tests::index_layout::read_shards(node, 1, &genuine);
    let mut again = genuine_root.clone();
    again["sequence"] = (sequence + 1).into();
    pair.publish_handmade_root(&serde_json::to_vec(&again).unwrap());
    ok_json(client, &["update", "--check", "--json", APP]);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}
