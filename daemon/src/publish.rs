//! The publishing side: remotes this daemon signs, and turning a Flatpak
//! build into a release on IPFS announced in the remote's store index.
//!
//! Order of a publication (nothing half-published): validate and read the
//! tree, add `deploy/`, write the manifest, assemble and pin the release root
//! in MFS, and only then replace the app's entry in the index and republish
//! the index name with a higher sequence. Any failure before that last step
//! leaves the index naming the previous release.
//!
//! Unless turned off, the release's encodings (a pack, deltas from earlier
//! releases; `encode`) are made after `deploy/` is added and named by the
//! manifest, which is then schema 2.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::config::PublishingConfig;
use crate::encode::{self, EncodeError, EncodeOptions, EncodeReport};
use crate::flatpak::{self, FlatpakError, FlatpakRef};
use crate::index::{IndexEntry, StoreIndex};
use crate::index::{IndexPeer, MAX_PEER_ADDRS};
use crate::kubo::{AddOptions, AddPart, Client, KuboError};
use crate::release::{self, Entry, EntryKind, ImportProfile, Manifest, StartupRange, Totals};
use crate::store::{PublishingRemote, State, Store, StoreError};
use crate::tree::{self, Limits, TreeError};

/// Why publishing failed; each maps to one D-Bus error.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("invalid remote name {0:?}: use 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")]
    BadRemoteName(String),
    #[error("no publishing remote named {0:?}; create it with `flatipfsctl remote create {0}`")]
    NoSuchRemote(String),
    #[error("a publishing remote named {0:?} exists already")]
    RemoteExists(String),
    #[error("{0} does not exist")]
    MissingPath(PathBuf),
    #[error("invalid ref {0:?}: expected app/ID/ARCH/BRANCH or runtime/ID/ARCH/BRANCH")]
    BadRef(String),
    #[error("startup set names {0:?}, which is not a file of the release")]
    BadStartupPath(String),
    #[error("startup set range {offset}+{length} of {path:?} is empty or beyond its {size} bytes")]
    BadStartupRange {
        path: String,
        offset: u64,
        length: u64,
        size: u64,
    },
    #[error("{0} (what clients accept by default)")]
    BadStartupSet(String),
    #[error(transparent)]
    Flatpak(#[from] FlatpakError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Kubo(#[from] KuboError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("{0}")]
    Internal(String),
}

/// Where the tree comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A ready deploy directory, taken as it is.
    DeployDir(PathBuf),
    /// A Flatpak repository and a ref in it.
    Repo { repo: PathBuf, reference: String },
}

/// One publication.
#[derive(Debug, Clone)]
pub struct Request {
    pub remote: String,
    pub source: Source,
    pub version: Option<String>,
    /// For a deploy directory: arch and branch (defaults: host arch, `master`).
    pub arch: Option<String>,
    pub branch: Option<String>,
    /// What the app reads at start-up, in order.
    pub startup_set: Vec<StartupItem>,
    /// Overrides of the configured encodings (`[publish]`).
    pub encodings: EncodingChoice,
}

/// A publication's choice of encodings; `None`: as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodingChoice {
    pub pack: Option<bool>,
    pub deltas: Option<bool>,
    pub delta_releases: Option<usize>,
}

/// One item of a startup set to publish: a file of the release (path
/// relative to `deploy/`), whole or a range of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupItem {
    pub path: String,
    /// `(offset, length)`; `None`: the whole file.
    pub range: Option<(u64, u64)>,
}

/// What a publication produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub version: String,
    pub release: String,
    pub deploy: String,
    pub ipns: String,
    pub sequence: u64,
    pub previous: Option<String>,
    /// Bytes of the new release's blocks.
    pub release_bytes: u64,
    /// Of those, bytes the previous release already has.
    pub shared_bytes: u64,
    /// Bytes a holder of the previous release must fetch.
    pub new_bytes: u64,
    /// The encodings made, their sizes and the time spent.
    pub encodings: EncodeReport,
    /// What the publisher should know (missing AppStream data or icons).
    pub warnings: Vec<String>,
}

