//! The installed apps as the running daemon holds them.
//!
//! Owns, per app: what clients see of it ([`AppInfo`], watched by the D-Bus
//! layer, which turns changes into `PropertiesChanged`), its mounted
//! releases (slots of the daemon's one FUSE [`Pool`]), its background fetch
//! and the one mutating job allowed on it at a time. Only the current
//! release stays mounted: another one is mounted while a job needs it
//! (update, rollback) or a sandbox runs it, and [`Apps::sweep`] unmounts it
//! once neither holds.
//! What must survive a restart lives in `store`; this is rebuilt from it at
//! start-up (`install::restore`). Knows nothing of D-Bus.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::fuse::{Pool, Slot};

/// Everything a client can see of an installed app.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppInfo {
    pub id: String,
    /// `app` or `runtime`.
    pub kind: String,
    /// `app/ID/ARCH/BRANCH` (or `runtime/…`).
    pub reference: String,
    /// The remote it came from; empty for a fixed release.
    pub remote: String,
    /// What the install was asked for.
    pub source: String,
    /// `installing`, `degraded` (runnable, still fetching), `installed`,
    /// `uninstalling`.
    pub state: String,
    /// What the background work is doing, for people.
    pub status: String,
    pub version: String,
    /// Release root CID in use.
    pub release: String,
    /// The runtime it needs (`ID/ARCH/BRANCH`), for apps.
    pub runtime: String,
    /// Bytes of the current release present locally.
    pub fetched: u64,
    /// Bytes of the current release.
    pub total: u64,
    /// Where its `files/` is mounted.
    pub mount_point: String,
    /// The job changing it now (0: none).
    pub active_job: u64,
    /// The newest release a check found, when it is newer than the current
    /// one (version; empty: none known).
    pub available: String,
    /// This app's automatic update policy override (empty: the daemon's).
    pub update_policy: String,
    /// When its remote was last checked (seconds since the epoch; 0: never).
    pub last_checked: u64,
    /// Every release kept on this machine.
    pub deployments: Vec<DeploymentInfo>,
    /// What the held update (see `status`) would grant beyond the current
    /// release; empty when no update is held for its permissions.
    pub pending_permissions: Vec<String>,
}

/// One release kept on this machine, as clients see it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentInfo {
    pub version: String,
    pub release: String,
    pub sequence: u64,
    /// In use (`active`).
    pub current: bool,
    /// Kept whatever the retention says (`flatipfsctl pin`).
    pub pinned: bool,
    /// Every block local and pinned in Kubo.
    pub complete: bool,
    /// Rolled back from: automatic updates do not re-apply it.
    pub held: bool,
    pub deployed: u64,
}

/// An app appeared or went away.
#[derive(Debug, Clone)]
pub enum AppEvent {
    Added(String, watch::Receiver<AppInfo>),
    Removed(String),
}

/// How one release is mounted on its deploy's `files/`: a FUSE slot, its
/// local tree (`trees`), or the tree stacked on the slot (the release became
/// local while mounted).
struct Mounted {
    path: PathBuf,
    slot: Option<Slot>,
    tree: Option<PathBuf>,
    /// How many mounts are stacked on `path` (the FUSE slot's bind mount
    /// is gone once the tree replaced it: its slot stays served).
    layers: usize,
}

/// One installed app at run time.
pub struct LiveApp {
    pub info: watch::Sender<AppInfo>,
    /// Mounted releases, by root CID.
    mounts: Mutex<BTreeMap<String, Mounted>>,
    /// Background fetches, by release root CID.
    fetches: Mutex<BTreeMap<String, CancellationToken>>,
    /// Releases being kept as local files (`local_store`), each with what
    /// turns true once that step (and the switch to its tree) has ended.
    settling: Mutex<BTreeMap<String, watch::Receiver<bool>>>,
}

impl LiveApp {
    /// A live app not yet in the registry ([`Apps::insert`] adds it).
    pub fn new(info: AppInfo) -> Arc<LiveApp> {
        Arc::new(LiveApp {
            info: watch::channel(info).0,
            mounts: Default::default(),
            fetches: Default::default(),
            settling: Default::default(),
        })
    }

    /// Records that `release` is being kept as local files; `done` turns
    /// true when that step has ended.
    pub fn settling(&self, release: &str, done: watch::Receiver<bool>) {
        self.settling
            .lock()
            .expect("not poisoned")
            .insert(release.to_string(), done);
    }

    /// Waits until the local-files step of `release` (if one runs) has
    /// ended, so that its `files/` no longer changes under a launch: the
    /// switch from FUSE to its tree fails a `flatpak run` that starts
    /// during it ("bwrap: Race condition binding dirfd", seen in CI when
    /// `flatpak run` came right after `flatipfsctl install`).
    pub async fn wait_settled(&self, release: &str) {
        let done = self
            .settling
            .lock()
            .expect("not poisoned")
            .get(release)
            .cloned();
        if let Some(mut done) = done {
            // An error: the step's task is gone, ended either way.
            let _ = done.wait_for(|ended| *ended).await;
        }
        self.settling.lock().expect("not poisoned").remove(release);
    }

