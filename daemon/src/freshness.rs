//! How fresh a remote's store index is, on the installing side: every
//! index is resolved through routing (`name/resolve` with `nocache`, so no
//! cached record hides a newer sequence); the highest index sequence seen
//! from each remote is remembered durably and an index with a lower one (a
//! replayed or stale record) is refused; a remote that cannot be resolved
//! (an expired record, a publisher gone) fails with when it was last seen;
//! and the peers an index names become persistent peering peers of the
//! daemon's node ([`crate::peering`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::index::StoreIndex;
use crate::kubo::Client;
use crate::manager::Manager;
use crate::source::{self, SourceError};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `; last seen …` for an error message.
fn last_seen_text(last_seen: u64) -> String {
    if last_seen == 0 {
        "; never resolved on this machine".into()
    } else {
        format!(
            "; last seen {} (the record may have expired: its publisher republishes it while its daemon runs)",
            humantime_serde::re::humantime::format_rfc3339_seconds(
                UNIX_EPOCH + Duration::from_secs(last_seen)
            )
        )
    }
}

/// Fetches and validates remote `remote`'s store index (IPNS name `ipns`)
/// like [`source::fetch_index`], then refuses it if its sequence is below
/// the highest seen from that remote, and remembers it otherwise.
pub async fn fetch_index(
    manager: &Manager,
    kubo: &Client,
    remote: &str,
    ipns: &str,
) -> Result<StoreIndex, SourceError> {
    let config = manager.config();
    let fetched = source::fetch_index(
        kubo,
        remote,
        ipns,
        config.fetch.resolve_timeout,
        config.fetch.document_timeout,
    )
    .await;
    let store = manager.store();
    let index = match fetched {
        Ok(index) => index,
        Err(SourceError::ResolveFailed {
            remote: name,
            name: key,
            reason,
            ..
        }) => {
            let last_seen = store
                .load()
                .ok()
                .and_then(|s| s.remotes.get(remote).map(|r| r.last_seen))
                .unwrap_or(0);
            return Err(SourceError::ResolveFailed {
                remote: name,
                name: key,
                reason,
                last_seen: last_seen_text(last_seen),
            });
        }
        Err(e) => return Err(e),
    };
    let new_peers = {
        let lock = manager.state_lock();
        let _guard = lock.lock().await;
        let mut state = store.load().map_err(|e| SourceError::Invalid {
            what: "the daemon's state".into(),
            reason: e.to_string(),
        })?;
        // The remote may have been removed or re-added meanwhile: only
        // the one resolved is recorded.
        let Some(entry) = state.remotes.get_mut(remote).filter(|r| r.ipns == ipns) else {
            return Ok(index);
        };
        if index.sequence < entry.highest_sequence {
            warn!(
                remote,
                sequence = index.sequence,
                highest = entry.highest_sequence,
                "refused a stale store index"
            );
            return Err(SourceError::Stale {
                remote: remote.to_string(),
                sequence: index.sequence,
                highest: entry.highest_sequence,
            });
        }
        entry.highest_sequence = index.sequence;
        entry.last_seen = now();
        let changed = entry.peers != index.peers;
        if changed {
            entry.peers = index.peers.clone();
        }
        store.save(&state).map_err(|e| SourceError::Invalid {
            what: "the daemon's state".into(),
            reason: e.to_string(),
        })?;
        changed.then(|| index.peers.clone())
    };
    if let Some(peers) = new_peers {
        match crate::peering::keep(kubo, &peers).await {
            Ok(()) => info!(
                remote,
                peers = peers.len(),
                "the remote's peers are peering peers of the node"
            ),
            Err(e) => warn!(
                remote,
                "cannot keep the remote's peers as peering peers: {e}"
            ),
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_seen_time_is_said() {
        assert!(last_seen_text(0).contains("never"));
        let text = last_seen_text(1_700_000_000);
        assert!(text.contains("last seen 2023-11-14T22:13:20Z"), "{text}");
    }
}
