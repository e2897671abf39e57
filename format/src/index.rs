//! The store index: per remote, published under its IPNS name, listing app
//! ids and their current release roots, and [`StoreIndex::validate`], which
//! every index read from the network passes before anything in it is used
//! or shown.
//!
//! Two layouts: schema 1, one document ([`StoreIndex`]); and schema 2
//! ([`crate::index_shards`]), a small root document ([`IndexRoot`]) and
//! shard documents ([`IndexShard`]) by a hash of the app id, so that a
//! client fetches only the shards that changed. Both are read into a
//! [`StoreIndex`] in memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::release::{
    valid_app_id, valid_cid_v1, valid_ref_part, valid_runtime_ref, valid_version, Kind,
};

/// The index schema this daemon writes and reads.
pub const SCHEMA: u32 = 1;

/// A remote's store index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreIndex {
    pub schema: u32,
    /// The remote's name as its publisher calls it.
    pub remote: String,
    /// Incremented with every publication of this index.
    pub sequence: u64,
    /// App (and runtime) ids → current release.
    pub apps: BTreeMap<String, IndexEntry>,
    /// AppStream catalog for software centres (CID), when published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appstream: Option<String>,
    /// Nodes that serve this remote's releases: the publisher's first,
    /// then its mirrors (at most [`MAX_PEERS`]). Clients keep them as
    /// peering peers of their node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<IndexPeer>,
}

/// Most peers an index names.
pub const MAX_PEERS: usize = 16;
/// Most addresses of one peer.
pub const MAX_PEER_ADDRS: usize = 8;
/// Longest address, in bytes.
pub const MAX_ADDR_LEN: usize = 256;

/// A node that serves a remote's releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPeer {
    /// Its libp2p peer ID (`12D3KooW…` or `Qm…`).
    pub id: String,
    /// Where it listens: multiaddrs without `/p2p/` (at most [`MAX_PEER_ADDRS`]).
    pub addrs: Vec<String>,
}

/// Whether `id` is a libp2p peer ID in its base58 form: an identity
/// multihash of an ed25519 key (`12D3KooW…`, 52 characters) or a sha2-256
/// one (`Qm…`, 46 characters).
pub fn valid_peer_id(id: &str) -> bool {
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    ((id.starts_with("12D3KooW") && id.len() == 52) || (id.starts_with("Qm") && id.len() == 46))
        && id.chars().all(|c| BASE58.contains(c))
}

/// Whether `addr` is a plain multiaddr a node can be dialled at: at most
/// [`MAX_ADDR_LEN`] bytes, made of known protocols with well-formed values
/// (`/ip4/…`, `/ip6/…` or `/dns*/…`, then `/tcp/PORT` or `/udp/PORT`, then
/// transport markers); no `/p2p/` part (the peer ID is separate), no relay.
pub fn valid_multiaddr(addr: &str) -> bool {
    if addr.len() > MAX_ADDR_LEN || !addr.starts_with('/') {
        return false;
    }
    let mut parts = addr[1..].split('/');
    let (mut host, mut port) = (false, false);
    while let Some(protocol) = parts.next() {
        let ok = match protocol {
            "ip4" => parts
                .next()
                .is_some_and(|v| v.parse::<std::net::Ipv4Addr>().is_ok()),
            "ip6" => parts
                .next()
                .is_some_and(|v| v.parse::<std::net::Ipv6Addr>().is_ok()),
            "dns" | "dns4" | "dns6" => parts.next().is_some_and(|v| {
                !v.is_empty()
                    && v.len() <= 253
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            }),
            "tcp" | "udp" => {
                if !host || port {
                    return false;
                }
                port = true;
                parts.next().is_some_and(|v| v.parse::<u16>().is_ok())
            }
            "quic" | "quic-v1" | "webtransport" | "ws" | "wss" | "tls" | "noise" => port,
            _ => false,
        };
        if !ok {
            return false;
        }
        if matches!(protocol, "ip4" | "ip6" | "dns" | "dns4" | "dns6") {
            if host {
                return false;
            }
            host = true;
        }
    }
    host && port
}

/// The current release of one id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub kind: Kind,
    /// Release root CID.
    pub release: String,
    /// The index sequence at which this release was published.
    pub sequence: u64,
    pub version: String,
    pub arch: String,
    pub branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    pub published: u64,
    /// Earlier releases, newest first (at most [`HISTORY`]), so that a
    /// client can go to a given older version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PastRelease>,
}

/// How many earlier releases an index entry lists.
pub const HISTORY: usize = 16;

/// An earlier release of an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PastRelease {
    pub release: String,
    pub sequence: u64,
    pub version: String,
    pub published: u64,
}

