//! The store index: one document per remote, published under its IPNS name,
//! listing app ids and their current release roots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::release::Kind;

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

impl StoreIndex {
    /// The empty index a new remote starts with.
    pub fn empty(remote: &str) -> Self {
        StoreIndex {
            schema: SCHEMA,
            remote: remote.to_string(),
            sequence: 0,
            apps: BTreeMap::new(),
            appstream: None,
        }
    }
}
