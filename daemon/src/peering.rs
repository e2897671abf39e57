//! The peers a remote's store index names (its publisher and mirrors) as
//! peering peers of the daemon's Kubo node: added to the running node
//! (`swarm/peering/add`) and to its configuration (`Peering.Peers`, which
//! Kubo applies at every start; a live addition alone is lost on restart).
//! Peers already configured are merged, not replaced.

use serde_json::{json, Value};

use crate::index::IndexPeer;
use crate::kubo::{Client, KuboError};

/// Most peering peers this daemon writes into the node's configuration
/// (every remote's peers together), so that hostile indexes cannot grow it
/// without bound.
pub const MAX_PEERING: usize = 64;

/// Makes `peers` peering peers of the node, live and persistent.
pub async fn keep(kubo: &Client, peers: &[IndexPeer]) -> Result<(), KuboError> {
    let (own, _) = kubo.id().await?;
    let mut configured = match kubo.config_get("Peering.Peers").await? {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let mut changed = false;
    for peer in peers.iter().filter(|p| p.id != own) {
        let entry = json!({ "ID": peer.id, "Addrs": peer.addrs });
        let full = configured.len() >= MAX_PEERING;
        match configured
            .iter_mut()
            .find(|p| p.get("ID").and_then(Value::as_str) == Some(peer.id.as_str()))
        {
            Some(existing) if *existing == entry => {}
            Some(existing) => {
                *existing = entry;
                changed = true;
            }
            None if !full => {
                configured.push(entry);
                changed = true;
            }
            None => {}
        }
        // Live, so that no restart is needed; one address is enough for
        // Kubo to know the peer (it learns the others).
        if let Some(addr) = peer.addrs.first() {
            if let Err(e) = kubo.peering_add(&format!("{addr}/p2p/{}", peer.id)).await {
                tracing::warn!(peer = %peer.id, "cannot add a peering peer to the running node: {e}");
            }
        }
    }
    if changed {
        kubo.config_set_json("Peering.Peers", &Value::Array(configured))
            .await?;
    }
    Ok(())
}

/// Stops keeping `ids` as peering peers of the node (a remote that named
/// them was removed and no other names them): out of `Peering.Peers` and
/// of the running node's peering.
pub async fn forget(kubo: &Client, ids: &[String]) -> Result<(), KuboError> {
    if ids.is_empty() {
        return Ok(());
    }
    if let Some(Value::Array(configured)) = kubo.config_get("Peering.Peers").await? {
        let kept: Vec<Value> = configured
            .iter()
            .filter(|p| {
                !p.get("ID")
                    .and_then(Value::as_str)
                    .is_some_and(|id| ids.iter().any(|i| i == id))
            })
            .cloned()
            .collect();
        if kept.len() != configured.len() {
            kubo.config_set_json("Peering.Peers", &Value::Array(kept))
                .await?;
        }
    }
    for id in ids {
        if let Err(e) = kubo.peering_rm(id).await {
            tracing::debug!(peer = %id, "not a peering peer of the running node: {e}");
        }
    }
    Ok(())
}

/// Closes the node's connections to every peer the remotes' indexes name,
/// so that Kubo's peering dials them again at once. A background fetch
/// that stalls calls it: with Kubo 0.43.1, after a peer restarts, the
/// connection to it can stay up while bitswap no longer sends it any want
/// (measured: a peer holding the block, connected, never asked until the
/// connection is made anew).
pub async fn renew(kubo: &Client, peers: &[IndexPeer]) {
    let own = kubo.id().await.map(|(id, _)| id).unwrap_or_default();
    for peer in peers.iter().filter(|p| p.id != own) {
        if let Some(addr) = peer.addrs.first() {
            if let Err(e) = kubo
                .swarm_disconnect(&format!("{addr}/p2p/{}", peer.id))
                .await
            {
                tracing::debug!(peer = %peer.id, "no connection renewed: {e}");
            }
        }
    }
}