impl IndexEntry {
    /// Checks one entry of an index at `index_sequence`; says what is wrong.
    pub(crate) fn validate(&self, index_sequence: u64) -> Result<(), String> {
        if !valid_cid_v1(&self.release) {
            return Err(format!("release {:?} is not a CIDv1", self.release));
        }
        if self.sequence > index_sequence {
            return Err(format!(
                "sequence {} is beyond the index's {index_sequence}",
                self.sequence
            ));
        }
        if !valid_version(&self.version) {
            return Err(format!("invalid version {:?}", self.version));
        }
        for (field, value) in [("arch", &self.arch), ("branch", &self.branch)] {
            if !valid_ref_part(value) {
                return Err(format!("invalid {field} {value:?}"));
            }
        }
        if let Some(runtime) = &self.runtime {
            if !valid_runtime_ref(runtime) {
                return Err(format!("invalid runtime {runtime:?}"));
            }
        }
        if self.history.len() > HISTORY {
            return Err(format!(
                "{} past releases, over the limit of {HISTORY}",
                self.history.len()
            ));
        }
        let mut above = self.sequence;
        for past in &self.history {
            if !valid_cid_v1(&past.release) {
                return Err(format!("past release {:?} is not a CIDv1", past.release));
            }
            if past.sequence >= above {
                return Err(format!(
                    "past release sequence {} is not below {above} (newest first)",
                    past.sequence
                ));
            }
            if !valid_version(&past.version) {
                return Err(format!("invalid past version {:?}", past.version));
            }
            above = past.sequence;
        }
        Ok(())
    }

    /// This entry's history with the entry itself in front: what the next
    /// release of the same id lists.
    pub fn with_history(&self) -> Vec<PastRelease> {
        let mut history = vec![PastRelease {
            release: self.release.clone(),
            sequence: self.sequence,
            version: self.version.clone(),
            published: self.published,
        }];
        history.extend(self.history.iter().cloned());
        history.truncate(HISTORY);
        history
    }
}

/// Whether `name` is a valid remote name: 1 to 64 of `a-z`, `0-9`, `.`,
/// `_`, `-`, starting with a letter or digit.
pub fn valid_remote_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Limits a store index must respect.
#[derive(Debug, Clone, Copy)]
pub struct IndexLimits {
    /// Most ids (apps and runtimes) an index lists.
    pub max_apps: usize,
}

/// Default of [`IndexLimits::max_apps`].
pub const DEFAULT_MAX_APPS: usize = 10_000;

impl Default for IndexLimits {
    fn default() -> Self {
        IndexLimits {
            max_apps: DEFAULT_MAX_APPS,
        }
    }
}

/// Why a store index is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("unsupported index schema {0} (this daemon reads {SCHEMA})")]
    Schema(u32),
    #[error("invalid remote name {0:?}")]
    BadRemote(String),
    #[error("{0} ids, over the limit of {1}")]
    TooMany(usize, usize),
    #[error("invalid app id {0:?}")]
    BadId(String),
    #[error("the entry of {id:?}: {what}")]
    BadEntry { id: String, what: String },
    #[error("invalid appstream CID {0:?}: must be a CIDv1")]
    BadAppstream(String),
    #[error("{0} peers, over the limit of {MAX_PEERS}")]
    TooManyPeers(usize),
    #[error("invalid peer {id:?}: {what}")]
    BadPeer { id: String, what: String },
    #[error("{0} shards in one shard map, over the limit of {FANOUT}")]
    TooManyShards(usize),
    #[error("shard {prefix:?}: {what}")]
    BadShard { prefix: String, what: String },
    #[error("app {id:?} is listed in shard {prefix:?}, which is not its shard")]
    WrongShard { id: String, prefix: String },
}

pub use crate::index_shards::{IndexRoot, IndexShard, FANOUT};

