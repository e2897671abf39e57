//! The read-only FUSE filesystem that serves releases' `files/` trees.
//!
//! One FUSE session (a [`Pool`]) serves every mounted release of the
//! daemon: it is mounted once on a private directory, holds one *slot* per
//! release (`<private>/<slot>/` is that release's `files/`), and each
//! deploy's `files/` is a bind mount of its slot (`ro,nosuid,nodev`). So the
//! daemon's threads and memory do not grow with the number of mounted
//! releases: two FUSE worker threads in all, reads answered from tasks of
//! the shared tokio runtime (a slow Kubo read on one release blocks no
//! other), one Kubo HTTP client, one byte budget for read windows.
//!
//! Names, types, modes, sizes and symlink targets come from the validated
//! manifest alone: `lookup`, `getattr`, `readdir` and `readlink` never call
//! Kubo. File contents are read by the file's CID, a window of up to 4 MiB
//! per read: from local blocks (`cat` offline) when they are there, else
//! after fetching exactly the blocks behind the window (`range_blocks`:
//! no read-ahead whose cancels could strand a block another read waits
//! for), a window's blocks `WINDOW_FETCHES` at a time (kept, per
//! file, in a least-recently-used cache bounded in bytes across all
//! releases); content is immutable, so the kernel may cache it for good
//! (`FOPEN_KEEP_CACHE`, long TTLs). A read that Kubo cannot serve within the
//! configured time fails with `EIO` instead of hanging.
//! The session is mounted `ro,nosuid,nodev,allow_other,default_permissions`.
//!
//! Once a file is local (`local_store`: a verified plain file named by its
//! CID), an `open` is answered with FUSE passthrough: the kernel reads the
//! local file itself (`FOPEN_PASSTHROUGH`, one backing file per inode
//! shared by its open handles), so reads, `mmap` included, cost what reads
//! of a local file cost. The kernel refuses to mix passthrough and cached
//! opens of one inode, so while an inode has cached (lazy) handles open new
//! opens stay cached too; their reads are served by `pread` of the local
//! file as soon as it exists (a handle opened lazily switches to the local
//! file mid-way: the bytes are the same, the file is immutable and only
//! ever appears verified). When the kernel or the process cannot use
//! passthrough (no `FUSE_PASSTHROUGH`, no `CAP_SYS_ADMIN`), every open is
//! cached and local files are served by `pread`; that is logged once.
//! Slots attached to record a startup set never pass through: their reads
//! must reach the daemon.
//!
//! A slot is removed only once no sandbox uses it: Flatpak's bwrap holds a
//! read lock on `files/.ref` while an app runs, seen here through the
//! private mount even after the deploy's bind mount is gone.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEntry, ReplyOpen, Request, SessionACL,
};
use nix::mount::MntFlags;
use tracing::warn;

use crate::kubo::Client;
use crate::local_store::LocalStore;
use crate::recording::Recorder;
use crate::release::{EntryKind, Manifest};

/// How long the kernel may cache names and attributes: they never change.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// FUSE worker threads of the whole pool: they only answer from memory and
/// hand reads to the runtime, so two keep a lookup from waiting on another.
const THREADS: usize = 2;
/// A read that misses fetches this much from the requested offset (one
/// Kubo call instead of one per 128 KiB kernel request).
const WINDOW: u64 = 4 << 20;
/// Bytes of read windows kept across every release of the pool.
const WINDOW_BUDGET: usize = 32 << 20;
/// Kubo reads in flight at once across the pool (each holds a window).
const READS_IN_FLIGHT: usize = 8;
/// Blocks of one window fetched at once when they are missing.
const WINDOW_FETCHES: usize = 8;
/// The root directory of the pool's own mount.
const ROOT: u64 = 1;
/// Inode bits that number a node inside its release.
const LOCAL_BITS: u32 = 32;

