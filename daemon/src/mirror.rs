//! Mirroring: following a trusted remote so that this daemon's Kubo node
//! keeps every current release it names (and the configured number of past
//! ones), with its store index and catalog, pinned and therefore provided
//! (Kubo's `all` provide strategy announces every block it stores). Clients
//! then install and update from the mirror while the publisher is offline.
//!
//! Owns the mirror list in the daemon's state, the sync (resolve the index
//! through [`crate::freshness`], pin what it names, unpin what fell out), the
//! loop that syncs every `mirror.interval` and at once after an add, and the
//! clean-up when a mirror or its remote is removed. Pins are named
//! `flatipfs-mirror REMOTE WHAT`; a release pinned by someone else before
//! (an installed app, a publication) is never unpinned by the mirror.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::kubo::{Client, KuboError};
use crate::manager::Manager;
use crate::remotes::{self, RemoteError};
use crate::source::SourceError;
use crate::store::StoreError;

/// The name prefix of the mirror's pins.
pub const PIN_PREFIX: &str = "flatipfs-mirror ";
/// Most past releases per app a mirror keeps.
pub const MAX_HISTORY: usize = 16;

/// One remote this daemon mirrors, as the state file keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mirrored {
    /// When it was added (seconds since the epoch).
    pub added: u64,
    /// Past releases per app kept; `None`: `mirror.history`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<usize>,
    /// When the last sync finished well (0: never).
    pub last_sync: u64,
    /// Why the last sync failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The store index sequence last synced.
    pub sequence: u64,
    /// What is held: release roots, the index, the catalog.
    pub held: Vec<Held>,
    /// Bytes of everything held (shared blocks counted once).
    pub bytes: u64,
}

/// One document or release a mirror keeps pinned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub cid: String,
    /// `index`, `catalog` or `ID VERSION`.
    pub what: String,
    /// Pinned by the mirror (else it was pinned already and is left alone).
    pub owned: bool,
}

impl Held {
    fn is_release(&self) -> bool {
        self.what != "index" && self.what != "catalog"
    }
}

/// Why a mirror cannot be added, removed or synced.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(
        "no trusted remote named {0:?}: add it first with `flatipfsctl remote add {0} /ipns/…`"
    )]
    NoSuchRemote(String),
    #[error("remote {0:?} is mirrored already")]
    Exists(String),
    #[error("remote {0:?} is not mirrored")]
    NotMirrored(String),
    #[error("history {0} is over the limit of {MAX_HISTORY} past releases per app")]
    BadHistory(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("mirroring remote {remote:?}: {source}")]
    Kubo {
        remote: String,
        #[source]
        source: KuboError,
    },
}

/// Wakes the mirror loop (after an add).
#[derive(Default)]
pub struct Wake(Notify);