impl StoreIndex {
    /// Checks everything a client relies on before it uses or shows
    /// anything of the index: schema, names, ids, CIDs, sequences, versions
    /// and sizes (`docs/release-format.md`, "Store index").
    pub fn validate(&self, limits: IndexLimits) -> Result<(), IndexError> {
        if self.schema != SCHEMA {
            return Err(IndexError::Schema(self.schema));
        }
        if !valid_remote_name(&self.remote) {
            return Err(IndexError::BadRemote(self.remote.clone()));
        }
        if self.apps.len() > limits.max_apps {
            return Err(IndexError::TooMany(self.apps.len(), limits.max_apps));
        }
        if let Some(appstream) = &self.appstream {
            if !valid_cid_v1(appstream) {
                return Err(IndexError::BadAppstream(appstream.clone()));
            }
        }
        if self.peers.len() > MAX_PEERS {
            return Err(IndexError::TooManyPeers(self.peers.len()));
        }
        for peer in &self.peers {
            let bad = |what: String| IndexError::BadPeer {
                id: peer.id.chars().take(64).collect(),
                what,
            };
            if !valid_peer_id(&peer.id) {
                return Err(bad("not a libp2p peer ID".into()));
            }
            if peer.addrs.len() > MAX_PEER_ADDRS {
                return Err(bad(format!(
                    "{} addresses, over the limit of {MAX_PEER_ADDRS}",
                    peer.addrs.len()
                )));
            }
            if let Some(addr) = peer.addrs.iter().find(|a| !valid_multiaddr(a)) {
                return Err(bad(format!(
                    "invalid address {:?}",
                    addr.chars().take(80).collect::<String>()
                )));
            }
        }
        for (id, entry) in &self.apps {
            if !valid_app_id(id) {
                return Err(IndexError::BadId(id.clone()));
            }
            entry
                .validate(self.sequence)
                .map_err(|what| IndexError::BadEntry {
                    id: id.clone(),
                    what,
                })?;
        }
        Ok(())
    }