/// Progress reports of a publication.
pub trait Progress: Send + Sync {
    fn status(&self, status: &str);
    fn bytes(&self, done: u64, total: u64);
}

/// Shared by every publication of this daemon.
pub struct Publisher {
    pub kubo: Client,
    pub kubo_version: String,
    pub store: Store,
    pub scratch: PathBuf,
    pub limits: Limits,
    /// The encodings made by default (`[publish]`).
    pub encode: EncodeOptions,
    /// Serializes changes to the state and the index.
    pub lock: Arc<Mutex<()>>,
    /// Record lifetimes and TTLs (`[publishing]`).
    pub records: PublishingConfig,
}

/// Whether `name` is a valid remote name (one rule for publishing and
/// installing remotes, and for the name an index carries).
pub use crate::index::valid_remote_name;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Publisher {
    /// Creates a remote: a new ed25519 key in Kubo and an empty store index
    /// published under it. Returns the IPNS name.
    pub async fn create_remote(&self, name: &str) -> Result<String, PublishError> {
        if !valid_remote_name(name) {
            return Err(PublishError::BadRemoteName(name.to_string()));
        }
        let _guard = self.lock.lock().await;
        let mut state = self.store.load()?;
        if state.publishing.contains_key(name) {
            return Err(PublishError::RemoteExists(name.to_string()));
        }
        let key_name = format!("flatipfs-remote-{name}");
        let key = match self
            .kubo
            .key_list()
            .await?
            .into_iter()
            .find(|k| k.name == key_name)
        {
            // A key left by an earlier attempt that crashed before saving.
            Some(key) => key,
            None => self.kubo.key_gen(&key_name).await?,
        };
        let mut index = StoreIndex::empty(name);
        index.peers = self.peers(&[]).await?;
        let index_cid = self.write_index(&index).await?;
        let mut remote = PublishingRemote {
            key: key.name.clone(),
            ipns: key.id.clone(),
            sequence: 0,
            index: index_cid.clone(),
            ..Default::default()
        };
        self.publish_record(&mut state, name, &mut remote).await?;
        info!(remote = name, ipns = %key.id, "publishing remote created");
        Ok(key.id)
    }

    /// Signs and publishes `remote`'s record for its current index with the
    /// next IPNS sequence (made durable before it is used, so that a crash
    /// never makes the daemon reuse one), with the remote's lifetime and
    /// TTL; records when it expires. The caller holds the state lock.
    pub(crate) async fn publish_record(
        &self,
        state: &mut State,
        name: &str,
        remote: &mut PublishingRemote,
    ) -> Result<(), PublishError> {
        remote.sequence += 1;
        state.publishing.insert(name.to_string(), remote.clone());
        self.store.save(state)?;
        let (lifetime, ttl) = self.records.record(name);
        self.kubo
            .name_publish(&remote.index, &remote.key, remote.sequence, lifetime, ttl)
            .await?;
        remote.published_at = now();
        remote.expires = remote.published_at.saturating_add(lifetime.as_secs());
        remote.republish_error = None;
        state.publishing.insert(name.to_string(), remote.clone());
        self.store.save(state)?;
        Ok(())
    }

    /// Publishes again the record of every remote last published at least
    /// `interval` ago (same index, next sequence, a fresh lifetime). A
    /// failure is recorded on the remote (shown by `status`) and retried on
    /// the next round. Returns how many records were published.
    pub async fn republish_due(&self, interval: std::time::Duration) -> usize {
        let _guard = self.lock.lock().await;
        let mut state = match self.store.load() {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!("republishing: {e}");
                return 0;
            }
        };
        let due: Vec<String> = state
            .publishing
            .iter()
            .filter(|(_, r)| now() >= r.published_at.saturating_add(interval.as_secs()))
            .map(|(name, _)| name.clone())
            .collect();
        let mut done = 0;
        for name in due {
            let Some(mut remote) = state.publishing.get(&name).cloned() else {
                continue;
            };
            match self.publish_record(&mut state, &name, &mut remote).await {
                Ok(()) => {
                    done += 1;
                    info!(remote = %name, sequence = remote.sequence, expires = remote.expires, "store index record republished");
                }
                Err(e) => {
                    tracing::warn!(remote = %name, "cannot republish the store index record: {e}");
                    if let Some(r) = state.publishing.get_mut(&name) {
                        r.republish_error = Some(e.to_string());
                    }
                    let _ = self.store.save(&state);
                }
            }
        }
        done
    }

    /// The peers the index names: this daemon's node (its peer ID and up
    /// to [`MAX_PEER_ADDRS`] of its addresses a client can dial), then the
    /// remote's `mirrors` ([`crate::remote_mirrors`]).
    pub(crate) async fn peers(
        &self,
        mirrors: &[IndexPeer],
    ) -> Result<Vec<IndexPeer>, PublishError> {
        let (id, addrs) = self.kubo.id().await?;
        let mut peers = Vec::new();
        if crate::index::valid_peer_id(&id) {
            let addrs = addrs
                .into_iter()
                .filter(|a| crate::index::valid_multiaddr(a))
                .take(MAX_PEER_ADDRS)
                .collect();
            peers.push(IndexPeer { id, addrs });
        }
        for mirror in mirrors {
            if !peers.iter().any(|p| p.id == mirror.id) {
                peers.push(mirror.clone());
            }
        }
        peers.truncate(crate::index::MAX_PEERS);
        Ok(peers)
    }

    /// Adds one small document, pinned; returns its CID.
    pub(crate) async fn add_document(
        &self,
        name: &str,
        data: &[u8],
    ) -> Result<String, PublishError> {
        let lines = self
            .kubo
            .add(
                vec![AddPart::Bytes {
                    name: name.to_string(),
                    data: data.to_vec(),
                }],
                AddOptions { pin: true },
                |_| {},
            )
            .await?;
        lines
            .last()
            .and_then(|l| l.hash.clone())
            .ok_or_else(|| PublishError::Internal(format!("Kubo returned no CID for {name}")))
    }

    /// The store index with CID `cid`, in either layout (a remote created
    /// before the sharded layout has a schema 1 index until its next
    /// publication).
    pub(crate) async fn read_index(
        &self,
        remote: &str,
        cid: &str,
    ) -> Result<StoreIndex, PublishError> {
        crate::index_layout::read(
            &self.kubo,
            &format!("publishing remote {remote}"),
            cid,
            &format!("the store index {cid}"),
            // Its blocks are local.
            std::time::Duration::from_secs(600),
        )
        .await
        .map_err(|e| PublishError::Internal(e.to_string()))
    }

    /// Adds `index` in the sharded layout, pinned; returns its CID.
    pub(crate) async fn write_index(&self, index: &StoreIndex) -> Result<String, PublishError> {
        crate::index_layout::write(&self.kubo, index)
            .await
            .map_err(|e| match e {
                crate::index_layout::WriteError::Kubo(e) => PublishError::Kubo(e),
                crate::index_layout::WriteError::Internal(e) => PublishError::Internal(e),
            })
    }

    /// Publishes one release; see the module docs for the order of steps.
    pub async fn publish(
        &self,
        request: &Request,
        progress: &dyn Progress,
    ) -> Result<Outcome, PublishError> {
        if !valid_remote_name(&request.remote) {
            return Err(PublishError::BadRemoteName(request.remote.clone()));
        }
        let remote = self
            .store
            .load()?
            .publishing
            .get(&request.remote)
            .cloned()
            .ok_or_else(|| PublishError::NoSuchRemote(request.remote.clone()))?;

        // 1. The deploy directory.
        std::fs::create_dir_all(&self.scratch).map_err(|e| {
            PublishError::Internal(format!("cannot create {}: {e}", self.scratch.display()))
        })?;
        let scratch = tempdir_in(&self.scratch)?;
        let (deploy_dir, arch, branch) = match &request.source {
            Source::DeployDir(dir) => {
                if !dir.exists() {
                    return Err(PublishError::MissingPath(dir.clone()));
                }
                let arch = request.arch.clone().unwrap_or_else(host_arch);
                let branch = request.branch.clone().unwrap_or_else(|| "master".into());
                (dir.clone(), arch, branch)
            }
            Source::Repo { repo, reference } => {
                if !repo.exists() {
                    return Err(PublishError::MissingPath(repo.clone()));
                }
                let parsed = FlatpakRef::parse(reference)
                    .ok_or_else(|| PublishError::BadRef(reference.clone()))?;
                progress.status(&format!("deploying {reference} from {}", repo.display()));
                let dir = flatpak::deploy_from_repo(repo, &parsed, scratch.path()).await?;
                (dir, parsed.arch, parsed.branch)
            }
        };

        // 2. The tree: metadata, export/ and files/ only (Flatpak's own
        //    `deploy` file is the installing daemon's to write).
        progress.status("reading the tree");
        let tree = tree::scan(&deploy_dir, self.limits)?;
        let metadata = flatpak::read_metadata(&tree)?;
        let appstream = (metadata.kind == release::Kind::App)
            .then(|| crate::appstream::collect(&tree, &metadata.id));
        let warnings = appstream
            .as_ref()
            .map_or_else(Vec::new, |a| a.warnings.clone());
        for w in &warnings {
            progress.status(&format!("warning: {w}"));
            warn!(id = %metadata.id, "publish: {w}");
        }
        let entries: Vec<&tree::LocalEntry> = tree
            .entries
            .iter()
            .filter(|e| {
                let top = e.path.split('/').next().unwrap_or_default();
                top == "metadata" || top == "export" || top == "files"
            })
            .collect();
        let total: u64 = entries.iter().map(|e| e.size).sum();
        for item in &request.startup_set {
            let Some(file) = entries
                .iter()
                .find(|e| e.path == item.path && e.kind == EntryKind::File)
            else {
                return Err(PublishError::BadStartupPath(item.path.clone()));
            };
            if let Some((offset, length)) = item.range {
                if length == 0 || offset.checked_add(length).is_none_or(|end| end > file.size) {
                    return Err(PublishError::BadStartupRange {
                        path: item.path.clone(),
                        offset,
                        length,
                        size: file.size,
                    });
                }
            }
        }

        // 3. deploy/ into IPFS.
        progress.status("adding deploy/ to IPFS");
        progress.bytes(0, total);
        let mut parts = vec![AddPart::Directory {
            name: release::DEPLOY_NAME.into(),
        }];
        for e in &entries {
            let name = format!("{}/{}", release::DEPLOY_NAME, e.path);
            parts.push(match e.kind {
                EntryKind::Directory => AddPart::Directory { name },
                EntryKind::Symlink => AddPart::Symlink {
                    name,
                    target: e.target.clone().unwrap_or_default(),
                },
                // Opened through the scan's directory descriptor, and only
                // if it is still the file the scan saw (`tree`).
                EntryKind::File => AddPart::File {
                    name,
                    open: tree.opener(e),
                    size: e.size,
                },
            });
        }
        let added = self
            .kubo
            .add(parts, AddOptions { pin: false }, |done| {
                progress.bytes(done.min(total), total)
            })
            .await;
        // A file refused when opened breaks the upload: say why.
        if let Some(refused) = tree.refused() {
            return Err(refused.into());
        }
        let lines = added?;
        progress.bytes(total, total);
        let cid_of = |name: &str| {
            lines
                .iter()
                .rev()
                .find(|l| l.name == name)
                .and_then(|l| l.hash.clone())
        };
        let deploy = cid_of(release::DEPLOY_NAME)
            .ok_or_else(|| PublishError::Internal("Kubo returned no CID for deploy/".into()))?;
        let mut manifest_entries = Vec::with_capacity(entries.len());
        for e in &entries {
            let cid = cid_of(&format!("{}/{}", release::DEPLOY_NAME, e.path)).ok_or_else(|| {
                PublishError::Internal(format!("Kubo returned no CID for {}", e.path))
            })?;
            manifest_entries.push(Entry {
                path: e.path.clone(),
                kind: e.kind,
                mode: release::clamp_mode(e.kind, e.mode),
                size: e.size,
                target: e.target.clone(),
                cid,
            });
        }
        let deploy_stat = self.kubo.dag_stat(&[&deploy]).await?;

        // 4. The index as it stands, and the version.
        let read_index = remote.index.clone();
        let mut index = self.read_index(&request.remote, &read_index).await?;
        let previous = index.apps.get(&metadata.id).cloned();
        let version = match &request.version {
            Some(v) => v.clone(),
            None => previous
                .as_ref()
                .and_then(|p| p.version.parse::<u64>().ok())
                .map_or(1, |v| v + 1)
                .to_string(),
        };
        let startup_set = request
            .startup_set
            .iter()
            .filter_map(|item| {
                let e = manifest_entries.iter().find(|e| e.path == item.path)?;
                let (offset, length) = item.range.unwrap_or((0, e.size));
                Some(StartupRange {
                    path: e.path.clone(),
                    cid: e.cid.clone(),
                    offset,
                    length,
                })
            })
            // An empty file has nothing to read at start-up.
            .filter(|r| r.length > 0)
            .collect();
        // 4b. The encodings: a pack, deltas from the releases before.
        let choice = request.encodings;
        let options = EncodeOptions {
            pack: choice.pack.unwrap_or(self.encode.pack),
            deltas: choice.deltas.unwrap_or(self.encode.deltas),
            delta_releases: choice.delta_releases.unwrap_or(self.encode.delta_releases),
            ..self.encode
        };
        let bases: Vec<String> = previous
            .as_ref()
            .map(|p| p.with_history().into_iter().map(|h| h.release).collect())
            .unwrap_or_default();
        if options.pack || (options.deltas && !bases.is_empty()) {
            progress.status("making the pack and deltas");
        }
        let (encodings, encoded) = encode::make(
            &self.kubo,
            &deploy,
            &manifest_entries,
            &bases,
            options,
            &format!("flatipfs {}@{} encodings", metadata.id, version),
        )
        .await?;
        let manifest = Manifest {
            schema: if encodings.is_some() {
                release::SCHEMA_ENCODINGS
            } else {
                release::SCHEMA
            },
            id: metadata.id.clone(),
            kind: metadata.kind,
            arch: arch.clone(),
            branch: branch.clone(),
            version: version.clone(),
            runtime: metadata.runtime.clone(),
            published: now(),
            import: ImportProfile {
                kubo_version: self.kubo_version.clone(),
                chunker: "buzhash".into(),
                cid_version: 1,
                hash: "sha2-256".into(),
                raw_leaves: true,
                inline_limit: crate::kubo::INLINE_LIMIT.parse().expect("a number"),
            },
            deploy: deploy.clone(),
            totals: Totals {
                bytes: total,
                files: manifest_entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::File)
                    .count() as u64,
                entries: manifest_entries.len() as u64,
                blocks: deploy_stat.dag_stats.first().map_or(0, |s| s.num_blocks),
                dag_bytes: deploy_stat.dag_stats.first().map_or(0, |s| s.size),
            },
            entries: manifest_entries,
            startup_set,
            encodings,
        };
        manifest
            .validate(release::ManifestLimits {
                max_entries: self.limits.max_entries,
                max_file_size: self.limits.max_file_size,
                // What clients accept by default.
                ..release::ManifestLimits::default()
            })
            .map_err(|e| match e {
                release::ManifestError::TooManyRanges(..)
                | release::ManifestError::StartupTooLarge { .. } => {
                    PublishError::BadStartupSet(e.to_string())
                }
                e => PublishError::Internal(format!("the manifest written would be invalid: {e}")),
            })?;

        // 5. The release root, assembled in MFS and pinned.
        progress.status("assembling the release");
        let manifest_cid = self
            .add_document(
                release::MANIFEST_NAME,
                &serde_json::to_vec_pretty(&manifest).expect("manifest serializes"),
            )
            .await?;
        let stage = format!("/flatipfs-publish/{}-{}", metadata.id, std::process::id());
        self.kubo.files_rm(&stage).await?;
        self.kubo.files_mkdir(&stage).await?;
        self.kubo
            .files_cp(
                &format!("/ipfs/{deploy}"),
                &format!("{stage}/{}", release::DEPLOY_NAME),
            )
            .await?;
        self.kubo
            .files_cp(
                &format!("/ipfs/{manifest_cid}"),
                &format!("{stage}/{}", release::MANIFEST_NAME),
            )
            .await?;
        if let Some(appstream) = &appstream {
            let parts =
                crate::appstream::release_parts(appstream, &version, manifest.totals.dag_bytes);
            let lines = self
                .kubo
                .add(parts, AddOptions { pin: false }, |_| {})
                .await?;
            let dir = lines
                .iter()
                .rev()
                .find(|l| l.name == flatipfs_format::appstream::RELEASE_DIR)
                .and_then(|l| l.hash.clone())
                .ok_or_else(|| {
                    PublishError::Internal("Kubo returned no CID for appstream/".into())
                })?;
            self.kubo
                .files_cp(
                    &format!("/ipfs/{dir}"),
                    &format!("{stage}/{}", flatipfs_format::appstream::RELEASE_DIR),
                )
                .await?;
        }
        let release_cid = self.kubo.files_hash(&stage).await?;
        self.kubo
            .pin_add(
                &release_cid,
                &format!("flatipfs {}@{}", metadata.id, version),
            )
            .await?;
        self.kubo.files_rm(&stage).await?;

        // 6. The index, replaced under the remote's lock.
        progress.status("publishing the store index");
        let _guard = self.lock.lock().await;
        let mut state = self.store.load()?;
        let mut remote = state
            .publishing
            .get(&request.remote)
            .cloned()
            .ok_or_else(|| PublishError::NoSuchRemote(request.remote.clone()))?;
        // Another publication may have replaced the index meanwhile.
        if remote.index != read_index {
            index = self.read_index(&request.remote, &remote.index).await?;
        }
        index.sequence += 1;
        index.peers = self.peers(&remote.mirrors).await?;
        let history = match index.apps.get(&metadata.id) {
            Some(old) => old.with_history(),
            None => Vec::new(),
        };
        index.apps.insert(
            metadata.id.clone(),
            IndexEntry {
                history,
                kind: metadata.kind,
                release: release_cid.clone(),
                sequence: index.sequence,
                version: version.clone(),
                arch,
                branch,
                runtime: metadata.runtime.clone(),
                published: manifest.published,
            },
        );
        // The catalog covers every app's current release, this one included.
        index.appstream =
            Some(crate::appstream::build_catalog(&self.kubo, &request.remote, &index).await?);
        let index_cid = self.write_index(&index).await?;
        remote.index = index_cid;
        self.publish_record(&mut state, &request.remote, &mut remote)
            .await?;
        drop(_guard);

        // 7. What the previous release already had.
        let previous_release = previous.map(|p| p.release);
        let (release_bytes, shared_bytes) = match &previous_release {
            Some(old) => {
                let stat = self.kubo.dag_stat(&[old, &release_cid]).await?;
                (
                    stat.dag_stats.get(1).map_or(0, |s| s.size),
                    stat.shared_size,
                )
            }
            None => {
                let stat = self.kubo.dag_stat(&[&release_cid]).await?;
                (stat.total_size, 0)
            }
        };
        info!(id = %metadata.id, %version, release = %release_cid, sequence = remote.sequence, "published");
        Ok(Outcome {
            id: metadata.id,
            version,
            release: release_cid,
            deploy,
            ipns: remote.ipns,
            sequence: remote.sequence,
            previous: previous_release,
            release_bytes,
            shared_bytes,
            new_bytes: release_bytes.saturating_sub(shared_bytes),
            encodings: encoded,
            warnings,
        })
    }
}

fn tempdir_in(dir: &Path) -> Result<tempfile::TempDir, PublishError> {
    tempfile::Builder::new()
        .prefix("publish-")
        .tempdir_in(dir)
        .map_err(|e| {
            PublishError::Internal(format!(
                "cannot create a scratch directory in {}: {e}",
                dir.display()
            ))
        })
}

/// Flatpak's name for this machine's architecture.
pub fn host_arch() -> String {
    match std::env::consts::ARCH {
        "x86" => "i386".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_names() {
        for good in ["main", "a", "my-store.2", "x_y"] {
            assert!(valid_remote_name(good), "{good}");
        }
        for bad in ["", "Main", "-x", ".x", "a/b", "a b", &"a".repeat(65)] {
            assert!(!valid_remote_name(bad), "{bad}");
        }
    }
}
