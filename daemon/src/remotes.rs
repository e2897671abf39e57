//! Remotes this daemon installs from: adding (trusting), removing, listing.
//!
//! A remote is a name for a store index's IPNS name. Adding one is an act of
//! trust (polkit action `trust-remote`); the index itself is only fetched
//! when apps are installed or updated.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use tracing::info;

use crate::publish::valid_remote_name;
use crate::store::{Remote, Store, StoreError};

/// Why a remote cannot be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("invalid remote name {0:?}: use 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")]
    BadName(String),
    #[error("invalid remote address {0:?}: expected /ipns/ followed by an IPNS key name (k51…)")]
    BadAddress(String),
    #[error("a remote named {0:?} exists already")]
    Exists(String),
    #[error("no remote named {0:?}")]
    Missing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One line of `ListRemotes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub name: String,
    pub ipns: String,
    /// This daemon publishes to it (else: installs from it).
    pub publishing: bool,
    /// Publishing: when its record expires (0: unknown).
    pub record_expires: u64,
    /// Publishing: what is wrong with its record ([`crate::republish::warning`]).
    pub record_warning: Option<String>,
    /// Installing: the highest index sequence seen from it.
    pub highest_sequence: u64,
    /// Installing: when its index was last resolved (0: never).
    pub last_seen: u64,
}

/// The IPNS key name in `address` (`/ipns/k51…` or `k51…`), if it is one:
/// a CIDv1 with the libp2p-key codec.
pub fn parse_address(address: &str) -> Result<String, RemoteError> {
    let name = address
        .trim()
        .strip_prefix("/ipns/")
        .unwrap_or(address.trim());
    match cid::Cid::try_from(name) {
        Ok(c) if c.version() == cid::Version::V1 && c.codec() == 0x72 => Ok(name.to_string()),
        _ => Err(RemoteError::BadAddress(address.to_string())),
    }
}

/// Checks arguments without touching anything (before authorization).
pub fn validate(name: &str, address: Option<&str>) -> Result<(), RemoteError> {
    if !valid_remote_name(name) {
        return Err(RemoteError::BadName(name.to_string()));
    }
    if let Some(address) = address {
        parse_address(address)?;
    }
    Ok(())
}

/// Removes remote `name` and what this daemon kept for it: its peers as
/// peering peers of the node (unless another remote names them) and its
/// mirror, if it was mirrored.
pub async fn remove(manager: &crate::manager::Manager, name: &str) -> Result<(), RemoteError> {
    let (_, orphans) = manager.remotes().remove(name).await?;
    match manager.kubo() {
        Ok((kubo, _)) => {
            if let Err(e) = crate::peering::forget(&kubo, &orphans).await {
                tracing::warn!(remote = name, "cannot drop the remote's peering peers: {e}");
            }
        }
        Err(e) => tracing::warn!(
            remote = name,
            "Kubo is not usable, the remote's peering peers stay: {e}"
        ),
    }
    crate::mirror::forget(manager, name).await;
    Ok(())
}

/// The remotes of one daemon.
pub struct Remotes {
    pub store: Store,
    /// Serializes read-modify-write of the state file.
    pub lock: Arc<Mutex<()>>,
    /// `publishing.republish_interval`, for the record warnings.
    pub republish_interval: std::time::Duration,
}

impl Remotes {
    pub async fn add(&self, name: &str, address: &str) -> Result<String, RemoteError> {
        validate(name, Some(address))?;
        let ipns = parse_address(address)?;
        let _guard = self.lock.lock().await;
        let mut state = self.store.load()?;
        if state.remotes.contains_key(name) {
            return Err(RemoteError::Exists(name.to_string()));
        }
        let added = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        state.remotes.insert(
            name.to_string(),
            Remote {
                ipns: ipns.clone(),
                added,
                ..Default::default()
            },
        );
        self.store.save(&state)?;
        info!(remote = name, %ipns, "remote added");
        Ok(ipns)
    }

    /// Removes remote `name`; returns what was known of it and the peers
    /// no remaining remote names.
    pub async fn remove(&self, name: &str) -> Result<(Remote, Vec<String>), RemoteError> {
        validate(name, None)?;
        let _guard = self.lock.lock().await;
        let mut state = self.store.load()?;
        let Some(removed) = state.remotes.remove(name) else {
            return Err(RemoteError::Missing(name.to_string()));
        };
        self.store.save(&state)?;
        let orphans = removed
            .peers
            .iter()
            .filter(|p| {
                !state
                    .remotes
                    .values()
                    .any(|r| r.peers.iter().any(|q| q.id == p.id))
            })
            .map(|p| p.id.clone())
            .collect();
        info!(remote = name, "remote removed");
        Ok((removed, orphans))
    }

    pub fn list(&self) -> Result<Vec<Listed>, RemoteError> {
        let state = self.store.load()?;
        let mut out: Vec<Listed> = state
            .remotes
            .into_iter()
            .map(|(name, r)| Listed {
                name,
                ipns: r.ipns,
                publishing: false,
                record_expires: 0,
                record_warning: None,
                highest_sequence: r.highest_sequence,
                last_seen: r.last_seen,
            })
            .collect();
        out.extend(state.publishing.into_iter().map(|(name, r)| Listed {
            record_warning: crate::republish::warning(&r, self.republish_interval),
            name,
            ipns: r.ipns,
            publishing: true,
            record_expires: r.expires,
            highest_sequence: 0,
            last_seen: 0,
        }));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_ipns_key_names() {
        let name = "k51qzi5uqu5dlecrl0o05p1krwb4s4ymyvhneulogjz1hwixwmqqka0gic0wtm";
        assert_eq!(parse_address(&format!("/ipns/{name}")).unwrap(), name);
        assert_eq!(parse_address(name).unwrap(), name);
        for bad in [
            "",
            "/ipns/",
            "/ipns/example.org",
            "/ipfs/bafkqaaa",
            "bafkqaaa",
            "/ipns/k51nope",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn add_list_remove_persist() {
        let dir = tempfile::tempdir().unwrap();
        let remotes = Remotes {
            store: Store::new(dir.path()),
            lock: Default::default(),
            republish_interval: std::time::Duration::from_secs(3600),
        };
        let name = "k51qzi5uqu5dlecrl0o05p1krwb4s4ymyvhneulogjz1hwixwmqqka0gic0wtm";
        remotes.add("main", &format!("/ipns/{name}")).await.unwrap();
        assert!(matches!(
            remotes.add("main", name).await,
            Err(RemoteError::Exists(_))
        ));
        let again = Remotes {
            store: Store::new(dir.path()),
            lock: Default::default(),
            republish_interval: std::time::Duration::from_secs(3600),
        };
        assert_eq!(
            again.list().unwrap(),
            vec![Listed {
                name: "main".into(),
                ipns: name.into(),
                publishing: false,
                record_expires: 0,
                record_warning: None,
                highest_sequence: 0,
                last_seen: 0,
            }]
        );
        again.remove("main").await.unwrap();
        assert!(matches!(
            again.remove("main").await,
            Err(RemoteError::Missing(_))
        ));
        assert!(again.list().unwrap().is_empty());
    }
}
