//! The mirror peers a published remote lists (`flatipfsctl remote mirrors`):
//! kept with the publishing remote in the state file, written into the
//! store index's `peers` after the publisher's own node, and published at
//! once (the index's next sequence, same apps), so that clients make them
//! peering peers of their node.
//!
//! A peer is given as a full multiaddr (`/ip4/…/tcp/…/p2p/ID`) or a bare
//! peer ID; both are checked with the rules clients apply to an index
//! ([`crate::index::valid_peer_id`], [`crate::index::valid_multiaddr`]) and
//! bounded (at most [`MAX_MIRRORS`] peers of [`MAX_PEER_ADDRS`] addresses).

use tracing::info;

use crate::index::{valid_multiaddr, valid_peer_id, IndexPeer, MAX_PEERS, MAX_PEER_ADDRS};
use crate::publish::{valid_remote_name, PublishError, Publisher};
use crate::store::Store;

/// Most mirror peers of one remote (the index also names the publisher).
pub const MAX_MIRRORS: usize = MAX_PEERS - 1;
/// Longest peer argument read, in bytes.
const MAX_ARGUMENT: usize = 512;

/// Why a mirror peer cannot be listed or unlisted.
#[derive(Debug, thiserror::Error)]
pub enum RemoteMirrorError {
    #[error("invalid peer {0:?}: expected a libp2p peer ID (12D3KooW… or Qm…) or a multiaddr ending in /p2p/ID (/ip4/ADDRESS/tcp/PORT/p2p/ID)")]
    BadPeer(String),
    #[error("invalid remote name {0:?}: use 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")]
    BadRemoteName(String),
    #[error("remote {remote:?} lists {MAX_MIRRORS} mirrors already, the most an index can name")]
    TooMany { remote: String },
    #[error("remote {remote:?} lists no mirror {peer}")]
    NotListed { remote: String, peer: String },
    #[error("{0} is this daemon's own node, which the index names already")]
    Own(String),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// `peer` parsed: its ID and the address given with it, if any.
pub fn parse_peer(peer: &str) -> Result<(String, Option<String>), RemoteMirrorError> {
    let bad = || RemoteMirrorError::BadPeer(peer.chars().take(80).collect());
    if peer.len() > MAX_ARGUMENT {
        return Err(bad());
    }
    let peer = peer.trim();
    if !peer.starts_with('/') {
        return valid_peer_id(peer)
            .then(|| (peer.to_string(), None))
            .ok_or_else(bad);
    }
    let (addr, id) = peer.rsplit_once("/p2p/").ok_or_else(bad)?;
    if !valid_peer_id(id) || !valid_multiaddr(addr) {
        return Err(bad());
    }
    Ok((id.to_string(), Some(addr.to_string())))
}

/// Checks arguments without touching anything (before authorization).
pub fn validate(remote: &str, peer: Option<&str>) -> Result<(), RemoteMirrorError> {
    if !valid_remote_name(remote) {
        return Err(RemoteMirrorError::BadRemoteName(remote.to_string()));
    }
    if let Some(peer) = peer {
        parse_peer(peer)?;
    }
    Ok(())
}

/// The mirror peers published remote `remote` lists.
pub fn list(store: &Store, remote: &str) -> Result<Vec<IndexPeer>, RemoteMirrorError> {
    validate(remote, None)?;
    let state = store.load().map_err(PublishError::from)?;
    state
        .publishing
        .get(remote)
        .map(|r| r.mirrors.clone())
        .ok_or_else(|| PublishError::NoSuchRemote(remote.to_string()).into())
}

impl Publisher {
    /// Lists `peer` as a mirror of `remote` (an address given for a peer
    /// listed already is added to its addresses) and publishes the index.
    /// Returns the peer ID.
    pub async fn add_mirror(&self, remote: &str, peer: &str) -> Result<String, RemoteMirrorError> {
        validate(remote, Some(peer))?;
        let (id, addr) = parse_peer(peer)?;
        let (own, _) = self.kubo.id().await.map_err(PublishError::from)?;
        if id == own {
            return Err(RemoteMirrorError::Own(id));
        }
        self.change_mirrors(remote, |mirrors| {
            let full = mirrors.len() >= MAX_MIRRORS;
            match mirrors.iter_mut().find(|m| m.id == id) {
                Some(known) => {
                    if let Some(addr) = &addr {
                        if !known.addrs.contains(addr) {
                            known.addrs.insert(0, addr.clone());
                            known.addrs.truncate(MAX_PEER_ADDRS);
                        }
                    }
                }
                None if full => {
                    return Err(RemoteMirrorError::TooMany {
                        remote: remote.to_string(),
                    })
                }
                None => mirrors.push(IndexPeer {
                    id: id.clone(),
                    addrs: addr.clone().into_iter().collect(),
                }),
            }
            Ok(())
        })
        .await?;
        info!(remote, peer = %id, "mirror listed");
        Ok(id)
    }