    /// The empty index a new remote starts with.
    pub fn empty(remote: &str) -> Self {
        StoreIndex {
            schema: SCHEMA,
            remote: remote.to_string(),
            sequence: 0,
            apps: BTreeMap::new(),
            appstream: None,
            peers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafybeihw2l5dbupktvzyxuildm2sk7l3zr3oajz46uvsj6d6zo2av4mgva";
    const LIMITS: IndexLimits = IndexLimits { max_apps: 3 };

    fn past(sequence: u64) -> PastRelease {
        PastRelease {
            release: CID.into(),
            sequence,
            version: sequence.to_string(),
            published: 0,
        }
    }

    fn entry() -> IndexEntry {
        IndexEntry {
            kind: Kind::App,
            release: CID.into(),
            sequence: 5,
            version: "5".into(),
            arch: "x86_64".into(),
            branch: "master".into(),
            runtime: Some("org.test.Platform/x86_64/master".into()),
            published: 0,
            history: vec![past(4), past(2)],
        }
    }

    fn index(entry: IndexEntry) -> StoreIndex {
        let mut index = StoreIndex::empty("main");
        index.sequence = 6;
        index.apps.insert("org.test.Hello".into(), entry);
        index
    }

    /// The reason `entry` is refused, in an index at sequence 6.
    fn refused(entry: IndexEntry) -> String {
        match index(entry).validate(LIMITS) {
            Err(IndexError::BadEntry { what, .. }) => what,
            other => panic!("expected a refused entry, got {other:?}"),
        }
    }

    const PEER: &str = "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp";

    fn peer(addrs: &[&str]) -> IndexPeer {
        IndexPeer {
            id: PEER.into(),
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn peers_are_checked_and_bounded() {
        let mut good = index(entry());
        good.peers = vec![
            peer(&["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/udp/4001/quic-v1"]),
            peer(&["/dns4/mirror.example.org/tcp/4001"]),
        ];
        good.validate(LIMITS).unwrap();
        let text = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<StoreIndex>(&text).unwrap(), good);

        let refused = |peers: Vec<IndexPeer>| {
            let mut bad = index(entry());
            bad.peers = peers;
            bad.validate(LIMITS).unwrap_err()
        };
        assert_eq!(
            refused(vec![peer(&[]); MAX_PEERS + 1]),
            IndexError::TooManyPeers(MAX_PEERS + 1)
        );
        let many = vec!["/ip4/10.0.0.1/tcp/1"; MAX_PEER_ADDRS + 1];
        assert!(matches!(
            refused(vec![peer(&many)]),
            IndexError::BadPeer { .. }
        ));
        for id in [
            "",
            "12D3KooW",
            "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N0",
            "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDE",
            "bafzaajaiaejcb",
            "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDE\n",
        ] {
            let mut bad = peer(&[]);
            bad.id = id.into();
            assert!(
                matches!(refused(vec![bad]), IndexError::BadPeer { .. }),
                "{id:?}"
            );
        }
        for addr in [
            "",
            "ip4/1.2.3.4/tcp/1",
            "/ip4/1.2.3.4",
            "/tcp/4001",
            "/ip4/1.2.3.400/tcp/1",
            "/ip4/1.2.3.4/tcp/70000",
            "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp",
            "/ip4/1.2.3.4/tcp/1/p2p-circuit",
            "/unix/run/socket",
            "/ip4/1.2.3.4/ip4/1.2.3.4/tcp/1",
            "/dns4/a b/tcp/1",
            "/ip4/1.2.3.4/tcp/1/",
        ] {
            assert!(
                matches!(refused(vec![peer(&[addr])]), IndexError::BadPeer { .. }),
                "{addr:?}"
            );
        }
        let long = format!("/dns4/{}/tcp/1", "a".repeat(MAX_ADDR_LEN));
        assert!(matches!(
            refused(vec![peer(&[&long])]),
            IndexError::BadPeer { .. }
        ));
    }

    #[test]
    fn a_good_index_passes_and_round_trips() {
        let mut good = index(entry());
        good.appstream = Some(CID.into());
        good.validate(LIMITS).unwrap();
        let text = serde_json::to_string(&good).unwrap();
        assert_eq!(serde_json::from_str::<StoreIndex>(&text).unwrap(), good);
        StoreIndex::empty("main").validate(LIMITS).unwrap();
    }

    #[test]
    fn schema_remote_and_size_are_checked() {
        let mut bad = index(entry());
        bad.schema = 2;
        assert_eq!(bad.validate(LIMITS), Err(IndexError::Schema(2)));
        for name in ["", "Main", "../x", "a\u{1b}]0;x\u{7}", &"a".repeat(65)] {
            let mut bad = index(entry());
            bad.remote = name.into();
            assert_eq!(
                bad.validate(LIMITS),
                Err(IndexError::BadRemote(name.into())),
                "{name:?}"
            );
        }
        let mut big = index(entry());
        for id in ["org.test.A", "org.test.B", "org.test.C"] {
            big.apps.insert(id.into(), entry());
        }
        assert_eq!(big.validate(LIMITS), Err(IndexError::TooMany(4, 3)));
        let mut bad = index(entry());
        bad.appstream = Some("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into());
        assert!(matches!(
            bad.validate(LIMITS),
            Err(IndexError::BadAppstream(_))
        ));
    }

    #[test]
    fn keys_must_be_app_ids() {
        for id in ["org.test", "../../etc", "org.test.Hello\u{1b}[2J", ""] {
            let mut bad = StoreIndex::empty("main");
            bad.sequence = 6;
            bad.apps.insert(id.into(), entry());
            assert_eq!(
                bad.validate(LIMITS),
                Err(IndexError::BadId(id.into())),
                "{id:?}"
            );
        }
    }

    #[test]
    fn release_cids_must_be_cidv1() {
        let mut e = entry();
        e.release = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into();
        assert!(refused(e).contains("not a CIDv1"));
        let mut e = entry();
        e.history[1].release = "nope".into();
        assert!(refused(e).contains("past release"));
    }

    #[test]
    fn sequences_must_be_consistent() {
        let mut e = entry();
        e.sequence = 7;
        assert!(refused(e).contains("beyond the index"));
        let mut e = entry();
        e.history = vec![past(5)];
        assert!(refused(e).contains("not below 5"));
        let mut e = entry();
        e.history = vec![past(2), past(4)];
        assert!(refused(e).contains("not below 2"));
        let mut e = entry();
        e.history = vec![past(3), past(3)];
        assert!(refused(e).contains("not below 3"));
    }

    #[test]
    fn versions_must_be_short_and_free_of_control_characters() {
        for version in [
            "",
            "1.0\u{1b}]0;pwned\u{7}",
            "1\n2",
            "1\u{9b}2J",
            "1\u{202e}0",
            &"9".repeat(129),
        ] {
            let mut e = entry();
            e.version = version.into();
            assert!(refused(e).contains("invalid version"), "{version:?}");
            let mut e = entry();
            e.history[0].version = version.into();
            assert!(refused(e).contains("invalid past version"), "{version:?}");
        }
    }

    #[test]
    fn arch_branch_and_runtime_must_be_plain() {
        let mut e = entry();
        e.arch = "../x".into();
        assert!(refused(e).contains("invalid arch"));
        let mut e = entry();
        e.branch = "".into();
        assert!(refused(e).contains("invalid branch"));
        let mut e = entry();
        e.runtime = Some("org.test.Platform/x86_64".into());
        assert!(refused(e).contains("invalid runtime"));
    }

    #[test]
    fn history_is_bounded() {
        let mut e = entry();
        e.sequence = 100;
        e.history = (0..=HISTORY as u64).rev().map(past).collect();
        let mut big = index(e);
        big.sequence = 100;
        assert!(matches!(
            big.validate(LIMITS),
            Err(IndexError::BadEntry { what, .. }) if what.contains("over the limit")
        ));
    }
}
