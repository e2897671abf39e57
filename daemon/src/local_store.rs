//! Fetched files kept once, as plain local files: what the release
//! filesystem passes reads through to once a release is fully fetched, and
//! what the embedded Kubo node serves the files' blocks from (its
//! filestore), so that the bytes are on disk once, not twice.
//!
//! The store is `<state_directory>/local/` (root's, mode 0755: the Kubo
//! user reads, only root writes), one file per distinct file CID, named by
//! the CID, mode 0644, shared by every release that has the file. A name
//! there is a promise: a file gets its final name only after re-importing
//! it with the release import profile gave exactly its CID, so the pool
//! (`fuse`) trusts any file it finds under a CID's name; a file whose bytes
//! do not give the CID is removed, logged and stays lazy (read from Kubo).
//!
//! Making a release local ([`make_local`], after its fetch completed, and
//! again at start-up for a complete release without its `.local` marker):
//!
//! 1. every file of `files/` not in the store yet is written from Kubo
//!    (`cat`, a few at a time) to `<cid>.<n>.part`, fsynced, hashed by Kubo
//!    (`add --only-hash`, one call per batch of files), renamed to `<cid>`
//!    if the CID matches, else removed; the directory is fsynced. From here reads of these files no longer
//!    need Kubo.
//! 2. the installer's pin of the release is removed (its MFS copy still
//!    keeps every block from Kubo's garbage collection);
//! 3. per batch of local files of the release: their blocks are removed
//!    from the blockstore (`block/rm`; blocks another pin holds stay) and
//!    the files are added again with `--nocopy` (one call per batch): its leaves become filestore
//!    references to the local file (Kubo's filestore stores a block only if
//!    it has it nowhere, hence the removal first);
//! 4. the release is pinned again under the same name (every block is
//!    local: no network);
//! 5. the marker `<state>/releases/<release>.local` is written;
//! 6. the release gets its local tree (`trees::settle`: hard links to
//!    these files, bind-mounted on `files/` in place of the FUSE slot), also
//!    when the marker was there already but the tree was not.
//!
//! A crash anywhere leaves installed apps runnable: files are only ever
//! added to the store complete and verified, and reads fall back to Kubo
//! for a file that is not there; a crash between 2 and 4 leaves blocks
//! missing from the blockstore whose bytes are in local files, and the
//! missing marker makes the next start run the steps again (they are
//! idempotent). Leftover `.part` files are removed at start-up.
//!
//! Files no kept release and no served pool slot names are removed by
//! [`prune`] (vacuum; works with Kubo down, Kubo's dangling filestore
//! references go at its next garbage collection). With an external Kubo
//! (`kubo.api`) or `fetch.local_files = false` nothing here runs and reads
//! stay on Kubo.

use std::collections::HashSet;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::fetch;
use crate::kubo::{Client, KuboError};
use crate::manager::Manager;
use crate::release::{EntryKind, Manifest};

/// The store of local files of one state directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

