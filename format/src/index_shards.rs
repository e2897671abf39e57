//! The sharded store index (schema 2): what a remote's IPNS name points at
//! is a UnixFS directory holding a small root document ([`ROOT_NAME`],
//! [`IndexRoot`]: the remote-level fields and a map from hex digit to the
//! CID of a shard document) and, under [`SHARDS_DIR`], every shard
//! document ([`IndexShard`]), so that pinning the directory pins them all.
//!
//! An app's shard is given by the hex SHA-256 of its id ([`shard_hash`]):
//! the shard at prefix `3a` holds the apps whose hash starts with `3a`,
//! either directly (a leaf, `apps`) or through up to [`FANOUT`] shards one
//! digit longer (`shards`), at most [`MAX_DEPTH`] digits deep. A publisher
//! splits a shard of more than [`LEAF_APPS`] apps ([`shard`]). A client
//! that remembers the shard CIDs it last saw fetches only the root and the
//! shards whose CID changed; each is bounded ([`MAX_ROOT_BYTES`],
//! [`MAX_SHARD_BYTES`]) and checked ([`IndexRoot::validate`],
//! [`IndexShard::validate`]) before it is used.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::index::{IndexEntry, IndexError, IndexLimits, IndexPeer, StoreIndex, SCHEMA};
use crate::release::{valid_app_id, valid_cid_v1};

/// The schema of a sharded index's root and shard documents.
pub const SCHEMA_SHARDED: u32 = 2;
/// The root document's name in the index directory.
pub const ROOT_NAME: &str = "index.json";
/// The directory of shard documents (`<prefix>.json`) in the index directory.
pub const SHARDS_DIR: &str = "shards";
/// Most shards one shard map names: one per hex digit.
pub const FANOUT: usize = 16;
/// Longest shard prefix, in hex digits (16⁴ leaves hold any index of
/// [`crate::index::DEFAULT_MAX_APPS`] apps a few per leaf).
pub const MAX_DEPTH: usize = 4;
/// Most apps a publisher puts in one leaf shard before splitting it
/// (chosen by measurement: `docs/benchmarks.md`, "Store index layout").
pub const LEAF_APPS: usize = 8;
/// Largest root document accepted, in bytes.
pub const MAX_ROOT_BYTES: u64 = 256 << 10;
/// Largest shard document accepted, in bytes.
pub const MAX_SHARD_BYTES: u64 = 1 << 20;

/// The hex SHA-256 of an app id: where it lives in the shards.
pub fn shard_hash(id: &str) -> String {
    Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The CID (v1, raw, sha2-256) of a document of one block: what `add`
/// gives a document smaller than one chunk with raw leaves.
pub fn raw_cid(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hash = cid::multihash::Multihash::<64>::wrap(0x12, &digest).expect("32 bytes fit");
    cid::Cid::new_v1(0x55, hash).to_string()
}

/// The root document of a sharded index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRoot {
    pub schema: u32,
    /// The remote's name as its publisher calls it.
    pub remote: String,
    /// Incremented with every publication of this index.
    pub sequence: u64,
    /// AppStream catalog for software centres (CID), when published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appstream: Option<String>,
    /// Nodes that serve this remote's releases (as in [`StoreIndex::peers`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IndexPeer>,
    /// Hex digit → CID of the shard at that one-digit prefix (only
    /// non-empty shards are named).
    #[serde(deserialize_with = "unique_map")]
    pub shards: BTreeMap<String, String>,
}

/// One shard document: the apps under a prefix, or the shards below it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexShard {
    pub schema: u32,
    /// The remote this shard belongs to.
    pub remote: String,
    /// This shard's prefix of [`shard_hash`]: where it belongs.
    pub prefix: String,
    /// Hex digit → CID of the shard one digit longer.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub shards: BTreeMap<String, String>,
    /// App (and runtime) ids → current release, as in [`StoreIndex::apps`].
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub apps: BTreeMap<String, IndexEntry>,
}

