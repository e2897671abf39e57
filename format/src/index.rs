//! The store index: one document per remote, published under its IPNS name,
//! listing app ids and their current release roots, and
//! [`StoreIndex::validate`], which every index read from the network passes
//! before anything in it is used or shown.

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
    fn validate(&self, index_sequence: u64) -> Result<(), String> {
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
}

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