/// Why a release could not be made local (it stays readable lazily).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Kubo(#[from] KuboError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether `cid` can name a file of the store (base32 or base58 text).
fn plain(cid: &str) -> bool {
    !cid.is_empty() && cid.len() <= 128 && cid.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The largest write of a file written from Kubo (see `write_part`).
const WRITE_PIECE: u64 = 1 << 20;

/// Numbers `.part` files so that two releases sharing a file never write
/// the same one.
static PART: AtomicU64 = AtomicU64::new(0);

impl LocalStore {
    /// The store of `state_directory`.
    pub fn new(state_directory: &Path) -> LocalStore {
        LocalStore {
            dir: state_directory.join("local"),
        }
    }

    /// Where the store lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The local file of `cid` (whether or not it exists).
    pub fn path(&self, cid: &str) -> Option<PathBuf> {
        plain(cid).then(|| self.dir.join(cid))
    }

    /// The verified local file of `cid`, opened for reading, if there is one.
    pub fn open(&self, cid: &str) -> Option<std::fs::File> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.path(cid)?)
            .ok()
    }

    /// The name in the store of a verified file of `cid` with permissions
    /// `mode` (0644 or 0755) for a tree to link to (`trees`), `None` if
    /// `cid` is not local. One inode has one mode: the file `<cid>` is
    /// given `mode` if no tree links it yet (Kubo and the pool do not care
    /// about its mode); if it is linked with the other mode, a variant
    /// `<cid>.x` (0755) or `<cid>.r` (0644) is made, a copy
    /// (`copy_file_range`: a reflink where the filesystem can) of the
    /// verified file, which, like every name here, exists only complete.
    pub fn linkable(&self, cid: &str, mode: u32) -> std::io::Result<Option<String>> {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = self.path(cid) else {
            return Ok(None);
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.mode() & 0o7777 == mode {
            return Ok(Some(cid.to_string()));
        }
        if meta.nlink() == 1 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            return Ok(Some(cid.to_string()));
        }
        let name = format!("{cid}.{}", if mode & 0o100 != 0 { "x" } else { "r" });
        let variant = self.dir.join(&name);
        if variant.exists() {
            return Ok(Some(name));
        }
        let Some(mut source) = self.open(cid) else {
            return Ok(None);
        };
        let n = PART.fetch_add(1, Ordering::Relaxed);
        let part = self.dir.join(format!("{name}.{n}.part"));
        let copied = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&part)?;
            std::io::copy(&mut source, &mut file)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.sync_all()?;
            crate::durable::rename(&part, &variant)
        })();
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        Ok(Some(name))
    }

    /// Creates the store (root's, 0755) and removes unfinished `.part` files.
    pub fn prepare(&self) -> Result<(), LocalError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&self.dir))?;
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            if entry.file_name().to_string_lossy().ends_with(".part") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Writes file `cid` (`size` bytes) from Kubo to a new `.part` file,
    /// fsynced; returns the `.part` file if it has `size` bytes (else it is
    /// removed).
    async fn write_part(
        &self,
        kubo: &Client,
        cid: &str,
        size: u64,
    ) -> Result<Option<PathBuf>, LocalError> {
        let n = PART.fetch_add(1, Ordering::Relaxed);
        let part = self.dir.join(format!("{cid}.{n}.part"));
        let written = async {
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&part)
                .await
                .map_err(io(&part))?;
            // Kubo's response comes in chunks of a few KiB. Written as
            // they come, the page cache would keep the file in folios of
            // that size, and every later read of it (the app's, through
            // its tree) would cost more than a read of a file written in
            // large pieces; so the bytes go to the file in writes of up
            // to WRITE_PIECE.
            let capacity = usize::try_from(size.min(WRITE_PIECE)).unwrap_or(1).max(1);
            let mut file = tokio::io::BufWriter::with_capacity(capacity, file);
            let written = kubo.cat_into(cid, size, &mut file).await?;
            tokio::io::AsyncWriteExt::flush(&mut file)
                .await
                .map_err(io(&part))?;
            file.get_ref().sync_all().await.map_err(io(&part))?;
            Ok::<_, LocalError>(written)
        }
        .await;
        match written {
            Ok(written) if written == size => Ok(Some(part)),
            Ok(written) => {
                warn!(%cid, size, written, "a fetched file has not its declared size: it stays lazy");
                let _ = std::fs::remove_file(&part);
                Ok(None)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                Err(e)
            }
        }
    }

    /// Writes the files `batch` (CID, size) not in the store yet from Kubo
    /// ([`WRITERS`] at a time), has Kubo hash them all in one `add
    /// --only-hash`, and gives each its name if its bytes give its CID;
    /// returns those local now.
    async fn fetch_files(
        &self,
        kubo: &Client,
        batch: &[(String, u64)],
    ) -> Result<Vec<(String, u64)>, LocalError> {
        let mut local = Vec::new();
        let mut todo = Vec::new();
        for (cid, size) in batch {
            match self.path(cid) {
                Some(path) if path.exists() => local.push((cid.clone(), *size)),
                Some(_) => todo.push((cid.clone(), *size)),
                None => {}
            }
        }
        // Written, in `todo`'s order.
        let mut parts: Vec<Option<PathBuf>> = vec![None; todo.len()];
        let mut running = tokio::task::JoinSet::new();
        let mut next = todo.iter().enumerate();
        let mut failed = None;
        loop {
            while failed.is_none() && running.len() < WRITERS {
                let Some((i, (cid, size))) = next.next() else {
                    break;
                };
                let (store, kubo, cid, size) = (self.clone(), kubo.clone(), cid.clone(), *size);
                running.spawn(async move { (i, store.write_part(&kubo, &cid, size).await) });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            match done {
                Ok((i, Ok(part))) => parts[i] = part,
                Ok((_, Err(e))) => failed = failed.or(Some(e)),
                Err(e) => {
                    failed = failed.or(Some(LocalError::Io {
                        path: self.dir.clone(),
                        source: std::io::Error::other(e.to_string()),
                    }))
                }
            }
        }
        let remove_all = |parts: &[Option<PathBuf>]| {
            for part in parts.iter().flatten() {
                let _ = std::fs::remove_file(part);
            }
        };
        if let Some(e) = failed {
            remove_all(&parts);
            return Err(e);
        }
        let hashed: Vec<(PathBuf, u64)> = todo
            .iter()
            .zip(&parts)
            .filter_map(|((_, size), part)| Some((part.clone()?, *size)))
            .collect();
        let got = match kubo.add_local_files(&hashed, false).await {
            Ok(got) => got,
            Err(e) => {
                remove_all(&parts);
                return Err(e.into());
            }
        };
        let mut got = got.into_iter();
        for ((cid, size), part) in todo.iter().zip(&parts) {
            let Some(part) = part else { continue };
            let got = got.next().flatten().unwrap_or_default();
            if &got != cid {
                warn!(%cid, %got, "a fetched file does not re-import to its CID: it stays lazy");
                let _ = std::fs::remove_file(part);
                continue;
            }
            let path = self.dir.join(cid);
            std::fs::set_permissions(part, std::fs::Permissions::from_mode(0o644))
                .map_err(io(part))?;
            crate::durable::rename(part, &path).map_err(io(&path))?;
            local.push((cid.clone(), *size));
        }
        Ok(local)
    }
}