    pub fn update(&self, change: impl FnOnce(&mut AppInfo)) {
        self.info.send_if_modified(|info| {
            let before = info.clone();
            change(info);
            *info != before
        });
    }

    pub fn snapshot(&self) -> AppInfo {
        self.info.borrow().clone()
    }

    /// Records that `release` is mounted on `path` as `slot`.
    pub fn add_mount(&self, release: &str, path: PathBuf, slot: Slot) {
        self.mounts.lock().expect("not poisoned").insert(
            release.to_string(),
            Mounted {
                path,
                slot: Some(slot),
                tree: None,
                layers: 1,
            },
        );
    }

    /// Records that `release` is mounted on `path` from its local `tree`.
    pub fn add_tree_mount(&self, release: &str, path: PathBuf, tree: PathBuf) {
        self.mounts.lock().expect("not poisoned").insert(
            release.to_string(),
            Mounted {
                path,
                slot: None,
                tree: Some(tree),
                layers: 1,
            },
        );
    }

    /// Puts `tree` in place of the FUSE mount of `release`
    /// (`trees::replace`; the slot stays served for whoever opened files
    /// or started a sandbox before, until the release is unmounted);
    /// returns whether it did (not if `release` is not mounted or has its
    /// tree already).
    pub fn switch_to_tree(&self, release: &str, tree: &std::path::Path) -> std::io::Result<bool> {
        let mut mounts = self.mounts.lock().expect("not poisoned");
        let Some(mounted) = mounts.get_mut(release) else {
            return Ok(false);
        };
        if mounted.tree.is_some() {
            return Ok(false);
        }
        mounted.layers = crate::trees::replace(tree, &mounted.path)?;
        mounted.tree = Some(tree.to_owned());
        Ok(true)
    }

    /// Where `release` is mounted while it is still read through FUSE (no
    /// tree yet).
    pub fn fuse_mount_path(&self, release: &str) -> Option<std::path::PathBuf> {
        let mounts = self.mounts.lock().expect("not poisoned");
        mounts
            .get(release)
            .filter(|m| m.tree.is_none())
            .map(|m| m.path.clone())
    }

    /// Whether a sandbox runs `release` (a lock on `.ref` of its slot or its
    /// tree).
    fn in_use(&self, pool: Option<&Pool>, release: &str) -> bool {
        let mounts = self.mounts.lock().expect("not poisoned");
        let Some(mounted) = mounts.get(release) else {
            return false;
        };
        mounted
            .slot
            .is_some_and(|slot| pool.is_none_or(|pool| pool.in_use(slot)))
            || mounted.tree.as_deref().is_some_and(crate::trees::in_use)
    }

    /// Whether `release` is mounted by this daemon.
    pub fn is_mounted(&self, release: &str) -> bool {
        self.mounts
            .lock()
            .expect("not poisoned")
            .contains_key(release)
    }

    /// Releases mounted now.
    pub fn mounted(&self) -> Vec<String> {
        self.mounts
            .lock()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect()
    }

    /// Unmounts `release` lazily: a running instance keeps reading it, and
    /// its slot is served until the last sandbox using it is gone.
    pub fn unmount(&self, pool: Option<&Pool>, release: &str) {
        let taken = self.mounts.lock().expect("not poisoned").remove(release);
        if let Some(mounted) = taken {
            detach(pool, mounted);
        }
    }

    /// Unmounts every release of the app (lazily).
    pub fn unmount_all(&self, pool: Option<&Pool>) {
        let taken = std::mem::take(&mut *self.mounts.lock().expect("not poisoned"));
        for (_, mounted) in taken {
            detach(pool, mounted);
        }
    }

    /// Starts tracking the background fetch of `release`, stopping any
    /// previous fetch of the same release.
    pub fn begin_fetch(&self, release: &str) -> CancellationToken {
        let token = CancellationToken::new();
        if let Some(old) = self
            .fetches
            .lock()
            .expect("not poisoned")
            .insert(release.to_string(), token.clone())
        {
            old.cancel();
        }
        token
    }

    /// Stops the background fetch of `release`, if any.
    pub fn stop_fetch(&self, release: &str) {
        if let Some(token) = self.fetches.lock().expect("not poisoned").remove(release) {
            token.cancel();
        }
    }

    /// Stops every background fetch of the app.
    pub fn stop_fetches(&self) {
        for (_, token) in std::mem::take(&mut *self.fetches.lock().expect("not poisoned")) {
            token.cancel();
        }
    }
}

/// Lazily unmounts `mounted` (each of its layers) and retires its slot
/// (served until no sandbox uses it).
fn detach(pool: Option<&Pool>, mounted: Mounted) {
    let Mounted {
        path, slot, layers, ..
    } = mounted;
    for _ in 0..layers {
        if let Err(e) = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
            warn!(path = %path.display(), "cannot unmount: {e}");
        }
    }
    if let (Some(pool), Some(slot)) = (pool, slot) {
        pool.retire(slot);
    }
}