    /// Stops listing mirror `peer` (an ID or an address ending in it) of
    /// `remote` and publishes the index.
    pub async fn remove_mirror(&self, remote: &str, peer: &str) -> Result<(), RemoteMirrorError> {
        validate(remote, Some(peer))?;
        let (id, _) = parse_peer(peer)?;
        self.change_mirrors(remote, |mirrors| {
            let before = mirrors.len();
            mirrors.retain(|m| m.id != id);
            if mirrors.len() == before {
                return Err(RemoteMirrorError::NotListed {
                    remote: remote.to_string(),
                    peer: id.clone(),
                });
            }
            Ok(())
        })
        .await?;
        info!(remote, peer = %id, "mirror unlisted");
        Ok(())
    }

    /// Changes `remote`'s mirror list with `edit`, then writes the index
    /// with the new `peers` (next index sequence) and publishes its record.
    async fn change_mirrors(
        &self,
        remote: &str,
        edit: impl FnOnce(&mut Vec<IndexPeer>) -> Result<(), RemoteMirrorError>,
    ) -> Result<(), RemoteMirrorError> {
        let _guard = self.lock.lock().await;
        let mut state = self.store.load().map_err(PublishError::from)?;
        let mut entry = state
            .publishing
            .get(remote)
            .cloned()
            .ok_or_else(|| PublishError::NoSuchRemote(remote.to_string()))?;
        edit(&mut entry.mirrors)?;
        let mut index = self.read_index(remote, &entry.index).await?;
        index.sequence += 1;
        index.peers = self.peers(&entry.mirrors).await?;
        entry.index = self.write_index(&index).await?;
        self.publish_record(&mut state, remote, &mut entry).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "12D3KooWLsSWaRsoCejZ6RMsGqdftpKbohczNqs3jvNfPgRwrMp2";

    #[test]
    fn peers_are_ids_or_addresses_ending_in_one() {
        assert_eq!(parse_peer(ID).unwrap(), (ID.to_string(), None));
        assert_eq!(
            parse_peer(&format!("/ip4/192.0.2.1/tcp/4001/p2p/{ID}")).unwrap(),
            (ID.to_string(), Some("/ip4/192.0.2.1/tcp/4001".to_string()))
        );
        let long = format!("/dns/{}/tcp/1/p2p/{ID}", "a".repeat(600));
        for bad in [
            "",
            "12D3KooW",
            "/ip4/192.0.2.1/tcp/4001",
            &format!("/ip4/192.0.2.1/tcp/4001/p2p/{ID}x"),
            &format!("/ip4/999.0.2.1/tcp/4001/p2p/{ID}"),
            &format!("/p2p-circuit/p2p/{ID}"),
            &format!("/unix/tmp/sock/p2p/{ID}"),
            &long,
        ] {
            assert!(
                matches!(parse_peer(bad), Err(RemoteMirrorError::BadPeer(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            validate("Bad Name", Some(ID)),
            Err(RemoteMirrorError::BadRemoteName(_))
        ));
    }
}
