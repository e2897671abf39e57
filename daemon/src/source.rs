//! Where an install comes from, and fetching what describes it.
//!
//! Owns: parsing an install source (an app id of a trusted remote, or a
//! fixed `/ipfs/<release root>`), resolving a remote's store index through
//! IPNS within a bounded time, and fetching and validating a store index or a
//! release manifest. Everything fetched here is untrusted until it passes
//! [`Manifest::validate`] (or [`StoreIndex::validate`]).

use std::time::Duration;

use crate::index::{IndexEntry, StoreIndex};
use crate::kubo::{Client, KuboError};
use crate::release::{self, Manifest, ManifestLimits, MANIFEST_NAME};

/// The largest store index or manifest accepted.
const MAX_DOCUMENT: u64 = 64 << 20;

/// What to install.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The current release of `id` in the store index of `remote`.
    Remote { remote: String, id: String },
    /// A fixed release root.
    Release(String),
}

impl Source {
    /// `/ipfs/CID` (or a bare CIDv1), else an app id of `remote`.
    pub fn parse(source: &str, remote: Option<&str>) -> Result<Source, SourceError> {
        let trimmed = source.trim();
        if let Some(cid) = trimmed.strip_prefix("/ipfs/") {
            let cid = cid.trim_end_matches('/');
            if !release::valid_cid_v1(cid) {
                return Err(SourceError::BadSource(format!(
                    "{source:?} does not name a release root: expected /ipfs/ and a CIDv1"
                )));
            }
            if remote.is_some() {
                return Err(SourceError::BadSource(
                    "option \"remote\" cannot be used with an /ipfs/ release".into(),
                ));
            }
            return Ok(Source::Release(cid.to_string()));
        }
        if !release::valid_app_id(trimmed) {
            return Err(SourceError::BadSource(format!(
                "{source:?} is neither an app id (like org.example.App) nor /ipfs/<release root>"
            )));
        }
        let remote = remote.ok_or_else(|| {
            SourceError::BadSource(format!(
                "say which remote to install {trimmed} from (option \"remote\")"
            ))
        })?;
        Ok(Source::Remote {
            remote: remote.to_string(),
            id: trimmed.to_string(),
        })
    }

    /// How the source is recorded and shown.
    pub fn describe(&self) -> String {
        match self {
            Source::Remote { remote, id } => format!("{remote} {id}"),
            Source::Release(cid) => format!("/ipfs/{cid}"),
        }
    }
}

/// Why a source could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    BadSource(String),
    #[error(
        "cannot resolve the store index /ipns/{name} of remote {remote:?}: {reason}{last_seen}"
    )]
    ResolveFailed {
        remote: String,
        name: String,
        reason: String,
        /// When the remote was last seen, for people (`; last seen …`);
        /// filled in by [`crate::freshness`].
        last_seen: String,
    },
    #[error("the store index of remote {remote:?} has sequence {sequence}, older than sequence {highest} already seen from it: a replayed or stale record, refused")]
    Stale {
        remote: String,
        sequence: u64,
        highest: u64,
    },
    #[error("cannot fetch {what}: {source}")]
    Fetch {
        what: String,
        #[source]
        source: KuboError,
    },
    #[error("{what} is invalid: {reason}")]
    Invalid { what: String, reason: String },
    #[error("remote {remote:?} has no app {id:?}{}", known_list(.known))]
    NotInIndex {
        remote: String,
        id: String,
        known: Vec<String>,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; its index is empty".into()
    } else {
        format!("; it has: {}", known.join(", "))
    }
}

/// Fetches what a remote's IPNS name currently points at, in either layout
/// ([`crate::index_layout::read`]: of a sharded index, only the root and
/// the shards that changed since the last read), and checks it
/// ([`StoreIndex::validate`]): nothing of an invalid index is used or shown.
pub async fn fetch_index(
    kubo: &Client,
    remote: &str,
    ipns: &str,
    resolve_timeout: Duration,
    document_timeout: Duration,
) -> Result<StoreIndex, SourceError> {
    let resolved = kubo
        .name_resolve(ipns, resolve_timeout)
        .await
        .map_err(|e| SourceError::ResolveFailed {
            remote: remote.to_string(),
            name: ipns.to_string(),
            reason: e.to_string(),
            last_seen: String::new(),
        })?;
    let what = format!("the store index of remote {remote:?}");
    let cid = resolved
        .strip_prefix("/ipfs/")
        .filter(|c| release::valid_cid_v1(c))
        .ok_or_else(|| SourceError::Invalid {
            what: what.clone(),
            reason: format!("its name points at {resolved:?}, not an /ipfs/ CIDv1"),
        })?;
    crate::index_layout::read(kubo, ipns, cid, &what, document_timeout).await
}