/// Files written from Kubo at once when making a release local.
const WRITERS: usize = 4;

/// Files handled per batch of [`run`] (one `add` of many files, one
/// `block/rm` of their blocks).
const BATCH: usize = 256;

/// Whether `cid` is one raw block (a file of one chunk): no blocks below it.
fn one_block(cid: &str) -> bool {
    cid::Cid::try_from(cid).is_ok_and(|c| c.codec() == 0x55)
}

/// The marker of a release made local (steps 1–5 done).
pub fn marker(manager: &Manager, release: &str) -> PathBuf {
    crate::install::cached_manifest(manager, release).with_extension("local")
}

/// The distinct files of `manifest`'s `files/` that need a local file:
/// (CID, size). Files whose CID carries their bytes (inlined, empty
/// included) need none: the pool serves them from the CID.
fn files(manifest: &Manifest) -> Vec<(String, u64)> {
    let mut seen = HashSet::new();
    manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && e.path.starts_with("files/"))
        .filter(|e| crate::unixfs::inline_file(&e.cid).is_none())
        .filter(|e| seen.insert(e.cid.clone()))
        .map(|e| (e.cid.clone(), e.size))
        .collect()
}

/// One release is made local at a time (the steps unpin and re-pin; the
/// disk is read and written once per file).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes `release` local in the background (see [`make_local`]); what it
/// returns turns true when that has ended. `None` when the store is off.
pub fn spawn(
    manager: Arc<Manager>,
    manifest: Arc<Manifest>,
    release: String,
) -> Option<tokio::sync::watch::Receiver<bool>> {
    manager.local_store()?;
    let (ended, done) = tokio::sync::watch::channel(false);
    let name = format!("keeping {} {release} as local files", manifest.id);
    crate::supervised::spawn_logged(name, async move {
        make_local(&manager, &manifest, &release).await;
        let _ = ended.send(true);
    });
    Some(done)
}

