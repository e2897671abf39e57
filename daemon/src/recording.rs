//! Recording an app's startup set: the byte ranges it reads through its
//! mount in the first seconds of a run, in first-access order.
//!
//! A recording attaches a second, fresh slot of the app's current release
//! to the daemon's FUSE pool (`fuse::Pool::attach_recording`) and binds it
//! on top of the app's `files/` (stacked on the app's own binding):
//! processes started from then on open files through it, and since its
//! inodes are new the kernel has none of its pages cached, so every byte
//! the app reads reaches the daemon (the normal slot's page cache would
//! hide whatever an earlier run read). That slot alone carries a
//! [`Recorder`]; every other read only tests an `Option`. Stopping
//! detaches the stacked binding lazily (a process still running keeps
//! reading through it) and turns what was recorded into ranges of
//! manifest files, the list `publish` takes as its startup set.
//!
//! Bounded: at most `limits.max_startup_ranges` ranges covering at most
//! `limits.max_startup_bytes` (what clients accept), one recording per app,
//! and a recording stops by itself after its time limit even if nobody asks.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::fuse::{MountError, Pool, Slot};
use crate::install::InstallError;
use crate::manager::Manager;
use crate::release::{EntryKind, Manifest};

/// The longest a recording may run before the daemon stops it.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// One range of a file, as `publish` takes it: path relative to `deploy/`,
/// offset, length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRange {
    pub path: String,
    pub offset: u64,
    pub length: u64,
}

/// Why a recording cannot start or stop.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0} is not installed")]
    NotInstalled(String),
    #[error("{0} is not mounted (it is being installed or removed)")]
    NotMounted(String),
    #[error("{0} is being recorded already")]
    Busy(String),
    #[error("{0} is not being recorded")]
    NotRecording(String),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Kubo(#[from] crate::kubo::KuboError),
}

/// What one recording saw: ranges of files (by CID) in first-access order,
/// adjacent and overlapping reads of a file merged.
pub struct Recorder {
    max_ranges: usize,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `(cid, start, end)`; `None`: merged into an earlier range.
    ranges: Vec<Option<(Arc<str>, u64, u64)>>,
    /// CID → indices into `ranges` of its live ranges.
    by_cid: HashMap<Arc<str>, Vec<usize>>,
    live: usize,
    bytes: u64,
    /// A read was left out to stay within the bounds.
    truncated: bool,
}

impl State {
    /// Drops the slots of merged ranges (they are at most as many as the
    /// live ones when this runs, so memory stays within twice the bound).
    fn compact(&mut self) {
        self.ranges.retain(Option::is_some);
        self.by_cid.clear();
        for (i, range) in self.ranges.iter().enumerate() {
            let (cid, _, _) = range.as_ref().expect("live");
            self.by_cid.entry(cid.clone()).or_default().push(i);
        }
    }
}

impl Recorder {
    pub fn new(max_ranges: usize, max_bytes: u64) -> Recorder {
        Recorder {
            max_ranges,
            max_bytes,
            state: Default::default(),
        }
    }

    /// Notes a read of `length` bytes at `offset` of the file `cid`.
    pub fn record(&self, cid: &str, offset: u64, length: u64) {
        if length == 0 {
            return;
        }
        let end = offset.saturating_add(length);
        let mut state = self.state.lock().expect("not poisoned");
        let state = &mut *state;
        let indices = state.by_cid.get(cid).cloned().unwrap_or_default();
        // Every live range of the file this read touches or adjoins.
        let touching: Vec<usize> = indices
            .iter()
            .copied()
            .filter(|&i| {
                let (_, s, e) = state.ranges[i].as_ref().expect("live");
                offset <= *e && *s <= end
            })
            .collect();
        let Some(&first) = touching.iter().min() else {
            if state.live >= self.max_ranges || state.bytes + length > self.max_bytes {
                state.truncated = true;
                return;
            }
            if state.ranges.len() >= 2 * self.max_ranges.max(1) {
                state.compact();
            }
            let key: Arc<str> = match state.by_cid.get_key_value(cid) {
                Some((k, _)) => k.clone(),
                None => Arc::from(cid),
            };
            state.ranges.push(Some((key.clone(), offset, end)));
            state
                .by_cid
                .entry(key)
                .or_default()
                .push(state.ranges.len() - 1);
            state.live += 1;
            state.bytes += length;
            return;
        };
        // Merge into the earliest of them (its place in the order stays).
        let mut start = offset;
        let mut stop = end;
        let mut covered = 0;
        for &i in &touching {
            let (_, s, e) = state.ranges[i].as_ref().expect("live");
            start = start.min(*s);
            stop = stop.max(*e);
            covered += e - s;
        }
        let grown = (stop - start).saturating_sub(covered);
        if state.bytes + grown > self.max_bytes {
            state.truncated = true;
            return;
        }
        for &i in &touching {
            if i != first {
                state.ranges[i] = None;
                state.live -= 1;
            }
        }
        if let Some(list) = state.by_cid.get_mut(cid) {
            list.retain(|i| *i == first || !touching.contains(i));
        }
        if let Some((_, s, e)) = state.ranges[first].as_mut() {
            *s = start;
            *e = stop;
        }
        state.bytes += grown;
    }

