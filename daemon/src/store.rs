//! The daemon's persistent state, one JSON file under the state directory.
//!
//! Written so that a crash at any instant leaves either the old or the new
//! state: write a temporary file, fsync it, rename it over the old one, fsync
//! the directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the daemon must remember across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Remotes this daemon publishes to, by name.
    pub publishing: BTreeMap<String, PublishingRemote>,
    /// Remotes this daemon installs from (trusted by an admin), by name.
    pub remotes: BTreeMap<String, Remote>,
    /// Apps and runtimes installed by this daemon, by id.
    pub apps: BTreeMap<String, InstalledApp>,
    /// The automatic update policy set over D-Bus (overrides the config).
    #[serde(default)]
    pub automatic_update_policy: Option<crate::updates::Policy>,
    /// When the scheduler last checked (seconds since the epoch; 0: never).
    #[serde(default)]
    pub last_automatic_check: u64,
    /// Remotes this daemon mirrors (follows, keeping their releases pinned
    /// and provided), by the name of the trusted remote.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mirrors: BTreeMap<String, crate::mirror::Mirrored>,
}

/// How far an install got; see `docs/architecture.md` ("crash safety").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Being laid out: a daemon that restarts in this phase removes it.
    Installing,
    /// Laid out and active: mounted at every start, fetched until complete.
    Ready,
}

/// An app or runtime this daemon installed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledApp {
    pub id: String,
    pub kind: crate::release::Kind,
    pub arch: String,
    pub branch: String,
    /// The remote it came from; none for a fixed `/ipfs/` release.
    #[serde(default)]
    pub remote: Option<String>,
    /// The IPNS name (`k51…`) that remote had at install: the publisher
    /// this app trusts. Updates come only from a remote with this name.
    /// Missing in state files written before it existed: filled in at
    /// start-up from the remote's current name (unknown if it is gone).
    #[serde(default)]
    pub remote_ipns: Option<String>,
    /// What the install was asked for (`REMOTE APP_ID` or `/ipfs/CID`).
    pub source: String,
    pub phase: Phase,
    /// The release root in use.
    pub current: String,
    /// Every release kept on this machine, oldest first.
    pub deployments: Vec<Deployment>,
    /// The runtime it needs (`ID/ARCH/BRANCH`), for apps.
    #[serde(default)]
    pub runtime: Option<String>,
    /// When it was installed (seconds since the epoch).
    pub installed: u64,
    /// The release rolled back from: automatic updates skip it (and
    /// anything not newer) until a higher sequence is published.
    #[serde(default)]
    pub held: Option<Held>,
    /// This app's automatic update policy (overrides the daemon's).
    #[serde(default)]
    pub update_policy: Option<crate::updates::Policy>,
    /// The newest release the last check found, if newer than the current one.
    #[serde(default)]
    pub available: Option<Available>,
    /// When its remote was last checked (seconds since the epoch).
    #[serde(default)]
    pub last_checked: u64,
    /// A newer release held back because it grants the app new
    /// permissions: automatic updates skip it, a manual update needs
    /// `allow-new-permissions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_held: Option<PermissionsHeld>,
}

/// A release held back because it widens the app's sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionsHeld {
    pub release: String,
    pub version: String,
    pub sequence: u64,
    /// What it would grant beyond the current release, for people.
    pub changes: Vec<String>,
}

/// A release rolled back from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub release: String,
    pub sequence: u64,
}

/// A newer release found by a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Available {
    pub release: String,
    pub version: String,
    pub sequence: u64,
}

/// One release of an installed app kept on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Release root CID.
    pub release: String,
    pub version: String,
    /// The store index sequence it was published at (0: unknown).
    pub sequence: u64,
    /// Bytes of the release's DAG.
    pub total_bytes: u64,
    /// Every block is local and pinned.
    pub complete: bool,
    /// When it was deployed here (seconds since the epoch).
    pub deployed: u64,
    /// Kept whatever the retention says (`flatipfsctl pin`).
    #[serde(default)]
    pub pinned: bool,
}

impl InstalledApp {
    /// The deployment in use.
    pub fn current(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.release == self.current)
    }

    /// `ID/ARCH/BRANCH`.
    pub fn triple(&self) -> String {
        format!("{}/{}/{}", self.id, self.arch, self.branch)
    }
}

/// A remote apps are installed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Remote {
    /// The store index's IPNS name (`k51…`).
    pub ipns: String,
    /// When it was added (seconds since the epoch).
    pub added: u64,
    /// The highest store index sequence seen from it: an index with a
    /// lower one is a replayed or stale record and is refused.
    #[serde(default)]
    pub highest_sequence: u64,
    /// When its index was last resolved and accepted (seconds since the
    /// epoch; 0: never).
    #[serde(default)]
    pub last_seen: u64,
    /// The peers its index names, kept as peering peers of the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<crate::index::IndexPeer>,
}

/// A remote whose store index this daemon signs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishingRemote {
    /// Name of the key in Kubo's keystore.
    pub key: String,
    /// The IPNS name (`k51…`).
    pub ipns: String,
    /// The IPNS sequence last used (written before publishing with it).
    pub sequence: u64,
    /// CID of the store index last published.
    pub index: String,
    /// When its record was last published (seconds since the epoch; 0:
    /// unknown, before this was recorded).
    #[serde(default)]
    pub published_at: u64,
    /// When that record expires (its end of life; 0: unknown).
    #[serde(default)]
    pub expires: u64,
    /// Why the last republication failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish_error: Option<String>,
    /// Mirror peers its index lists after this daemon's own node
    /// (`flatipfsctl remote mirrors`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<crate::index::IndexPeer>,
}

/// Failures reading or writing the state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The state file.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store in `state_directory`.
    pub fn new(state_directory: &Path) -> Self {
        Store {
            path: state_directory.join("state.json"),
        }
    }

    /// Reads the state; a missing file is the empty state.
    pub fn load(&self) -> Result<State, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StoreError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the state durably and atomically.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let write = |source| StoreError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().expect("state file has a directory");
        std::fs::create_dir_all(dir).map_err(write)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(write)?;
        file.write_all(&serde_json::to_vec_pretty(state).expect("state serializes"))
            .map_err(write)?;
        file.sync_all().map_err(write)?;
        crate::durable::rename(&tmp, &self.path).map_err(write)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.load().unwrap(), State::default());
        let mut state = State::default();
        state.publishing.insert(
            "main".into(),
            PublishingRemote {
                key: "k".into(),
                ipns: "k51".into(),
                sequence: 3,
                index: "bafy".into(),
                ..Default::default()
            },
        );
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        assert!(!dir.path().join("state.json.tmp").exists());
    }
}
