//! A store index on IPFS, in either layout (`docs/release-format.md`,
//! "Store index").
//!
//! Owns: reading the index a remote's name points at — a directory holding
//! [`ROOT_NAME`] is the sharded layout (schema 2,
//! [`flatipfs_format::index_shards`]), anything else the single schema 1
//! document — each document fetched within its bound and time and checked
//! before it is used; the shards already read, by CID, one set per reader
//! (a remote's name), so that a check fetches only the root and the shards
//! whose CID changed; and, for a publisher, writing an index as one pinned
//! directory of its root and shard documents.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use flatipfs_format::index_shards::{
    self, IndexRoot, IndexShard, MAX_ROOT_BYTES, MAX_SHARD_BYTES, ROOT_NAME, SHARDS_DIR,
};
use futures_util::{StreamExt, TryStreamExt};

use crate::index::{IndexLimits, StoreIndex};
use crate::kubo::{AddOptions, AddPart, Client, KuboError};
use crate::release::valid_cid_v1;
use crate::source::SourceError;

/// The most bytes an index takes in all (the single document, or the root
/// and all its shards together).
pub const MAX_INDEX_BYTES: u64 = 64 << 20;
/// Largest listing of the directory a name points at.
const MAX_LISTING: u64 = 64 << 10;
/// Shards fetched at once.
const CONCURRENT: usize = 16;

/// A shard already read and its size.
struct Seen {
    shard: IndexShard,
    bytes: u64,
}

/// Shard CID → the shard.
type Shards = HashMap<String, Arc<Seen>>;

/// Reader (a remote's IPNS name) → the shards it read last.
static SEEN: LazyLock<Mutex<HashMap<String, Shards>>> = LazyLock::new(Default::default);

/// Reads and checks the index with root `cid` (what a name of remote
/// `remote` resolved to) for reader `reader`; `what` names it in errors;
/// each document must arrive within `timeout`. Nothing of an invalid index
/// is used: the whole index passes [`StoreIndex::validate`], every shard
/// [`IndexShard::validate`] at the place it was reached.
pub async fn read(
    kubo: &Client,
    reader: &str,
    cid: &str,
    what: &str,
    timeout: Duration,
) -> Result<StoreIndex, SourceError> {
    let limits = IndexLimits::default();
    let invalid = |reason: String| SourceError::Invalid {
        what: what.to_string(),
        reason,
    };
    let links = kubo
        .ls(&format!("/ipfs/{cid}"), MAX_LISTING, timeout)
        .await
        .map_err(|source| SourceError::Fetch {
            what: what.to_string(),
            source,
        })?;
    let Some(root_link) = links.iter().find(|l| l.name == ROOT_NAME) else {
        // Schema 1: one document.
        let bytes = fetch(kubo, cid, MAX_INDEX_BYTES, what, timeout).await?;
        let index: StoreIndex =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        index.validate(limits).map_err(|e| invalid(e.to_string()))?;
        return Ok(index);
    };
    if !valid_cid_v1(&root_link.hash) {
        return Err(invalid(format!(
            "its {ROOT_NAME} is {:?}, not a CIDv1",
            root_link.hash
        )));
    }
    let bytes = fetch(kubo, &root_link.hash, MAX_ROOT_BYTES, what, timeout).await?;
    let root: IndexRoot = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    root.validate(limits).map_err(|e| invalid(e.to_string()))?;

    let previous = SEEN
        .lock()
        .expect("the shard cache is never poisoned")
        .get(reader)
        .cloned()
        .unwrap_or_default();
    let mut kept = Shards::new();
    let mut apps = BTreeMap::new();
    let mut total = bytes.len() as u64;
    let mut level: Vec<(String, String)> = root
        .shards
        .iter()
        .map(|(digit, cid)| (digit.clone(), cid.clone()))
        .collect();
    let mut fetched = 0usize;
    while !level.is_empty() {
        let read: Vec<(String, String, Arc<Seen>)> = futures_util::stream::iter(level)
            .map(|(prefix, cid)| {
                let known = previous.get(&cid).cloned();
                async move {
                    if let Some(seen) = known {
                        return Ok((prefix, cid, seen));
                    }
                    let what = format!("shard {prefix:?} of {what}");
                    let bytes = fetch(kubo, &cid, MAX_SHARD_BYTES, &what, timeout).await?;
                    let shard: IndexShard =
                        serde_json::from_slice(&bytes).map_err(|e| SourceError::Invalid {
                            what,
                            reason: e.to_string(),
                        })?;
                    let bytes = bytes.len() as u64;
                    Ok::<_, SourceError>((prefix, cid, Arc::new(Seen { shard, bytes })))
                }
            })
            .buffer_unordered(CONCURRENT)
            .try_collect()
            .await?;
        let mut next = Vec::new();
        for (prefix, cid, seen) in read {
            seen.shard
                .validate(&root.remote, &prefix, root.sequence, limits)
                .map_err(|e| invalid(e.to_string()))?;
            total += seen.bytes;
            if total > MAX_INDEX_BYTES {
                return Err(invalid(format!(
                    "its shards are larger than {MAX_INDEX_BYTES} bytes in all"
                )));
            }
            if apps.len() + seen.shard.apps.len() > limits.max_apps {
                return Err(invalid(format!(
                    "its shards list more than {} ids",
                    limits.max_apps
                )));
            }
            if !previous.contains_key(&cid) {
                fetched += 1;
            }
            apps.extend(seen.shard.apps.clone());
            next.extend(
                seen.shard
                    .shards
                    .iter()
                    .map(|(digit, cid)| (format!("{prefix}{digit}"), cid.clone())),
            );
            kept.insert(cid, seen);
        }
        level = next;
    }
    let index = root.index(apps);
    index.validate(limits).map_err(|e| invalid(e.to_string()))?;
    tracing::debug!(
        reader,
        sequence = index.sequence,
        shards = kept.len(),
        fetched,
        "store index read"
    );
    SEEN.lock()
        .expect("the shard cache is never poisoned")
        .insert(reader.to_string(), kept);
    Ok(index)
}