impl Wake {
    pub fn now(&self) {
        self.0.notify_one();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks arguments without touching anything (before authorization).
pub fn validate(remote: &str, history: Option<u32>) -> Result<(), MirrorError> {
    remotes::validate(remote, None)?;
    if let Some(h) = history.filter(|h| *h as usize > MAX_HISTORY) {
        return Err(MirrorError::BadHistory(h));
    }
    Ok(())
}

/// Starts mirroring trusted remote `remote`; the first sync starts at once.
pub async fn add(manager: &Manager, remote: &str, history: Option<u32>) -> Result<(), MirrorError> {
    validate(remote, history)?;
    {
        let lock = manager.state_lock();
        let _guard = lock.lock().await;
        let store = manager.store();
        let mut state = store.load()?;
        if !state.remotes.contains_key(remote) {
            return Err(MirrorError::NoSuchRemote(remote.to_string()));
        }
        if state.mirrors.contains_key(remote) {
            return Err(MirrorError::Exists(remote.to_string()));
        }
        state.mirrors.insert(
            remote.to_string(),
            Mirrored {
                added: now(),
                history: history.map(|h| h as usize),
                ..Default::default()
            },
        );
        store.save(&state)?;
    }
    info!(remote, "mirroring");
    manager.mirrors.now();
    Ok(())
}

/// Stops mirroring `remote` and unpins what the mirror pinned.
pub async fn remove(manager: &Manager, remote: &str) -> Result<(), MirrorError> {
    remotes::validate(remote, None)?;
    let removed = {
        let lock = manager.state_lock();
        let _guard = lock.lock().await;
        let store = manager.store();
        let mut state = store.load()?;
        let removed = state
            .mirrors
            .remove(remote)
            .ok_or_else(|| MirrorError::NotMirrored(remote.to_string()))?;
        store.save(&state)?;
        removed
    };
    release(manager, remote, &removed.held).await;
    info!(remote, "no longer mirrored");
    Ok(())
}

/// Stops mirroring `remote` if it is mirrored (its remote was removed).
pub async fn forget(manager: &Manager, remote: &str) {
    match remove(manager, remote).await {
        Ok(()) | Err(MirrorError::NotMirrored(_)) => {}
        Err(e) => warn!(remote, "cannot stop mirroring the removed remote: {e}"),
    }
}

/// Unpins what the mirror of `remote` owns and no installed app keeps.
async fn release(manager: &Manager, remote: &str, held: &[Held]) {
    let Ok((kubo, _)) = manager.kubo() else {
        warn!(remote, "Kubo is not usable: the mirror's pins stay");
        return;
    };
    let kept = kept_by_apps(manager);
    let still = other_mirrors_hold(manager, remote);
    for h in held
        .iter()
        .filter(|h| h.owned && !kept.contains(&h.cid) && !still.contains(&h.cid))
    {
        if let Err(e) = kubo.pin_rm(&h.cid).await {
            warn!(remote, cid = %h.cid, "cannot unpin: {e}");
        }
    }
}

/// Release roots installed apps use.
fn kept_by_apps(manager: &Manager) -> HashSet<String> {
    manager
        .store()
        .load()
        .map(|s| {
            s.apps
                .values()
                .flat_map(|a| a.deployments.iter().map(|d| d.release.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// CIDs the other mirrors hold.
fn other_mirrors_hold(manager: &Manager, remote: &str) -> HashSet<String> {
    manager
        .store()
        .load()
        .map(|s| {
            s.mirrors
                .iter()
                .filter(|(name, _)| name.as_str() != remote)
                .flat_map(|(_, m)| m.held.iter().map(|h| h.cid.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The mirrored remotes, by name.
pub fn list(manager: &Manager) -> Result<BTreeMap<String, Mirrored>, MirrorError> {
    Ok(manager.store().load()?.mirrors)
}

/// What the mirror of a remote must hold: `(cid, what)`, the index first.
fn wanted(
    index_cid: &str,
    index: &crate::index::StoreIndex,
    history: usize,
) -> Vec<(String, String)> {
    let mut out = vec![(index_cid.to_string(), "index".to_string())];
    if let Some(catalog) = &index.appstream {
        out.push((catalog.clone(), "catalog".into()));
    }
    for (id, entry) in &index.apps {
        out.push((entry.release.clone(), format!("{id} {}", entry.version)));
        for past in entry.history.iter().take(history) {
            out.push((past.release.clone(), format!("{id} {}", past.version)));
        }
    }
    let mut seen = HashSet::new();
    out.retain(|(cid, _)| seen.insert(cid.clone()));
    out
}

/// Syncs mirror `remote` once: resolves its index (fresh, stale ones
/// refused, its peers kept as peering peers), pins what it names, unpins
/// what fell out, and records the outcome.
pub async fn sync(manager: &Manager, remote: &str) -> Result<(), MirrorError> {
    let outcome = sync_inner(manager, remote).await;
    let lock = manager.state_lock();
    let _guard = lock.lock().await;
    let store = manager.store();
    let mut state = store.load()?;
    let Some(entry) = state.mirrors.get_mut(remote) else {
        // Removed meanwhile: what this sync pinned is released.
        if let Ok(done) = &outcome {
            drop(_guard);
            release(manager, remote, &done.held).await;
        }
        return Ok(());
    };
    match &outcome {
        Ok(done) => {
            entry.last_sync = now();
            entry.last_error = None;
            entry.sequence = done.sequence;
            entry.held = done.held.clone();
            entry.bytes = done.bytes;
        }
        Err(e) => entry.last_error = Some(e.to_string()),
    }
    store.save(&state)?;
    drop(_guard);
    match outcome {
        Ok(done) => {
            let gone: Vec<Held> = done.dropped;
            release(manager, remote, &gone).await;
            info!(
                remote,
                sequence = done.sequence,
                releases = done.held.iter().filter(|h| h.is_release()).count(),
                bytes = done.bytes,
                "mirror synced"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

struct Synced {
    sequence: u64,
    held: Vec<Held>,
    dropped: Vec<Held>,
    bytes: u64,
}

async fn sync_inner(manager: &Manager, remote: &str) -> Result<Synced, MirrorError> {
    let kubo_error = |source| MirrorError::Kubo {
        remote: remote.to_string(),
        source,
    };
    let (kubo, _) = manager.kubo().map_err(kubo_error)?;
    let config = manager.config();
    let state = manager.store().load()?;
    let ipns = state
        .remotes
        .get(remote)
        .map(|r| r.ipns.clone())
        .ok_or_else(|| MirrorError::NoSuchRemote(remote.to_string()))?;
    let mirrored = state
        .mirrors
        .get(remote)
        .cloned()
        .ok_or_else(|| MirrorError::NotMirrored(remote.to_string()))?;
    let history = mirrored.history.unwrap_or(config.mirror.history);
    let index = crate::freshness::fetch_index(manager, &kubo, remote, &ipns).await?;
    // The document the name points at now (resolved again: the index's
    // CID is what clients fetch first).
    let resolved = kubo
        .name_resolve(&ipns, config.fetch.resolve_timeout)
        .await
        .map_err(kubo_error)?;
    let index_cid = resolved
        .strip_prefix("/ipfs/")
        .filter(|c| crate::release::valid_cid_v1(c))
        .ok_or_else(|| SourceError::Invalid {
            what: format!("the store index of remote {remote:?}"),
            reason: format!("its name points at {resolved:?}, not an /ipfs/ CIDv1"),
        })?
        .to_string();
    let mut held = Vec::new();
    for (cid, what) in wanted(&index_cid, &index, history) {
        let before = mirrored.held.iter().find(|h| h.cid == cid);
        let owned = pin(&kubo, remote, &cid, &what, before, &config).await?;
        held.push(Held { cid, what, owned });
    }
    let dropped = mirrored
        .held
        .into_iter()
        .filter(|h| !held.iter().any(|k| k.cid == h.cid))
        .collect();
    let cids: Vec<&str> = held.iter().map(|h| h.cid.as_str()).collect();
    let bytes = match kubo.dag_stat(&cids).await {
        Ok(stat) => stat.total_size,
        Err(e) => {
            warn!(remote, "cannot measure the mirror: {e}");
            0
        }
    };
    Ok(Synced {
        sequence: index.sequence,
        held,
        dropped,
        bytes,
    })
}

/// Makes sure `cid` is pinned; returns whether the mirror owns the pin.
async fn pin(
    kubo: &Client,
    remote: &str,
    cid: &str,
    what: &str,
    before: Option<&Held>,
    config: &crate::config::Config,
) -> Result<bool, MirrorError> {
    let kubo_error = |source| MirrorError::Kubo {
        remote: remote.to_string(),
        source,
    };
    let pinned = kubo.is_pinned(cid).await.map_err(kubo_error)?;
    if pinned {
        // Ours from an earlier sync, or someone else's.
        return Ok(before.is_some_and(|h| h.owned));
    }
    info!(remote, %cid, what, "mirror: pinning");
    kubo.pin_add_progress(
        cid,
        &format!("{PIN_PREFIX}{remote} {what}"),
        config.fetch.stall_timeout,
        |_, _| {},
    )
    .await
    .map_err(kubo_error)?;
    Ok(true)
}

/// How soon a failed sync is tried again (or `mirror.interval`, if shorter).
const RETRY: Duration = Duration::from_secs(30);

/// Syncs every mirrored remote, for ever: every `mirror.interval`, at
/// start once Kubo is usable (a restarted daemon catches up), at once after
/// an add, and [`RETRY`] after a sync failed.
pub async fn run(manager: Arc<Manager>) {
    loop {
        let names: Vec<String> = match manager.store().load() {
            Ok(state) => state.mirrors.into_keys().collect(),
            Err(e) => {
                warn!("mirrors: {e}");
                Vec::new()
            }
        };
        if !names.is_empty() && manager.kubo().is_err() {
            // Starting, or restarting: not a failure of the mirror.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut failed = false;
        for name in names {
            if let Err(e) = sync(&manager, &name).await {
                warn!(remote = %name, "mirror sync failed: {e}");
                failed = true;
            }
        }
        let interval = manager.config().mirror.interval;
        let wait = if failed {
            interval.min(RETRY)
        } else {
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = manager.mirrors.0.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexEntry, PastRelease, StoreIndex};

    const A: &str = "bafybeihw2l5dbupktvzyxuildm2sk7l3zr3oajz46uvsj6d6zo2av4mgva";
    const B: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    const C: &str = "bafkqaaa";

    #[test]
    fn a_mirror_wants_the_index_current_releases_and_its_history() {
        let mut index = StoreIndex::empty("main");
        index.apps.insert(
            "org.test.Hello".into(),
            IndexEntry {
                kind: crate::release::Kind::App,
                release: A.into(),
                sequence: 3,
                version: "3".into(),
                arch: "x86_64".into(),
                branch: "master".into(),
                runtime: None,
                published: 0,
                history: vec![
                    PastRelease {
                        release: B.into(),
                        sequence: 2,
                        version: "2".into(),
                        published: 0,
                    },
                    PastRelease {
                        release: C.into(),
                        sequence: 1,
                        version: "1".into(),
                        published: 0,
                    },
                ],
            },
        );
        let cids = |h| {
            wanted("bafyindex", &index, h)
                .into_iter()
                .map(|(c, _)| c)
                .collect::<Vec<_>>()
        };
        assert_eq!(cids(0), vec!["bafyindex", A]);
        assert_eq!(cids(1), vec!["bafyindex", A, B]);
        assert_eq!(cids(5), vec!["bafyindex", A, B, C]);
        assert!(validate("main", Some(16)).is_ok());
        assert!(matches!(
            validate("main", Some(17)),
            Err(MirrorError::BadHistory(17))
        ));
        assert!(validate("../x", None).is_err());
    }

    #[test]
    fn state_without_mirrors_reads_and_round_trips() {
        let state: crate::store::State = serde_json::from_str("{}").unwrap();
        assert!(state.mirrors.is_empty());
        let mut state = state;
        state.mirrors.insert(
            "main".into(),
            Mirrored {
                held: vec![Held {
                    cid: A.into(),
                    what: "org.test.Hello 1".into(),
                    owned: true,
                }],
                ..Default::default()
            },
        );
        let text = serde_json::to_string(&state).unwrap();
        let back: crate::store::State = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);
    }
}