    /// The ranges in first-access order, as paths of `manifest` (a CID shared
    /// by several files is named by its first file: the same bytes), and
    /// whether reads were left out to stay within the bounds.
    pub fn ranges(&self, manifest: &Manifest) -> (Vec<RecordedRange>, bool) {
        let mut paths: BTreeMap<&str, &str> = BTreeMap::new();
        for e in manifest.entries.iter().rev() {
            if e.kind == EntryKind::File && e.path.starts_with("files/") {
                paths.insert(&e.cid, &e.path);
            }
        }
        let state = self.state.lock().expect("not poisoned");
        let ranges = state
            .ranges
            .iter()
            .flatten()
            .filter_map(|(cid, start, end)| {
                Some(RecordedRange {
                    path: paths.get(&**cid)?.to_string(),
                    offset: *start,
                    length: end - start,
                })
            })
            .collect();
        (ranges, state.truncated)
    }
}

/// A recording in progress (or stopped by its time limit, not yet collected).
struct Active {
    release: String,
    manifest: Arc<Manifest>,
    recorder: Arc<Recorder>,
    /// The stacked mount; `None` once detached.
    mount: Option<Stacked>,
    timer: CancellationToken,
}

/// The recordings of this daemon, one per app at most.
#[derive(Default)]
pub struct Recordings {
    active: Mutex<HashMap<String, Active>>,
}

/// What a stopped recording produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub release: String,
    pub version: String,
    pub ranges: Vec<RecordedRange>,
    /// Reads were left out to stay within the startup set's bounds.
    pub truncated: bool,
}

/// Starts recording what app `id` reads through a fresh mount of its current
/// release; the recording stops by itself after `limit` (at most
/// [`MAX_DURATION`]).
pub async fn start(manager: &Arc<Manager>, id: &str, limit: Duration) -> Result<(), RecordError> {
    let app = manager
        .apps
        .get(id)
        .ok_or_else(|| RecordError::NotInstalled(id.to_string()))?;
    let info = app.snapshot();
    if info.mount_point.is_empty() || !app.is_mounted(&info.release) {
        return Err(RecordError::NotMounted(id.to_string()));
    }
    let recordings = &manager.recordings;
    if recordings
        .active
        .lock()
        .expect("not poisoned")
        .get(id)
        .is_some_and(|a| a.mount.is_some())
    {
        return Err(RecordError::Busy(id.to_string()));
    }
    let manifest = Arc::new(crate::install::read_cached_manifest(
        manager,
        &info.release,
    )?);
    let config = manager.config();
    // Within what this daemon and clients with default limits accept.
    let recorder = Arc::new(Recorder::new(
        (config.limits.max_startup_ranges).min(crate::release::DEFAULT_MAX_STARTUP_RANGES),
        (config.limits.max_startup_bytes).min(crate::release::DEFAULT_MAX_STARTUP_BYTES),
    ));
    let pool = manager.pool()?;
    let path = PathBuf::from(&info.mount_point);
    let timer = CancellationToken::new();
    {
        let mut active = recordings.active.lock().expect("not poisoned");
        if active.get(id).is_some_and(|a| a.mount.is_some()) {
            return Err(RecordError::Busy(id.to_string()));
        }
        let mount = stack(pool, &manifest, recorder.clone(), &path)?;
        if let Some(old) = active.insert(
            id.to_string(),
            Active {
                release: info.release.clone(),
                manifest,
                recorder,
                mount: Some(mount),
                timer: timer.clone(),
            },
        ) {
            old.timer.cancel();
        }
    }
    info!(app = %id, release = %info.release, "recording the startup set for at most {limit:?}");
    let manager = manager.clone();
    let id = id.to_string();
    let limit = limit.min(MAX_DURATION);
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(limit) => {
                warn!(app = %id, "startup set recording reached its time limit");
                manager.recordings.detach(&id);
            }
            _ = timer.cancelled() => {}
        }
    });
    Ok(())
}

/// Stops the recording of app `id` and returns what it saw.
pub fn stop(manager: &Manager, id: &str) -> Result<Recording, RecordError> {
    let active = manager
        .recordings
        .active
        .lock()
        .expect("not poisoned")
        .remove(id)
        .ok_or_else(|| RecordError::NotRecording(id.to_string()))?;
    active.timer.cancel();
    if let Some(mount) = active.mount {
        detach(mount);
    }
    let (ranges, truncated) = active.recorder.ranges(&active.manifest);
    info!(app = %id, ranges = ranges.len(), truncated, "startup set recorded");
    Ok(Recording {
        release: active.release,
        version: active.manifest.version.clone(),
        ranges,
        truncated,
    })
}