/// A JSON object as a map, refusing a key listed twice (which a plain
/// map would silently take the last of).
fn unique_map<'de, D, V>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object whose keys are all different")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    let key: String = key.chars().take(80).collect();
                    return Err(A::Error::custom(format_args!("{key:?} is listed twice")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Unique(PhantomData))
}

/// Checks a shard map at `prefix`: at most [`FANOUT`] shards, keyed by one
/// hex digit each, naming CIDv1s, no deeper than [`MAX_DEPTH`].
fn check_shard_map(prefix: &str, shards: &BTreeMap<String, String>) -> Result<(), IndexError> {
    if shards.len() > FANOUT {
        return Err(IndexError::TooManyShards(shards.len()));
    }
    let bad = |what: String| IndexError::BadShard {
        prefix: prefix.to_string(),
        what,
    };
    if !shards.is_empty() && prefix.len() >= MAX_DEPTH {
        return Err(bad(format!(
            "shards below it would be deeper than {MAX_DEPTH} digits"
        )));
    }
    for (digit, cid) in shards {
        if digit.len() != 1
            || !digit
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad(format!(
                "shard key {:?} is not one hex digit",
                digit.chars().take(80).collect::<String>()
            )));
        }
        if !valid_cid_v1(cid) {
            return Err(bad(format!(
                "shard {digit} names {:?}, not a CIDv1",
                cid.chars().take(80).collect::<String>()
            )));
        }
    }
    Ok(())
}

impl IndexRoot {
    /// Checks the root: schema, remote name, appstream, peers (as
    /// [`StoreIndex::validate`] does) and its shard map.
    pub fn validate(&self, limits: IndexLimits) -> Result<(), IndexError> {
        if self.schema != SCHEMA_SHARDED {
            return Err(IndexError::Schema(self.schema));
        }
        self.index(BTreeMap::new()).validate(limits)?;
        check_shard_map("", &self.shards)
    }

    /// The index this root heads, with `apps` read from its shards (the
    /// in-memory form, whatever the layout).
    pub fn index(&self, apps: BTreeMap<String, IndexEntry>) -> StoreIndex {
        StoreIndex {
            schema: SCHEMA,
            remote: self.remote.clone(),
            sequence: self.sequence,
            apps,
            appstream: self.appstream.clone(),
            peers: self.peers.clone(),
        }
    }
}

impl IndexShard {
    /// Checks a shard reached at `prefix` from a root of remote `remote`
    /// at sequence `sequence`: it says it is that shard of that remote; it
    /// lists either apps or shards; its shard map is well formed; every app
    /// id is valid, hashes under `prefix` and has a valid entry.
    pub fn validate(
        &self,
        remote: &str,
        prefix: &str,
        sequence: u64,
        limits: IndexLimits,
    ) -> Result<(), IndexError> {
        let bad = |what: String| IndexError::BadShard {
            prefix: prefix.to_string(),
            what,
        };
        if self.schema != SCHEMA_SHARDED {
            return Err(IndexError::Schema(self.schema));
        }
        if self.remote != remote {
            return Err(bad(format!(
                "it belongs to remote {:?}, not {remote:?}",
                self.remote.chars().take(80).collect::<String>()
            )));
        }
        if self.prefix != prefix {
            return Err(bad(format!(
                "the document there is shard {:?}",
                self.prefix.chars().take(80).collect::<String>()
            )));
        }
        if self.shards.is_empty() == self.apps.is_empty() {
            return Err(bad("it must list either apps or shards".into()));
        }
        check_shard_map(prefix, &self.shards)?;
        if self.apps.len() > limits.max_apps {
            return Err(IndexError::TooMany(self.apps.len(), limits.max_apps));
        }
        for (id, entry) in &self.apps {
            if !valid_app_id(id) {
                return Err(IndexError::BadId(id.clone()));
            }
            if !shard_hash(id).starts_with(prefix) {
                return Err(IndexError::WrongShard {
                    id: id.clone(),
                    prefix: prefix.to_string(),
                });
            }
            entry
                .validate(sequence)
                .map_err(|what| IndexError::BadEntry {
                    id: id.clone(),
                    what,
                })?;
        }
        Ok(())
    }
}