/// The file `cid`, refused if larger than `limit` bytes or later than
/// `timeout`.
async fn fetch(
    kubo: &Client,
    cid: &str,
    limit: u64,
    what: &str,
    timeout: Duration,
) -> Result<Vec<u8>, SourceError> {
    let path = format!("/ipfs/{cid}");
    let fetch = |source| SourceError::Fetch {
        what: what.to_string(),
        source,
    };
    let bytes = match tokio::time::timeout(timeout, kubo.cat_bounded(&path, limit)).await {
        Ok(result) => result.map_err(fetch)?,
        Err(_) => {
            return Err(fetch(KuboError::Stalled {
                what: format!("fetching {path}"),
                after: timeout,
            }))
        }
    };
    if bytes.len() as u64 > limit {
        return Err(SourceError::Invalid {
            what: what.to_string(),
            reason: format!("larger than {limit} bytes"),
        });
    }
    Ok(bytes)
}

/// Why an index could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Kubo(#[from] KuboError),
    #[error("{0}")]
    Internal(String),
}

/// Adds `index` in the sharded layout, pinned: a directory of
/// [`ROOT_NAME`] and [`SHARDS_DIR`]`/<prefix>.json`. Returns its CID.
pub async fn write(kubo: &Client, index: &StoreIndex) -> Result<String, WriteError> {
    const DIR: &str = "index";
    let (root, shards) = index_shards::shard(index);
    let mut parts = vec![
        AddPart::Directory { name: DIR.into() },
        AddPart::Bytes {
            name: format!("{DIR}/{ROOT_NAME}"),
            data: root,
        },
    ];
    if !shards.is_empty() {
        parts.push(AddPart::Directory {
            name: format!("{DIR}/{SHARDS_DIR}"),
        });
    }
    parts.extend(shards.iter().map(|shard| AddPart::Bytes {
        name: format!("{DIR}/{SHARDS_DIR}/{}.json", shard.prefix),
        data: shard.bytes.clone(),
    }));
    let lines = kubo.add(parts, AddOptions { pin: true }, |_| {}).await?;
    let added: HashMap<&str, &str> = lines
        .iter()
        .filter_map(|l| Some((l.name.as_str(), l.hash.as_deref()?)))
        .collect();
    // The root names each shard by the CID computed here: it must be the
    // one Kubo gave the file.
    for shard in &shards {
        let name = format!("{DIR}/{SHARDS_DIR}/{}.json", shard.prefix);
        if added.get(name.as_str()) != Some(&shard.cid.as_str()) {
            return Err(WriteError::Internal(format!(
                "Kubo added shard {} as {:?}, not {} as the index names it",
                shard.prefix,
                added.get(name.as_str()),
                shard.cid
            )));
        }
    }
    added
        .get(DIR)
        .map(|cid| cid.to_string())
        .ok_or_else(|| WriteError::Internal("Kubo returned no CID for the index".into()))
}