impl Recordings {
    /// Detaches the stacked mount of `id`'s recording, keeping what it saw
    /// for [`stop`].
    fn detach(&self, id: &str) {
        let mount = self
            .active
            .lock()
            .expect("not poisoned")
            .get_mut(id)
            .and_then(|a| a.mount.take());
        if let Some(mount) = mount {
            detach(mount);
        }
    }

    /// Ends the recording of `id`, if any, dropping what it saw (the app is
    /// being removed: its mounts can only go once this one is gone).
    pub fn end(&self, id: &str) {
        let active = self.active.lock().expect("not poisoned").remove(id);
        if let Some(active) = active {
            active.timer.cancel();
            if let Some(mount) = active.mount {
                detach(mount);
            }
        }
    }

    /// Whether a recording of `id` has its mount stacked on the app's now.
    pub fn is_recording(&self, id: &str) -> bool {
        self.active
            .lock()
            .expect("not poisoned")
            .get(id)
            .is_some_and(|a| a.mount.is_some())
    }

    /// Ends every recording (the daemon is stopping).
    pub fn shutdown(&self) {
        for (_, active) in std::mem::take(&mut *self.active.lock().expect("not poisoned")) {
            active.timer.cancel();
            if let Some(mount) = active.mount {
                detach(mount);
            }
        }
    }
}

/// A recording mount: a fresh slot of the daemon's FUSE pool, bound on top
/// of the app's `files/` (stacked on the app's own binding).
struct Stacked {
    pool: Arc<Pool>,
    slot: Slot,
    over: PathBuf,
}

/// Attaches a fresh slot of `manifest`'s release, noting reads in
/// `recorder`, bound over `over` (`ro,nosuid,nodev`). Being new, the slot
/// has nothing in the kernel's page cache; the app's own binding stays
/// underneath.
fn stack(
    pool: Arc<Pool>,
    manifest: &Manifest,
    recorder: Arc<Recorder>,
    over: &Path,
) -> Result<Stacked, RecordError> {
    let slot = pool.attach_recording(manifest, over, recorder)?;
    Ok(Stacked {
        pool,
        slot,
        over: over.to_owned(),
    })
}

/// Lazily unmounts the binding over the app's `files/` (the topmost mount
/// there: ours) and retires its slot; a process still reading keeps its
/// files until it is done.
fn detach(stacked: Stacked) {
    use nix::mount::{umount2, MntFlags};
    let Stacked { pool, slot, over } = stacked;
    if let Err(e) = umount2(&over, MntFlags::MNT_DETACH) {
        warn!(path = %over.display(), "cannot unmount the recording mount: {e}");
    }
    pool.retire(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(r: &Recorder) -> Vec<(String, u64, u64)> {
        let state = r.state.lock().unwrap();
        state
            .ranges
            .iter()
            .flatten()
            .map(|(c, s, e)| (c.to_string(), *s, *e))
            .collect()
    }

    #[test]
    fn reads_are_kept_in_first_access_order_and_merged_per_file() {
        let r = Recorder::new(100, 1 << 30);
        r.record("b", 0, 10);
        r.record("a", 100, 10);
        r.record("b", 10, 10); // adjacent: merged into the first
        r.record("a", 0, 10); // not adjacent: a new range
        r.record("a", 5, 100); // bridges both ranges of a
        assert_eq!(raw(&r), vec![("b".into(), 0, 20), ("a".into(), 0, 110)]);
        assert_eq!(r.state.lock().unwrap().bytes, 130);
    }

    #[test]
    fn merged_ranges_do_not_pile_up() {
        let r = Recorder::new(4, 1 << 30);
        // Each round adds a range and bridges it into the first one.
        for round in 1..1000u64 {
            r.record("a", round * 20, 5);
            r.record("a", 0, round * 20 + 5);
        }
        assert_eq!(raw(&r), vec![("a".into(), 0, 999 * 20 + 5)]);
        assert!(r.state.lock().unwrap().ranges.len() <= 8);
        r.record("b", 0, 1);
        assert_eq!(raw(&r).len(), 2);
    }

    #[test]
    fn repeated_reads_add_nothing() {
        let r = Recorder::new(100, 1 << 30);
        for _ in 0..5 {
            r.record("a", 4096, 4096);
        }
        assert_eq!(raw(&r), vec![("a".into(), 4096, 8192)]);
    }

    #[test]
    fn ranges_and_bytes_are_bounded() {
        let r = Recorder::new(2, 100);
        r.record("a", 0, 10);
        r.record("b", 0, 10);
        r.record("c", 0, 10);
        assert_eq!(raw(&r).len(), 2);
        r.record("a", 10, 200);
        assert_eq!(raw(&r), vec![("a".into(), 0, 10), ("b".into(), 0, 10)]);
        assert!(r.state.lock().unwrap().truncated);
    }
}
