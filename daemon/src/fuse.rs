//! The read-only FUSE filesystem that serves one release's `files/`.
//!
//! Names, types, modes, sizes and symlink targets come from the validated
//! manifest alone: `lookup`, `getattr`, `readdir` and `readlink` never call
//! Kubo. File contents are read through Kubo's `cat` with offset and length,
//! addressed by the file's CID, a window of up to 4 MiB per call (kept per
//! file for the reads that follow); content is immutable, so the kernel may
//! cache it for good (`FOPEN_KEEP_CACHE`, long TTLs). A read that Kubo cannot serve
//! within the configured time fails with `EIO` instead of hanging, and
//! several worker threads keep one slow read from blocking the others.
//! Mounted `ro,nosuid,nodev,allow_other,default_permissions`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner,
    MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
    SessionACL,
};
use tracing::warn;

use crate::kubo::Client;
use crate::recording::Recorder;
use crate::release::{EntryKind, Manifest};

/// How long the kernel may cache names and attributes: they never change.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Worker threads: one slow read must not block the others.
const THREADS: usize = 8;
/// A read that misses fetches this much from the requested offset (one
/// Kubo call instead of one per 128 KiB kernel request).
const WINDOW: u64 = 4 << 20;
/// Read windows kept (per file, the latest one): at most 32 × 4 MiB.
const WINDOWS: usize = 32;

struct Node {
    parent: u64,
    kind: EntryKind,
    mode: u32,
    size: u64,
    target: Option<String>,
    cid: String,
    /// Directories: name → inode.
    children: BTreeMap<String, u64>,
}

/// Bytes of a file from an offset, as one Kubo call returned them.
type Window = (u64, Arc<Vec<u8>>);

/// One release's `files/` tree.
pub struct ReleaseFs {
    /// Index `inode - 1`.
    nodes: Vec<Node>,
    mtime: SystemTime,
    kubo: Client,
    runtime: tokio::runtime::Handle,
    read_timeout: Duration,
    /// inode → the latest window read from Kubo.
    windows: Mutex<HashMap<u64, Window>>,
    /// Set only on a mount made to record a startup set (`recording`).
    recorder: Option<Arc<Recorder>>,
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

impl ReleaseFs {
    /// The filesystem of `manifest`'s `files/` (the manifest must be
    /// validated: paths safe, parents listed before children).
    pub fn new(
        manifest: &Manifest,
        kubo: Client,
        read_timeout: Duration,
    ) -> Result<Self, MountError> {
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
        }
        Ok(ReleaseFs {
            nodes,
            mtime: UNIX_EPOCH
                .checked_add(Duration::from_secs(manifest.published))
                .unwrap_or(UNIX_EPOCH),
            kubo,
            runtime: tokio::runtime::Handle::current(),
            read_timeout,
            windows: Default::default(),
            recorder: None,
        })
    }

    /// This filesystem, noting every read in `recorder` (see `recording`).
    pub fn recording(mut self, recorder: Arc<Recorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    fn node(&self, inode: INodeNo) -> Option<&Node> {
        self.nodes.get(u64::from(inode).checked_sub(1)? as usize)
    }

    fn attr(&self, inode: u64, node: &Node) -> FileAttr {
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
            ino: INodeNo(inode),
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            crtime: self.mtime,
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

    /// Mounts the filesystem on `mountpoint` in a background session.
    pub fn mount(self, mountpoint: &Path) -> Result<fuser::BackgroundSession, MountError> {
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
        fuser::spawn_mount(self, mountpoint, &config).map_err(|source| MountError::Mount {
            path: mountpoint.to_owned(),
            source,
        })
    }
}

impl Filesystem for ReleaseFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self
            .node(parent)
            .and_then(|p| p.children.get(name.to_str()?))
            .and_then(|&inode| Some((inode, self.nodes.get(inode as usize - 1)?)));
        match found {
            Some((inode, node)) => reply.entry(&TTL, &self.attr(inode, node), fuser::Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Some(node) => reply.attr(&TTL, &self.attr(u64::from(ino), node)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino).and_then(|n| n.target.as_ref()) {
            Some(target) => reply.data(target.as_bytes()),
            None => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.node(ino) {
            Some(node) if node.kind == EntryKind::File => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// Nothing is buffered for writing: a close has nothing to flush.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: fuser::ReplyEmpty,
    ) {
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(node) = self.node(ino).filter(|n| n.kind == EntryKind::File) else {
            return reply.error(Errno::ENOENT);
        };
        if offset >= node.size {
            return reply.data(&[]);
        }
        let length = (size as u64).min(node.size - offset);
        if let Some(recorder) = &self.recorder {
            recorder.record(&node.cid, offset, length);
        }
        let inode = u64::from(ino);
        let cached = self
            .windows
            .lock()
            .expect("not poisoned")
            .get(&inode)
            .cloned();
        if let Some((start, bytes)) = cached {
            if offset >= start && offset + length <= start + bytes.len() as u64 {
                let from = (offset - start) as usize;
                return reply.data(&bytes[from..from + length as usize]);
            }
        }
        let window = WINDOW.max(length).min(node.size - offset);
        // The timer must be created inside the runtime, hence the async block.
        let read = async {
            tokio::time::timeout(
                self.read_timeout,
                self.kubo.cat_range(&node.cid, offset, window),
            )
            .await
        };
        match self.runtime.block_on(read) {
            Ok(Ok(bytes)) if bytes.len() as u64 == window => {
                reply.data(&bytes[..length as usize]);
                let mut windows = self.windows.lock().expect("not poisoned");
                if windows.len() >= WINDOWS && !windows.contains_key(&inode) {
                    let victim = *windows.keys().next().expect("not empty");
                    windows.remove(&victim);
                }
                windows.insert(inode, (offset, Arc::new(bytes)));
            }
            Ok(Ok(bytes)) => {
                warn!(cid = %node.cid, offset, window, got = bytes.len(), "short read from Kubo");
                reply.error(Errno::EIO)
            }
            Ok(Err(e)) => {
                warn!(cid = %node.cid, offset, window, "read failed: {e}");
                reply.error(Errno::EIO)
            }
            Err(_) => {
                warn!(cid = %node.cid, offset, window, "read not served within {:?}", self.read_timeout);
                reply.error(Errno::EIO)
            }
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(node) = self.node(ino).filter(|n| n.kind == EntryKind::Directory) else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut entries = vec![
            (u64::from(ino), FileType::Directory, ".".to_string()),
            (node.parent, FileType::Directory, "..".to_string()),
        ];
        for (name, &child) in &node.children {
            let kind = match self.nodes[child as usize - 1].kind {
                EntryKind::Directory => FileType::Directory,
                EntryKind::File => FileType::RegularFile,
                EntryKind::Symlink => FileType::Symlink,
            };
            entries.push((child, kind, name.clone()));
        }
        for (i, (inode, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(inode), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