/// The entry of `id` in `index`, checked.
pub fn index_entry(index: &StoreIndex, remote: &str, id: &str) -> Result<IndexEntry, SourceError> {
    let entry = index
        .apps
        .get(id)
        .cloned()
        .ok_or_else(|| SourceError::NotInIndex {
            remote: remote.to_string(),
            id: id.to_string(),
            known: index.apps.keys().cloned().collect(),
        })?;
    if !release::valid_cid_v1(&entry.release) {
        return Err(SourceError::Invalid {
            what: format!("the index entry of {id}"),
            reason: format!("release {:?} is not a CIDv1", entry.release),
        });
    }
    let dates = std::iter::once(entry.published).chain(entry.history.iter().map(|h| h.published));
    if let Some(bad) = dates.into_iter().find(|p| !release::valid_published(*p)) {
        return Err(SourceError::Invalid {
            what: format!("the index entry of {id}"),
            reason: format!("published {bad} is no date (after year 9999)"),
        });
    }
    Ok(entry)
}

/// Fetches the manifest of release root `release` and validates it.
pub async fn fetch_manifest(
    kubo: &Client,
    release: &str,
    limits: ManifestLimits,
    timeout: Duration,
) -> Result<Manifest, SourceError> {
    let what = format!("the manifest of /ipfs/{release}");
    let bytes = fetch_document(
        kubo,
        &format!("/ipfs/{release}/{MANIFEST_NAME}"),
        &what,
        timeout,
    )
    .await?;
    parse_manifest(&bytes, &what, limits)
}

/// Parses and validates manifest bytes.
pub fn parse_manifest(
    bytes: &[u8],
    what: &str,
    limits: ManifestLimits,
) -> Result<Manifest, SourceError> {
    let invalid = |reason: String| SourceError::Invalid {
        what: what.to_string(),
        reason,
    };
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    manifest
        .validate(limits)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(manifest)
}

async fn fetch_document(
    kubo: &Client,
    path: &str,
    what: &str,
    timeout: Duration,
) -> Result<Vec<u8>, SourceError> {
    let fetch = |source| SourceError::Fetch {
        what: what.to_string(),
        source,
    };
    let bytes = match tokio::time::timeout(timeout, kubo.cat(path, MAX_DOCUMENT + 1)).await {
        Ok(result) => result.map_err(fetch)?,
        Err(_) => {
            return Err(fetch(KuboError::Stalled {
                what: format!("fetching {path}"),
                after: timeout,
            }))
        }
    };
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(SourceError::Invalid {
            what: what.to_string(),
            reason: format!("larger than {MAX_DOCUMENT} bytes"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafybeihw2l5dbupktvzyxuildm2sk7l3zr3oajz46uvsj6d6zo2av4mgva";

    #[test]
    fn sources_parse() {
        assert_eq!(
            Source::parse(&format!("/ipfs/{CID}"), None).unwrap(),
            Source::Release(CID.into())
        );
        assert_eq!(
            Source::parse("org.test.Hello", Some("main")).unwrap(),
            Source::Remote {
                remote: "main".into(),
                id: "org.test.Hello".into()
            }
        );
        for (bad, remote) in [
            ("org.test.Hello", None),
            ("/ipfs/nope", None),
            ("../etc", Some("main")),
            ("", Some("main")),
        ] {
            assert!(Source::parse(bad, remote).is_err(), "{bad}");
        }
        assert!(Source::parse(&format!("/ipfs/{CID}"), Some("main")).is_err());
    }

    #[test]
    fn an_index_entry_published_after_year_9999_is_refused() {
        use crate::index::PastRelease;
        let entry = IndexEntry {
            kind: crate::release::Kind::App,
            release: CID.into(),
            sequence: 1,
            version: "1".into(),
            arch: "x86_64".into(),
            branch: "master".into(),
            runtime: None,
            published: 1_700_000_000,
            history: vec![],
        };
        let index = |entry: IndexEntry| {
            let mut index = StoreIndex::empty("main");
            index.apps.insert("org.test.Hello".into(), entry);
            index
        };
        index_entry(&index(entry.clone()), "main", "org.test.Hello").unwrap();
        let mut huge = entry.clone();
        huge.published = u64::MAX;
        let err = index_entry(&index(huge), "main", "org.test.Hello").unwrap_err();
        assert!(err.to_string().contains("18446744073709551615"), "{err}");
        let mut old = entry;
        old.history.push(PastRelease {
            release: CID.into(),
            sequence: 0,
            version: "0".into(),
            published: 1 << 63,
        });
        assert!(index_entry(&index(old), "main", "org.test.Hello").is_err());
    }
}