/// A claim on an app for one mutating job; released on drop.
pub struct Claim {
    apps: Arc<Apps>,
    id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.apps
            .busy
            .lock()
            .expect("not poisoned")
            .remove(&self.id);
        if let Some(app) = self.apps.get(&self.id) {
            app.update(|i| i.active_job = 0);
        }
    }
}

/// The daemon's installed apps.
pub struct Apps {
    live: Mutex<BTreeMap<String, Arc<LiveApp>>>,
    /// App id → the job that holds it.
    busy: Mutex<BTreeMap<String, u64>>,
    events: broadcast::Sender<AppEvent>,
    /// The FUSE session every mount is served by, once started.
    pool: Mutex<Option<Arc<Pool>>>,
}

impl Default for Apps {
    fn default() -> Self {
        Apps {
            live: Default::default(),
            busy: Default::default(),
            events: broadcast::channel(256).0,
            pool: Default::default(),
        }
    }
}

impl Apps {
    /// The FUSE pool, started by `start` the first time it is needed.
    pub fn pool_or_start<E>(
        &self,
        start: impl FnOnce() -> Result<Pool, E>,
    ) -> Result<Arc<Pool>, E> {
        let mut pool = self.pool.lock().expect("not poisoned");
        if let Some(pool) = &*pool {
            return Ok(pool.clone());
        }
        let started = Arc::new(start()?);
        *pool = Some(started.clone());
        Ok(started)
    }

    /// The FUSE pool, if started.
    pub fn pool(&self) -> Option<Arc<Pool>> {
        self.pool.lock().expect("not poisoned").clone()
    }

    /// Unmounts the releases no one needs any more: of each app no job
    /// holds, every mounted release but the current one that no sandbox
    /// runs; and stops serving retired slots no sandbox uses.
    pub fn sweep(&self) {
        let pool = self.pool();
        for app in self.list() {
            let info = app.snapshot();
            if self.holder(&info.id).is_some() || info.release.is_empty() {
                continue;
            }
            for release in app.mounted() {
                if release == info.release {
                    continue;
                }
                if !app.in_use(pool.as_deref(), &release) {
                    info!(app = %info.id, %release, "unmounting a release no one uses");
                    app.unmount(pool.as_deref(), &release);
                }
            }
        }
        if let Some(pool) = pool {
            pool.sweep();
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveApp>> {
        self.live.lock().expect("not poisoned").get(id).cloned()
    }

    /// Every app, by id.
    pub fn list(&self) -> Vec<Arc<LiveApp>> {
        self.live
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Follows apps appearing and going away.
    pub fn subscribe(&self) -> broadcast::Receiver<AppEvent> {
        self.events.subscribe()
    }

    /// Adds (or returns) the live app `info.id`.
    pub fn add(&self, info: AppInfo) -> Arc<LiveApp> {
        self.insert(LiveApp::new(info))
    }

    /// Puts `app` in the registry (clients see it from now on), unless an
    /// app of its id is there already; returns the one registered.
    pub fn insert(&self, app: Arc<LiveApp>) -> Arc<LiveApp> {
        let id = app.snapshot().id;
        let mut live = self.live.lock().expect("not poisoned");
        if let Some(existing) = live.get(&id) {
            return existing.clone();
        }
        live.insert(id.clone(), app.clone());
        let _ = self.events.send(AppEvent::Added(id, app.info.subscribe()));
        app
    }

    /// Forgets app `id` (its mounts are detached, its fetch stopped).
    pub fn remove(&self, id: &str) {
        let removed = self.live.lock().expect("not poisoned").remove(id);
        if let Some(app) = removed {
            app.stop_fetches();
            app.unmount_all(self.pool().as_deref());
            let _ = self.events.send(AppEvent::Removed(id.to_string()));
        }
    }

    /// Detaches every mount (the daemon is stopping: without it they could
    /// only fail; the next start mounts them again).
    pub fn shutdown(&self) {
        for app in self.list() {
            app.stop_fetches();
            app.unmount_all(None);
        }
        if let Some(pool) = self.pool() {
            pool.stop();
        }
    }

    /// The job holding app `id`, if any.
    pub fn holder(&self, id: &str) -> Option<u64> {
        self.busy.lock().expect("not poisoned").get(id).copied()
    }

    /// Claims app `id` for job `job`; `Err(job)` names the job holding it.
    pub fn claim(self: &Arc<Self>, id: &str, job: u64) -> Result<Claim, u64> {
        let mut busy = self.busy.lock().expect("not poisoned");
        if let Some(&holder) = busy.get(id) {
            return Err(holder);
        }
        busy.insert(id.to_string(), job);
        drop(busy);
        if let Some(app) = self.get(id) {
            app.update(|i| i.active_job = job);
        }
        Ok(Claim {
            apps: self.clone(),
            id: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_app_until_released() {
        let apps = Arc::new(Apps::default());
        let claim = apps.claim("org.test.Hello", 7).unwrap();
        assert_eq!(apps.claim("org.test.Hello", 8).err(), Some(7));
        let other = apps.claim("org.test.Other", 9).unwrap();
        drop(claim);
        assert!(apps.claim("org.test.Hello", 10).is_ok());
        drop(other);
    }
}