struct Node {
    parent: u64,
    kind: EntryKind,
    mode: u32,
    size: u64,
    target: Option<String>,
    cid: String,
    /// Directories: name → local inode.
    children: BTreeMap<String, u64>,
}

/// One release's `files/` tree, from its manifest (local inode 1 is
/// `files/` itself).
pub struct ReleaseTree {
    /// Index `local inode - 1`.
    nodes: Vec<Node>,
    mtime: SystemTime,
    /// Set only on a slot attached to record a startup set (`recording`).
    recorder: Option<Arc<Recorder>>,
    /// The startup set's ranges, `[start, end)` by local inode: a read
    /// that begins inside one widens only to its end (see [`Self::window`]).
    startup: HashMap<u64, Vec<(u64, u64)>>,
}

/// Why a release cannot be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("the release has no files/ directory")]
    NoFiles,
    #[error("cannot mount on {path}: {source}")]
    Mount {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ReleaseTree {
    /// The tree of `manifest`'s `files/` (the manifest must be validated:
    /// paths safe, parents listed before children).
    pub fn new(manifest: &Manifest) -> Result<Self, MountError> {
        let root = manifest
            .entries
            .iter()
            .find(|e| e.path == "files" && e.kind == EntryKind::Directory)
            .ok_or(MountError::NoFiles)?;
        let mut nodes = vec![Node {
            parent: 1,
            kind: EntryKind::Directory,
            mode: crate::release::clamp_mode(EntryKind::Directory, root.mode),
            size: 0,
            target: None,
            cid: root.cid.clone(),
            children: BTreeMap::new(),
        }];
        let mut by_path: BTreeMap<&str, u64> = BTreeMap::from([("files", 1)]);
        let mut inodes: HashMap<&str, u64> = HashMap::new();
        for entry in &manifest.entries {
            if !entry.path.starts_with("files/") {
                continue;
            }
            let Some((parent_path, name)) = entry.path.rsplit_once('/') else {
                continue;
            };
            let Some(&parent) = by_path.get(parent_path) else {
                continue;
            };
            let inode = nodes.len() as u64 + 1;
            nodes.push(Node {
                parent,
                kind: entry.kind,
                mode: crate::release::clamp_mode(entry.kind, entry.mode),
                size: entry.size,
                target: entry.target.clone(),
                cid: entry.cid.clone(),
                children: BTreeMap::new(),
            });
            nodes[parent as usize - 1]
                .children
                .insert(name.to_string(), inode);
            if entry.kind == EntryKind::Directory {
                by_path.insert(&entry.path, inode);
            }
            if entry.kind == EntryKind::File {
                inodes.insert(&entry.path, inode);
            }
        }
        let mut startup: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
        for range in &manifest.startup_set {
            if let Some(&inode) = inodes.get(range.path.as_str()) {
                startup
                    .entry(inode)
                    .or_default()
                    .push((range.offset, range.offset.saturating_add(range.length)));
            }
        }
        Ok(ReleaseTree {
            nodes,
            mtime: UNIX_EPOCH
                .checked_add(Duration::from_secs(manifest.published))
                .unwrap_or(UNIX_EPOCH),
            recorder: None,
            startup,
        })
    }

    fn node(&self, local: u64) -> Option<&Node> {
        self.nodes.get(local.checked_sub(1)? as usize)
    }

    /// The bytes one Kubo read fetches for a read of `length` bytes at
    /// `offset` of file `local` (of `size` bytes) that missed: up to
    /// [`WINDOW`], but only to the end of the startup-set range the read
    /// begins in, if any. Those ranges are what the app reads at start and
    /// what the background fetch makes local first; a wider window would
    /// wait on the network for bytes the start does not need.
    fn window(&self, local: u64, offset: u64, length: u64, size: u64) -> u64 {
        let end = self
            .startup
            .get(&local)
            .and_then(|ranges| {
                ranges
                    .iter()
                    .filter(|&&(start, end)| start <= offset && offset < end)
                    .map(|&(_, end)| end)
                    .max()
            })
            .map_or(WINDOW, |end| (end - offset).min(WINDOW));
        end.max(length).min(size - offset)
    }
}

/// The inode of `local` in `slot`.
fn inode(slot: u32, local: u64) -> u64 {
    (u64::from(slot) << LOCAL_BITS) | local
}

/// `(slot, local inode)` of a pool inode (slot 0: the pool's root).
fn split(ino: INodeNo) -> (u32, u64) {
    let ino = u64::from(ino);
    ((ino >> LOCAL_BITS) as u32, ino & ((1 << LOCAL_BITS) - 1))
}

/// A file of the pool: (slot, local inode).
type FileKey = (u32, u64);
/// A window: (offset, bytes, last use).
type Window = (u64, Arc<Vec<u8>>, u64);

/// Read windows of every release, least recently used first out, bounded
/// in bytes.
#[derive(Default)]
struct Windows {
    /// (slot, local inode) → (offset, bytes, last use).
    by_file: HashMap<FileKey, Window>,
    /// last use → file, oldest first.
    by_use: BTreeMap<u64, (u32, u64)>,
    bytes: usize,
    clock: u64,
}

impl Windows {
    fn get(&mut self, key: (u32, u64)) -> Option<(u64, Arc<Vec<u8>>)> {
        self.clock += 1;
        let clock = self.clock;
        let (start, bytes, used) = self.by_file.get_mut(&key)?;
        self.by_use.remove(used);
        *used = clock;
        self.by_use.insert(clock, key);
        Some((*start, bytes.clone()))
    }

    fn insert(&mut self, key: (u32, u64), start: u64, bytes: Arc<Vec<u8>>) {
        self.remove(key);
        if bytes.len() > WINDOW_BUDGET {
            return;
        }
        while self.bytes + bytes.len() > WINDOW_BUDGET {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((_, old, _)) = self.by_file.remove(&oldest) {
                self.bytes -= old.len();
            }
        }
        self.clock += 1;
        self.bytes += bytes.len();
        self.by_use.insert(self.clock, key);
        self.by_file.insert(key, (start, bytes, self.clock));
    }

    fn remove(&mut self, key: (u32, u64)) {
        if let Some((_, old, used)) = self.by_file.remove(&key) {
            self.by_use.remove(&used);
            self.bytes -= old.len();
        }
    }

    fn remove_slot(&mut self, slot: u32) {
        let keys: Vec<_> = self
            .by_file
            .keys()
            .filter(|k| k.0 == slot)
            .copied()
            .collect();
        for key in keys {
            self.remove(key);
        }
    }
}

/// How an open file of the pool is read.
enum Handle {
    /// Cached by the kernel, read through [`PoolFs::read`]: from Kubo until
    /// the file is local, then from the local file (kept once found).
    Cached {
        key: FileKey,
        cid: String,
        local: Mutex<Option<Arc<std::fs::File>>>,
    },
    /// Passed through to the local file by the kernel.
    Passthrough { key: FileKey, _id: Arc<BackingId> },
}

/// The open handles of one inode, as the kernel's I/O mode sees them.
#[derive(Default)]
struct InodeIo {
    /// Cached handles open: while any is, no open may pass through.
    cached: u32,
    /// The backing file of the passthrough handles open (shared by all).
    backing: std::sync::Weak<BackingId>,
}

/// Which files are read how, across the pool.
#[derive(Default)]
struct OpenFiles {
    handles: HashMap<u64, Arc<Handle>>,
    inodes: HashMap<FileKey, InodeIo>,
}

/// What the session and the pool's owner share.
struct Shared {
    slots: RwLock<HashMap<u32, Arc<ReleaseTree>>>,
    kubo: Client,
    runtime: tokio::runtime::Handle,
    read_timeout: Duration,
    windows: Mutex<Windows>,
    reads: Arc<tokio::sync::Semaphore>,
    /// Verified local files, when the daemon keeps them.
    local: Option<LocalStore>,
    /// Whether the kernel granted passthrough (and it still works).
    passthrough: AtomicBool,
    open: Mutex<OpenFiles>,
    next_handle: AtomicU64,
}

impl Shared {
    /// The local file a cached handle reads, if the file is local by now
    /// (looked up while it is not; kept once found).
    fn local_file(&self, handle: &Handle) -> Option<Arc<std::fs::File>> {
        let Handle::Cached { cid, local, .. } = handle else {
            return None;
        };
        let store = self.local.as_ref()?;
        let mut local = local.lock().expect("not poisoned");
        if local.is_none() {
            *local = store.open(cid).map(Arc::new);
        }
        local.clone()
    }

    fn tree(&self, slot: u32) -> Option<Arc<ReleaseTree>> {
        self.slots.read().expect("not poisoned").get(&slot).cloned()
    }

    fn attr(&self, ino: u64, tree: &ReleaseTree, node: &Node) -> FileAttr {
        let (kind, nlink, size) = match node.kind {
            EntryKind::Directory => (FileType::Directory, 2, 0),
            EntryKind::File => (FileType::RegularFile, 1, node.size),
            EntryKind::Symlink => (
                FileType::Symlink,
                1,
                node.target.as_ref().map_or(0, |t| t.len() as u64),
            ),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: tree.mtime,
            mtime: tree.mtime,
            ctime: tree.mtime,
            crtime: tree.mtime,
            kind,
            perm: node.mode as u16,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    /// The pool's root: a directory only root may enter.
    fn root_attr(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo(ROOT),
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::Directory,
            perm: 0o700,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }
}

/// The session's side of [`Shared`].
struct PoolFs(Arc<Shared>);

/// The daemon's one FUSE session and the releases it serves.
pub struct Pool {
    shared: Arc<Shared>,
    /// Where the session is mounted (private to root).
    path: PathBuf,
    next: AtomicU32,
    session: Mutex<Option<fuser::BackgroundSession>>,
    /// Slots no longer mounted by the daemon, served until no sandbox uses
    /// them.
    retired: Mutex<Vec<Slot>>,
}

/// One release served by a [`Pool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot(u32);

impl Pool {
    /// Mounts the pool's session on `path` (created; stale mounts there are
    /// detached first), reading through `kubo`.
    /// Files found verified in `local` are served from there.
    pub fn start(
        path: &Path,
        kubo: Client,
        read_timeout: Duration,
        local: Option<LocalStore>,
    ) -> Result<Pool, MountError> {
        let failed = |source| MountError::Mount {
            path: path.to_owned(),
            source,
        };
        crate::mounts::detach_below(path);
        std::fs::create_dir_all(path).map_err(failed)?;
        let shared = Arc::new(Shared {
            slots: Default::default(),
            kubo,
            runtime: tokio::runtime::Handle::current(),
            read_timeout,
            windows: Default::default(),
            reads: Arc::new(tokio::sync::Semaphore::new(READS_IN_FLIGHT)),
            local,
            passthrough: AtomicBool::new(false),
            open: Default::default(),
            next_handle: AtomicU64::new(1),
        });
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::RO,
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::DefaultPermissions,
            MountOption::FSName("flatipfs".into()),
            MountOption::Subtype("flatipfs".into()),
        ];
        config.acl = SessionACL::All;
        config.n_threads = Some(THREADS);
        let session = fuser::spawn_mount(PoolFs(shared.clone()), path, &config).map_err(failed)?;
        Ok(Pool {
            shared,
            path: path.to_owned(),
            next: AtomicU32::new(1),
            session: Mutex::new(Some(session)),
            retired: Default::default(),
        })
    }

    /// Serves `manifest`'s `files/` on `target` (a bind mount of a new slot,
    /// `ro,nosuid,nodev`).
    pub fn attach(&self, manifest: &Manifest, target: &Path) -> Result<Slot, MountError> {
        self.attach_tree(ReleaseTree::new(manifest)?, target)
    }

    /// Like [`Pool::attach`], with every read of the new slot noted in
    /// `recorder`. The slot is new, so the kernel has none of its pages
    /// cached: every read the app makes through it reaches the daemon.
    pub fn attach_recording(
        &self,
        manifest: &Manifest,
        target: &Path,
        recorder: Arc<Recorder>,
    ) -> Result<Slot, MountError> {
        let mut tree = ReleaseTree::new(manifest)?;
        tree.recorder = Some(recorder);
        self.attach_tree(tree, target)
    }

    fn attach_tree(&self, tree: ReleaseTree, target: &Path) -> Result<Slot, MountError> {
        let tree = Arc::new(tree);
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        self.shared
            .slots
            .write()
            .expect("not poisoned")
            .insert(slot, tree);
        let source = self.path.join(slot.to_string());
        let bound = crate::trees::bind(&source, target);
        if let Err(e) = bound {
            self.forget(Slot(slot));
            return Err(MountError::Mount {
                path: target.to_owned(),
                source: e,
            });
        }
        Ok(Slot(slot))
    }

    /// The file CIDs of every release the pool serves (retired slots
    /// included): their local files must stay.
    pub fn served_cids(&self) -> std::collections::HashSet<String> {
        let slots = self.shared.slots.read().expect("not poisoned");
        slots
            .values()
            .flat_map(|t| t.nodes.iter())
            .filter(|n| n.kind == EntryKind::File)
            .map(|n| n.cid.clone())
            .collect()
    }

    /// Whether a sandbox uses `slot` now (a lock on its `.ref`).
    pub fn in_use(&self, slot: Slot) -> bool {
        locked(&self.path.join(slot.0.to_string()).join(".ref"))
    }

    /// Stops serving `slot` (its bind mounts must be gone: a sandbox still
    /// reading it gets errors from now on).
    pub fn forget(&self, slot: Slot) {
        self.shared
            .slots
            .write()
            .expect("not poisoned")
            .remove(&slot.0);
        self.shared
            .windows
            .lock()
            .expect("not poisoned")
            .remove_slot(slot.0);
    }

    /// `slot` is no longer mounted: stop serving it now, or once the last
    /// sandbox using it is gone ([`Pool::sweep`]).
    pub fn retire(&self, slot: Slot) {
        if self.in_use(slot) {
            self.retired.lock().expect("not poisoned").push(slot);
        } else {
            self.forget(slot);
        }
    }

    /// Stops serving the retired slots no sandbox uses any more.
    pub fn sweep(&self) {
        let retired = std::mem::take(&mut *self.retired.lock().expect("not poisoned"));
        for slot in retired {
            self.retire(slot);
        }
    }

    /// Unmounts the session (the daemon is stopping; every bind mount of it
    /// answers ENOTCONN from now on).
    pub fn stop(&self) {
        if let Some(session) = self.session.lock().expect("not poisoned").take() {
            if let Err(e) = nix::mount::umount2(&self.path, MntFlags::MNT_DETACH) {
                warn!(path = %self.path.display(), "cannot unmount: {e}");
            }
            drop(session);
        }
    }
}

/// Whether someone holds a lock on `path` (bwrap's read lock on a running
/// app's `files/.ref`), probed with `F_OFD_GETLK`.
pub fn locked(path: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    // Never through a symlink, never blocking on a FIFO a release made.
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    let mut lock = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    match nix::fcntl::fcntl(
        file.as_raw_fd(),
        nix::fcntl::FcntlArg::F_OFD_GETLK(&mut lock),
    ) {
        Ok(_) => lock.l_type != nix::libc::F_UNLCK as i16,
        Err(e) => {
            warn!(path = %path.display(), "cannot probe the in-use lock: {e}");
            true
        }
    }
}

impl Filesystem for PoolFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let fs = &self.0;
        let (slot, local) = split(parent);
        if u64::from(parent) == ROOT {
            let found = name
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|&s| s != 0)
                .and_then(|s| Some((s, fs.tree(s)?)));
            return match found {
                Some((s, tree)) => reply.entry(
                    &TTL,
                    &fs.attr(inode(s, 1), &tree, &tree.nodes[0]),
                    fuser::Generation(0),
                ),
                None => reply.error(Errno::ENOENT),
            };
        }
        let found = fs.tree(slot).and_then(|tree| {
            let child = *tree.node(local)?.children.get(name.to_str()?)?;
            let attr = fs.attr(inode(slot, child), &tree, tree.node(child)?);
            Some(attr)
        });
        match found {
            Some(attr) => reply.entry(&TTL, &attr, fuser::Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = &self.0;
        if u64::from(ino) == ROOT {
            return reply.attr(&TTL, &fs.root_attr());
        }
        let (slot, local) = split(ino);
        let found = fs
            .tree(slot)
            .and_then(|tree| Some(fs.attr(u64::from(ino), &tree, tree.node(local)?)));
        match found {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let (slot, local) = split(ino);
        let target = self
            .0
            .tree(slot)
            .and_then(|tree| tree.node(local)?.target.clone());
        match target {
            Some(target) => reply.data(target.as_bytes()),
            None => reply.error(Errno::EINVAL),
        }
    }

    /// Asks for passthrough; backing files may lie on a stacked file
    /// system (overlayfs) themselves.
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if self.0.local.is_none() {
            return Ok(());
        }
        match config.add_capabilities(InitFlags::FUSE_PASSTHROUGH) {
            Ok(()) => {
                let _ = config.set_max_stack_depth(2);
                self.0.passthrough.store(true, Ordering::Relaxed);
                tracing::info!("FUSE passthrough on: local files are read by the kernel");
            }
            Err(_) => {
                warn!("the kernel offers no FUSE passthrough: local files are read by the daemon")
            }
        }
        Ok(())
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = &self.0;
        let (slot, local) = split(ino);
        let Some(tree) = fs.tree(slot) else {
            return reply.error(Errno::ENOENT);
        };
        let Some(node) = tree.node(local) else {
            return reply.error(Errno::ENOENT);
        };
        if node.kind != EntryKind::File {
            return reply.error(Errno::EISDIR);
        }
        let key = (slot, local);
        // Files the CID carries (empty ones included) are served from it.
        let file = match (&fs.local, &tree.recorder) {
            (Some(store), None) if node.size > 0 => store.open(&node.cid),
            _ => None,
        };
        let handle = fs.next_handle.fetch_add(1, Ordering::Relaxed);
        let mut open = fs.open.lock().expect("not poisoned");
        let io = open.inodes.entry(key).or_default();
        if let Some(file) = &file {
            if io.cached == 0 && fs.passthrough.load(Ordering::Relaxed) {
                let id = match io.backing.upgrade() {
                    Some(id) => Some(id),
                    None => match reply.open_backing(file) {
                        Ok(id) => {
                            let id = Arc::new(id);
                            io.backing = Arc::downgrade(&id);
                            Some(id)
                        }
                        Err(e) => {
                            warn!("FUSE passthrough refused ({e}): local files are read by the daemon from now on");
                            fs.passthrough.store(false, Ordering::Relaxed);
                            None
                        }
                    },
                };
                if let Some(id) = id {
                    reply.opened_passthrough(FileHandle(handle), FopenFlags::empty(), &id);
                    open.handles
                        .insert(handle, Arc::new(Handle::Passthrough { key, _id: id }));
                    return;
                }
            }
        }
        io.cached += 1;
        open.handles.insert(
            handle,
            Arc::new(Handle::Cached {
                key,
                cid: node.cid.clone(),
                local: Mutex::new(file.map(Arc::new)),
            }),
        );
        reply.opened(FileHandle(handle), FopenFlags::FOPEN_KEEP_CACHE);
    }

    /// Forgets the handle; the last passthrough handle of an inode closes
    /// its backing file (the kernel let go of it already).
    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: fuser::ReplyEmpty,
    ) {
        let mut open = self.0.open.lock().expect("not poisoned");
        if let Some(handle) = open.handles.remove(&u64::from(fh)) {
            let key = match &*handle {
                Handle::Cached { key, .. } => {
                    if let Some(io) = open.inodes.get_mut(key) {
                        io.cached = io.cached.saturating_sub(1);
                    }
                    *key
                }
                Handle::Passthrough { key, .. } => *key,
            };
            drop(handle);
            if let Some(io) = open.inodes.get(&key) {
                if io.cached == 0 && io.backing.strong_count() == 0 {
                    open.inodes.remove(&key);
                }
            }
        }
        reply.ok();
    }

    /// Nothing is buffered for writing: a close has nothing to flush.
    /// `ENOSYS` tells the kernel so once and for all (it sends no `FLUSH`
    /// on later closes: one round trip less per file read).
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: fuser::ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// Answered from the window cache, else from a task of the runtime:
    /// the worker thread is free again at once.
    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.0.clone();
        let (slot, local) = split(ino);
        let handle = fs
            .open
            .lock()
            .expect("not poisoned")
            .handles
            .get(&u64::from(fh))
            .cloned();
        let Some(tree) = fs.tree(slot) else {
            return reply.error(Errno::ENOENT);
        };
        let Some(node) = tree.node(local).filter(|n| n.kind == EntryKind::File) else {
            return reply.error(Errno::ENOENT);
        };
        if offset >= node.size {
            return reply.data(&[]);
        }
        let length = (size as u64).min(node.size - offset);
        if let Some(recorder) = &tree.recorder {
            recorder.record(&node.cid, offset, length);
        }
        if let Some(bytes) = crate::unixfs::inline_file(&node.cid) {
            let from = (offset as usize).min(bytes.len());
            let to = (from + length as usize).min(bytes.len());
            return reply.data(&bytes[from..to]);
        }
        if let Some(file) = handle.as_deref().and_then(|h| fs.local_file(h)) {
            let mut buffer = vec![0u8; length as usize];
            return match file.read_exact_at(&mut buffer, offset) {
                Ok(()) => reply.data(&buffer),
                Err(e) => {
                    warn!(cid = %node.cid, offset, "cannot read the local file: {e}");
                    reply.error(Errno::EIO)
                }
            };
        }
        let key = (slot, local);
        let cached = fs.windows.lock().expect("not poisoned").get(key);
        if let Some((start, bytes)) = cached {
            if offset >= start && offset + length <= start + bytes.len() as u64 {
                let from = (offset - start) as usize;
                return reply.data(&bytes[from..from + length as usize]);
            }
        }
        let window = tree.window(local, offset, length, node.size);
        let cid = node.cid.clone();
        let runtime = fs.runtime.clone();
        runtime.spawn(async move {
            let read = async {
                let _permit = fs.reads.acquire().await;
                crate::range_blocks::read(&fs.kubo, &cid, offset, window, WINDOW_FETCHES).await
            };
            match tokio::time::timeout(fs.read_timeout, read).await {
                Ok(Ok(bytes)) if bytes.len() as u64 == window => {
                    reply.data(&bytes[..length as usize]);
                    fs.windows
                        .lock()
                        .expect("not poisoned")
                        .insert(key, offset, Arc::new(bytes));
                }
                Ok(Ok(bytes)) => {
                    warn!(%cid, offset, window, got = bytes.len(), "short read from Kubo");
                    reply.error(Errno::EIO)
                }
                Ok(Err(e)) => {
                    warn!(%cid, offset, window, "read failed: {e}");
                    reply.error(Errno::EIO)
                }
                Err(_) => {
                    warn!(%cid, offset, window, "read not served within {:?}", fs.read_timeout);
                    reply.error(Errno::EIO)
                }
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = &self.0;
        let mut entries = Vec::new();
        if u64::from(ino) == ROOT {
            entries.push((ROOT, FileType::Directory, ".".to_string()));
            entries.push((ROOT, FileType::Directory, "..".to_string()));
            let mut slots: Vec<u32> = fs
                .slots
                .read()
                .expect("not poisoned")
                .keys()
                .copied()
                .collect();
            slots.sort_unstable();
            for s in slots {
                entries.push((inode(s, 1), FileType::Directory, s.to_string()));
            }
        } else {
            let (slot, local) = split(ino);
            let Some(tree) = fs.tree(slot) else {
                return reply.error(Errno::ENOENT);
            };
            let Some(node) = tree.node(local).filter(|n| n.kind == EntryKind::Directory) else {
                return reply.error(Errno::ENOTDIR);
            };
            // `..` of a release's root is its own root: the bind mount is
            // all a user sees of the pool.
            let parent = if local == 1 { local } else { node.parent };
            entries.push((inode(slot, local), FileType::Directory, ".".to_string()));
            entries.push((inode(slot, parent), FileType::Directory, "..".to_string()));
            for (name, &child) in &node.children {
                let kind = match tree.nodes[child as usize - 1].kind {
                    EntryKind::Directory => FileType::Directory,
                    EntryKind::File => FileType::RegularFile,
                    EntryKind::Symlink => FileType::Symlink,
                };
                entries.push((inode(slot, child), kind, name.clone()));
            }
        }
        for (i, (inode, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(inode), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inodes_split_into_slot_and_local() {
        assert_eq!(split(INodeNo(inode(7, 42))), (7, 42));
        assert_eq!(split(INodeNo(ROOT)), (0, 1));
    }

    #[test]
    fn windows_stay_within_the_budget_oldest_out_first() {
        let mut w = Windows::default();
        let big = || Arc::new(vec![0u8; 4 << 20]);
        for i in 0..20 {
            w.insert((1, i), 0, big());
        }
        assert!(w.bytes <= WINDOW_BUDGET);
        assert_eq!(w.by_file.len(), WINDOW_BUDGET / (4 << 20));
        assert!(w.get((1, 0)).is_none(), "the oldest went first");
        assert!(w.get((1, 19)).is_some());
        w.remove_slot(1);
        assert_eq!(w.bytes, 0);
        assert!(w.by_use.is_empty());
    }

    #[test]
    fn a_read_inside_a_startup_range_widens_only_to_its_end() {
        let tree = ReleaseTree {
            nodes: Vec::new(),
            mtime: UNIX_EPOCH,
            recorder: None,
            startup: HashMap::from([(2, vec![(0, 128 << 10), (1 << 20, (1 << 20) + 4096)])]),
        };
        let size = 64 << 20;
        // Inside the first range: to its end, at least what was asked.
        assert_eq!(tree.window(2, 0, 4096, size), 128 << 10);
        assert_eq!(tree.window(2, 120 << 10, 4096, size), 8 << 10);
        assert_eq!(tree.window(2, 120 << 10, 128 << 10, size), 128 << 10);
        assert_eq!(tree.window(2, 1 << 20, 4096, size), 4096);
        // Outside the startup set, and in other files: the whole window.
        assert_eq!(tree.window(2, 512 << 10, 4096, size), WINDOW);
        assert_eq!(tree.window(3, 0, 4096, size), WINDOW);
        // Never past the end of the file.
        assert_eq!(tree.window(3, size - 100, 4096, size), 100);
    }
}