/// One shard document as a publisher writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardDocument {
    pub prefix: String,
    /// Its CID as `add` gives it ([`raw_cid`]).
    pub cid: String,
    pub bytes: Vec<u8>,
}

/// `index` in the sharded layout: the root document's bytes and every
/// shard document, deepest first.
pub fn shard(index: &StoreIndex) -> (Vec<u8>, Vec<ShardDocument>) {
    let apps: Vec<(String, &String, &IndexEntry)> = index
        .apps
        .iter()
        .map(|(id, entry)| (shard_hash(id), id, entry))
        .collect();
    let mut documents = Vec::new();
    let shards = children(&index.remote, "", &apps, &mut documents);
    let root = IndexRoot {
        schema: SCHEMA_SHARDED,
        remote: index.remote.clone(),
        sequence: index.sequence,
        appstream: index.appstream.clone(),
        peers: index.peers.clone(),
        shards,
    };
    (
        serde_json::to_vec(&root).expect("an index root serializes"),
        documents,
    )
}

type Hashed<'a> = (String, &'a String, &'a IndexEntry);

/// The shards one digit below `prefix` holding `apps`, written to
/// `documents`; returns the shard map.
fn children(
    remote: &str,
    prefix: &str,
    apps: &[Hashed],
    documents: &mut Vec<ShardDocument>,
) -> BTreeMap<String, String> {
    let mut groups: BTreeMap<char, Vec<Hashed>> = BTreeMap::new();
    for app in apps {
        let digit = app.0[prefix.len()..].chars().next().expect("64 digits");
        groups.entry(digit).or_default().push(app.clone());
    }
    groups
        .into_iter()
        .map(|(digit, group)| {
            let prefix = format!("{prefix}{digit}");
            let mut shard = IndexShard {
                schema: SCHEMA_SHARDED,
                remote: remote.to_string(),
                prefix: prefix.clone(),
                shards: BTreeMap::new(),
                apps: BTreeMap::new(),
            };
            if group.len() <= LEAF_APPS || prefix.len() >= MAX_DEPTH {
                shard.apps = group
                    .iter()
                    .map(|(_, id, entry)| ((*id).clone(), (*entry).clone()))
                    .collect();
            } else {
                shard.shards = children(remote, &prefix, &group, documents);
            }
            let bytes = serde_json::to_vec(&shard).expect("a shard serializes");
            let cid = raw_cid(&bytes);
            documents.push(ShardDocument {
                prefix,
                cid: cid.clone(),
                bytes,
            });
            (digit.to_string(), cid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{PastRelease, DEFAULT_MAX_APPS};
    use crate::release::Kind;

    const CID: &str = "bafybeihw2l5dbupktvzyxuildm2sk7l3zr3oajz46uvsj6d6zo2av4mgva";

    fn entry(sequence: u64) -> IndexEntry {
        IndexEntry {
            kind: Kind::App,
            release: CID.into(),
            sequence,
            version: sequence.to_string(),
            arch: "x86_64".into(),
            branch: "master".into(),
            runtime: Some("org.test.Platform/x86_64/master".into()),
            published: 1_700_000_000,
            history: (1..sequence.min(4))
                .rev()
                .map(|s| PastRelease {
                    release: CID.into(),
                    sequence: s,
                    version: s.to_string(),
                    published: 1_700_000_000,
                })
                .collect(),
        }
    }

    fn index(apps: usize) -> StoreIndex {
        let mut index = StoreIndex::empty("main");
        index.sequence = 10;
        for n in 0..apps {
            index.apps.insert(format!("org.test.App{n}"), entry(5));
        }
        index
    }

    /// Reads back a sharded index from its documents, checking each.
    fn read(root: &[u8], documents: &[ShardDocument]) -> Result<StoreIndex, IndexError> {
        let root: IndexRoot = serde_json::from_slice(root).unwrap();
        root.validate(IndexLimits::default())?;
        let mut apps = BTreeMap::new();
        let mut todo: Vec<(String, String)> = root
            .shards
            .iter()
            .map(|(d, c)| (d.clone(), c.clone()))
            .collect();
        while let Some((prefix, cid)) = todo.pop() {
            let document = documents.iter().find(|d| d.cid == cid).unwrap();
            assert_eq!(raw_cid(&document.bytes), cid);
            let shard: IndexShard = serde_json::from_slice(&document.bytes).unwrap();
            shard.validate(&root.remote, &prefix, root.sequence, IndexLimits::default())?;
            todo.extend(
                shard
                    .shards
                    .iter()
                    .map(|(d, c)| (format!("{prefix}{d}"), c.clone())),
            );
            apps.extend(shard.apps);
        }
        Ok(root.index(apps))
    }

    #[test]
    fn a_sharded_index_reads_back_whole() {
        for size in [0, 1, 30, 3000] {
            let index = index(size);
            let (root, documents) = shard(&index);
            assert_eq!(read(&root, &documents).unwrap(), index, "{size} apps");
            for d in &documents {
                let shard: IndexShard = serde_json::from_slice(&d.bytes).unwrap();
                assert!(shard.apps.len() <= LEAF_APPS || d.prefix.len() == MAX_DEPTH);
            }
        }
    }

    /// Bytes of the documents a client that has the previous index must
    /// fetch after one app of `size` changed: the root and the shards
    /// whose CID changed.
    fn check_bytes(size: usize) -> (usize, usize) {
        check_bytes_of(size, 7)
    }

    fn check_bytes_of(size: usize, changed: usize) -> (usize, usize) {
        let mut index = index(size);
        let (_, before) = shard(&index);
        index.sequence += 1;
        index
            .apps
            .insert(format!("org.test.App{}", changed % size), entry(11));
        let (root, after) = shard(&index);
        let changed: usize = after
            .iter()
            .filter(|d| !before.iter().any(|b| b.cid == d.cid))
            .map(|d| d.bytes.len())
            .sum();
        let whole = serde_json::to_vec_pretty(&index).unwrap().len();
        (root.len() + changed, whole)
    }

    #[test]
    fn one_changed_app_changes_a_few_kilobytes() {
        let (check, whole) = check_bytes(3000);
        assert!(check < 8 << 10, "{check} bytes of {whole}");
        let (check, whole) = check_bytes(30);
        assert!(check < 4 << 10, "{check} bytes of {whole}");
    }

    /// `cargo test -p flatipfs-format -- --ignored --nocapture sizes`:
    /// the bytes a check fetches for each leaf size tried.
    #[test]
    #[ignore]
    fn sizes() {
        for size in [30, 3000, DEFAULT_MAX_APPS] {
            let checks: Vec<usize> = (0..50).map(|n| check_bytes_of(size, n * 37).0).collect();
            let whole = check_bytes_of(size, 0).1;
            let (_, documents) = shard(&index(size));
            println!(
                "{size} apps: a check fetches {} bytes on average, at most {} (whole index {whole}); {} shards",
                checks.iter().sum::<usize>() / checks.len(),
                checks.iter().max().unwrap(),
                documents.len()
            );
        }
    }

    fn shard_of(prefix: &str, apps: &[&str]) -> IndexShard {
        IndexShard {
            schema: SCHEMA_SHARDED,
            remote: "main".into(),
            prefix: prefix.into(),
            shards: BTreeMap::new(),
            apps: apps.iter().map(|a| (a.to_string(), entry(5))).collect(),
        }
    }

    fn check(shard: &IndexShard, prefix: &str) -> Result<(), IndexError> {
        shard.validate("main", prefix, 10, IndexLimits::default())
    }

    #[test]
    fn a_shard_must_be_where_it_is_named() {
        let id = "org.test.Hello";
        let prefix = &shard_hash(id)[..2];
        check(&shard_of(prefix, &[id]), prefix).unwrap();
        // Another shard's document at this place.
        let other = if prefix == "00" { "01" } else { "00" };
        assert!(matches!(
            check(&shard_of(other, &[id]), prefix),
            Err(IndexError::BadShard { .. })
        ));
        // An app in a shard that is not its own.
        assert_eq!(
            check(&shard_of(other, &[id]), other),
            Err(IndexError::WrongShard {
                id: id.into(),
                prefix: other.into()
            })
        );
        // Another remote's shard.
        let mut foreign = shard_of(prefix, &[id]);
        foreign.remote = "other".into();
        assert!(matches!(
            check(&foreign, prefix),
            Err(IndexError::BadShard { .. })
        ));
        // Neither apps nor shards; both.
        assert!(matches!(
            check(&shard_of(prefix, &[]), prefix),
            Err(IndexError::BadShard { .. })
        ));
        let mut both = shard_of(prefix, &[id]);
        both.shards.insert("0".into(), CID.into());
        assert!(matches!(
            check(&both, prefix),
            Err(IndexError::BadShard { .. })
        ));
        // Entries are checked as in a whole index.
        let mut future = shard_of(prefix, &[id]);
        future.apps.get_mut(id).unwrap().sequence = 11;
        assert!(matches!(
            check(&future, prefix),
            Err(IndexError::BadEntry { .. })
        ));
    }

    #[test]
    fn shard_maps_are_bounded_and_checked() {
        let root: IndexRoot = serde_json::from_slice(&shard(&index(30)).0).unwrap();
        root.validate(IndexLimits::default()).unwrap();
        for key in ["10", "g", "A", "", "0\u{1b}"] {
            let mut bad = root.clone();
            bad.shards.insert(key.into(), CID.into());
            assert!(
                matches!(
                    bad.validate(IndexLimits::default()),
                    Err(IndexError::BadShard { .. } | IndexError::TooManyShards(_))
                ),
                "{key:?}"
            );
        }
        let mut bad = root.clone();
        bad.shards = (0..=FANOUT).map(|n| (n.to_string(), CID.into())).collect();
        assert_eq!(
            bad.validate(IndexLimits::default()),
            Err(IndexError::TooManyShards(FANOUT + 1))
        );
        let mut bad = root.clone();
        bad.shards.insert(
            "0".into(),
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into(),
        );
        assert!(matches!(
            bad.validate(IndexLimits::default()),
            Err(IndexError::BadShard { .. })
        ));
        let mut bad = root.clone();
        bad.schema = 1;
        assert_eq!(
            bad.validate(IndexLimits::default()),
            Err(IndexError::Schema(1))
        );
        let mut bad = root.clone();
        bad.remote = "../x".into();
        assert!(matches!(
            bad.validate(IndexLimits::default()),
            Err(IndexError::BadRemote(_))
        ));
        // Too deep.
        let mut deep = shard_of("0123", &[]);
        deep.shards.insert("0".into(), CID.into());
        assert!(matches!(
            check(&deep, "0123"),
            Err(IndexError::BadShard { what, .. }) if what.contains("deeper")
        ));
    }

    #[test]
    fn a_key_listed_twice_is_refused() {
        let text = format!(
            r#"{{"schema":2,"remote":"main","sequence":1,"shards":{{"0":"{CID}","0":"{CID}"}}}}"#
        );
        let error = serde_json::from_str::<IndexRoot>(&text).unwrap_err();
        assert!(error.to_string().contains("listed twice"), "{error}");
        let entry = serde_json::to_string(&entry(5)).unwrap();
        let text = format!(
            r#"{{"schema":2,"remote":"main","prefix":"0","apps":{{"org.test.A":{entry},"org.test.A":{entry}}}}}"#
        );
        let error = serde_json::from_str::<IndexShard>(&text).unwrap_err();
        assert!(error.to_string().contains("listed twice"), "{error}");
    }

    #[test]
    fn raw_cids_are_what_add_gives() {
        // `echo '{"a":1}' | ipfs add --cid-version=1 --raw-leaves`
        assert_eq!(
            raw_cid(b"{\"a\":1}\n"),
            "bafkreihdizbsainqif4vddmwctzvmdgnoe2uutxbaho4xcj5nfm2tvrqdq"
        );
    }
}