/// Makes `release` (fully fetched) local, steps 1–5 of the module's
/// comment; does nothing when the store is off. Errors are logged: the
/// release stays readable (lazily) and the next start tries again.
pub async fn make_local(manager: &Manager, manifest: &Manifest, release: &str) {
    let Some(store) = manager.local_store() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    for attempt in 1..=ATTEMPTS {
        if !kept(manager, release) {
            return;
        }
        if marker(manager, release).exists() {
            break;
        }
        // At start-up the node may not answer yet.
        while manager.kubo().is_err() {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        match run(manager, &store, manifest, release).await {
            Ok((local, all)) => {
                info!(app = %manifest.id, %release, local, files = all, "release kept as local files");
                break;
            }
            Err(e) => {
                warn!(app = %manifest.id, %release, attempt, "cannot keep the release as local files: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
    if marker(manager, release).exists() && kept(manager, release) {
        crate::trees::settle(manager, &store, manifest, release).await;
    }
}

/// Tries of [`make_local`] before it waits for the next start.
const ATTEMPTS: u32 = 3;

async fn run(
    manager: &Manager,
    store: &LocalStore,
    manifest: &Manifest,
    release: &str,
) -> Result<(usize, usize), LocalError> {
    let (kubo, _) = manager.kubo()?;
    store.prepare()?;
    let files = files(manifest);
    let started = std::time::Instant::now();
    // 1. Local files, verified.
    let mut local = Vec::new();
    for batch in files.chunks(BATCH) {
        local.extend(store.fetch_files(&kubo, batch).await?);
    }
    crate::durable::sync_dir(store.dir()).map_err(io(store.dir()))?;
    let written = started.elapsed();
    // Time per step below, for the timing line.
    let [mut unpinned, mut removed, mut readded, mut repinned] = [std::time::Duration::ZERO; 4];
    // 2. Unpin (only the installer's own pin, or none: a crash between 2
    // and 4 left it off; a publisher's pin on this node keeps its blocks,
    // which then stay in the blockstore too).
    let ours = kubo
        .pins_named(fetch::PIN_PREFIX)
        .await?
        .into_iter()
        .any(|(cid, _)| cid == release);
    if ours || !kubo.is_pinned(release).await? {
        let pin = fetch::pin_name(&manifest.id, &manifest.version);
        let step = std::time::Instant::now();
        kubo.pin_rm(release).await?;
        unpinned = step.elapsed();
        // 3. Blocks out of the blockstore, into the filestore: every block
        // of the release's local files removed first, in as few `block/rm`
        // calls as a request holds, then the files added again a batch at
        // a time. Kubo checks each block it removes against every pin, so
        // this is the slow step for many small files (15.7 s for 5,000
        // blocks: docs/benchmarks.md, fetch throughput).
        let mut twice = 0;
        let mut blocks = Vec::new();
        let mut paths = Vec::new();
        for (cid, size) in &local {
            let Some(path) = store.path(cid) else {
                continue;
            };
            // Blocks a crash already removed are not listed (and not
            // fetched): the add below brings them back from the file.
            if !one_block(cid) {
                blocks.extend(kubo.refs_recursive(cid).await.unwrap_or_default());
            }
            blocks.push(cid.clone());
            paths.push((cid, path, *size));
        }
        let step = std::time::Instant::now();
        kubo.block_rm(&blocks).await?;
        removed += step.elapsed();
        for batch in paths.chunks(BATCH) {
            let adds: Vec<(PathBuf, u64)> = batch
                .iter()
                .map(|(_, p, size)| (p.clone(), *size))
                .collect();
            let step = std::time::Instant::now();
            let got = kubo.add_local_files(&adds, true).await?;
            readded += step.elapsed();
            for ((cid, _, _), got) in batch.iter().zip(got) {
                let got = got.unwrap_or_default();
                if &got != *cid {
                    twice += 1;
                    warn!(%cid, %got, "a local file re-imported to another CID");
                }
            }
        }
        // 4. Pinned again, from local blocks (unless the release was
        // dropped meanwhile).
        if kept(manager, release) {
            let step = std::time::Instant::now();
            kubo.pin_add(release, &pin).await?;
            repinned = step.elapsed();
        }
        if twice > 0 {
            warn!(%release, files = twice, "some files could not be moved to the filestore");
        }
    } else {
        warn!(%release, "the release is pinned by someone else on this node: its blocks stay in the blockstore as well");
    }
    // 5. Done.
    let marker = marker(manager, release);
    std::fs::write(&marker, b"").map_err(io(&marker))?;
    // Where the time went (scripts/bench-fetch.sh reads this line).
    info!(
        "local files timing {}: written and verified {:.2} s, moved to the filestore and pinned {:.2} s (unpin {:.2} s, block/rm {:.2} s, add --nocopy {:.2} s, pin {:.2} s), whole {:.2} s",
        manifest.id,
        written.as_secs_f64(),
        (started.elapsed() - written).as_secs_f64(),
        unpinned.as_secs_f64(),
        removed.as_secs_f64(),
        readded.as_secs_f64(),
        repinned.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok((local.len(), files.len()))
}

/// Whether a record still keeps `release`.
fn kept(manager: &Manager, release: &str) -> bool {
    manager.store().load().is_ok_and(|state| {
        state
            .apps
            .values()
            .any(|a| a.deployments.iter().any(|d| d.release == release))
    })
}

/// Removes local files that no kept release (from its cached manifest) and
/// no slot the pool still serves names; returns how many. Needs no Kubo.
pub fn prune(manager: &Manager) -> Result<usize, LocalError> {
    let state = match manager.store().load() {
        Ok(state) => state,
        Err(e) => {
            warn!("cannot read the state to prune local files: {e}");
            return Ok(0);
        }
    };
    // Trees first (their hard links are the files' other names).
    let releases: HashSet<String> = state
        .apps
        .values()
        .flat_map(|a| a.deployments.iter().map(|d| d.release.clone()))
        .collect();
    crate::trees::prune(&manager.config().state_directory, &releases);
    let Some(store) = manager.local_store() else {
        return Ok(0);
    };
    let mut keep: HashSet<String> = manager
        .apps
        .pool()
        .map(|p| p.served_cids())
        .unwrap_or_default();
    for app in state.apps.values() {
        for d in &app.deployments {
            match crate::install::read_cached_manifest(manager, &d.release) {
                Ok(m) => keep.extend(files(&m).into_iter().map(|(cid, _)| cid)),
                // Without the manifest nothing can be said: keep everything.
                Err(e) => {
                    warn!(release = %d.release, "not pruning local files: {e}");
                    return Ok(0);
                }
            }
        }
    }
    let mut removed = 0;
    let entries = match std::fs::read_dir(store.dir()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(store.dir())(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(store.dir()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let cid = name
            .strip_suffix(".x")
            .or_else(|| name.strip_suffix(".r"))
            .unwrap_or(&name);
        if !name.ends_with(".part") && !keep.contains(cid) {
            std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            removed += 1;
        }
    }
    if removed > 0 {
        info!(removed, "removed local files no release keeps");
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_cids_name_local_files() {
        let store = LocalStore::new(Path::new("/state"));
        assert_eq!(
            store.path("bafkreiabc"),
            Some(PathBuf::from("/state/local/bafkreiabc"))
        );
        for bad in ["", "../x", "a/b", ".part", "x.part", "a b"] {
            assert_eq!(store.path(bad), None, "{bad:?}");
        }
    }
}
