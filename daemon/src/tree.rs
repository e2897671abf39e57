//! Reading a deploy directory from local disk for publishing.
//!
//! Walks the tree without following symlinks, in a stable (sorted) order, and
//! refuses what a release cannot hold: device files, sockets and FIFOs, names
//! that are not UTF-8, and files beyond the configured size limit.
//!
//! The daemon publishes as root a directory a caller names, so everything is
//! reached through descriptors: the deploy directory is opened once, every
//! directory and file below it with `openat2` (`RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`, `O_NOFOLLOW`) relative to its parent's, and a file
//! is read only if what was opened is the regular file the scan saw (same
//! device, inode and size). A symlink swapped in after the scan (towards
//! `/etc/shadow`, say) is refused, never followed. The deploy directory
//! itself may be a symlink (Flatpak's `active`): the caller names it and could
//! name its target as well.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::{openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};

use crate::release::EntryKind;

/// One entry below the root, with its path relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    /// Relative path with `/` separators, never empty.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Bytes, for files; 0 otherwise.
    pub size: u64,
    /// Symlink target, as stored.
    pub target: Option<String>,
    /// Where it is on disk (for messages; never opened by this path).
    pub source: PathBuf,
    /// Device and inode the scan saw: what is read must be the same.
    pub dev: u64,
    pub ino: u64,
}

/// Why a tree cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a {kind}; a release can only hold files, directories and symlinks")]
    Special { path: PathBuf, kind: &'static str },
    #[error("{path} has a name that is not UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error("{path} is {size} bytes, over the limit of {limit} bytes (publish.max_file_size)")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path} holds more than {limit} entries (publish.max_entries)")]
    TooMany { path: PathBuf, limit: usize },
    #[error("{path} changed while it was being published ({what}); nothing was published")]
    Changed { path: PathBuf, what: String },
}

/// Limits applied while walking.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_entries: usize,
}

/// A scanned deploy directory: its entries, and the descriptor of the
/// directory they are opened from.
pub struct Tree {
    root: Arc<OwnedFd>,
    /// The deploy directory as the caller named it (for messages).
    pub path: PathBuf,
    /// Every entry below the root (not the root itself), parents before
    /// children, siblings sorted by name.
    pub entries: Vec<LocalEntry>,
    /// The first file refused by an opener ([`Tree::opener`]).
    refused: Arc<Mutex<Option<TreeError>>>,
}

/// Opens one file of a [`Tree`] for reading, when called (so that only the
/// file being read is open).
pub type Opener = Box<dyn FnOnce() -> std::io::Result<std::fs::File> + Send>;

/// Scans the tree below `root`; see the module docs.
pub fn scan(root: &Path, limits: Limits) -> Result<Tree, TreeError> {
    let fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(root)(e.into()))?;
    // SAFETY: `open` just returned this descriptor; nothing else owns it.
    let root_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut entries = Vec::new();
    walk(&root_fd, root, "", limits, &mut entries)?;
    Ok(Tree {
        root: Arc::new(root_fd),
        path: root.to_owned(),
        entries,
        refused: Arc::default(),
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Opens `path` below directory `dir` without following any symlink and
/// without leaving `dir`.
fn open_beneath(dir: RawFd, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let fd = openat2(dir, path, how)?;
    // SAFETY: `openat2` just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

fn walk(
    dir: &OwnedFd,
    dir_path: &Path,
    prefix: &str,
    limits: Limits,
    out: &mut Vec<LocalEntry>,
) -> Result<(), TreeError> {
    let mut names = Vec::new();
    let mut listing = nix::dir::Dir::openat(
        Some(dir.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(dir_path)(e.into()))?;
    for entry in listing.iter() {
        let entry = entry.map_err(|e| io(dir_path)(e.into()))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = std::str::from_utf8(name).map_err(|_| TreeError::NotUtf8 {
            path: dir_path.join(OsStr::from_bytes(name)),
        })?;
        names.push(name.to_string());
    }
    drop(listing);
    names.sort();
    for name in names {
        let source = dir_path.join(&name);
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let stat = fstatat(
            Some(dir.as_raw_fd()),
            name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io(&source)(e.into()))?;
        let kind = file_type(&stat);
        let mode = stat.st_mode & 0o7777;
        let (dev, ino) = (stat.st_dev, stat.st_ino);
        if out.len() >= limits.max_entries {
            return Err(TreeError::TooMany {
                path: dir_path.to_owned(),
                limit: limits.max_entries,
            });
        }
        if kind == SFlag::S_IFLNK {
            let target = readlinkat(Some(dir.as_raw_fd()), name.as_str())
                .map_err(|e| io(&source)(e.into()))?;
            let target = target
                .to_str()
                .ok_or_else(|| TreeError::NotUtf8 {
                    path: source.clone(),
                })?
                .to_string();
            out.push(LocalEntry {
                path,
                kind: EntryKind::Symlink,
                mode,
                size: 0,
                target: Some(target),
                source,
                dev,
                ino,
            });
        } else if kind == SFlag::S_IFDIR {
            let child = open_beneath(dir.as_raw_fd(), &name, OFlag::O_DIRECTORY)
                .map_err(|e| io(&source)(e.into()))?;
            let opened = std::fs::File::from(child);
            let meta = opened.metadata().map_err(io(&source))?;
            if meta.dev() != dev || meta.ino() != ino {
                return Err(TreeError::Changed {
                    path: source,
                    what: "another directory was put in its place".into(),
                });
            }
            out.push(LocalEntry {
                path: path.clone(),
                kind: EntryKind::Directory,
                mode,
                size: 0,
                target: None,
                source: source.clone(),
                dev,
                ino,
            });
            walk(&OwnedFd::from(opened), &source, &path, limits, out)?;
        } else if kind == SFlag::S_IFREG {
            let size = stat.st_size as u64;
            if size > limits.max_file_size {
                return Err(TreeError::TooLarge {
                    path: source,
                    size,
                    limit: limits.max_file_size,
                });
            }
            out.push(LocalEntry {
                path,
                kind: EntryKind::File,
                mode,
                size,
                target: None,
                source,
                dev,
                ino,
            });
        } else {
            let kind = if kind == SFlag::S_IFBLK {
                "block device"
            } else if kind == SFlag::S_IFCHR {
                "character device"
            } else if kind == SFlag::S_IFSOCK {
                "socket"
            } else {
                "FIFO"
            };
            return Err(TreeError::Special { path: source, kind });
        }
    }
    Ok(())
}

impl Tree {
    /// An [`Opener`] for file `entry`, for an upload that opens each file
    /// only when it reaches it: relative to the deploy directory's
    /// descriptor, without following symlinks, and refused unless it is the
    /// regular file the scan saw (device, inode, size). A refusal is kept
    /// for [`Tree::refused`] (the upload only sees an I/O error).
    pub fn opener(&self, entry: &LocalEntry) -> Opener {
        let (root, entry, refused) = (self.root.clone(), entry.clone(), self.refused.clone());
        Box::new(move || {
            open_checked(&root, &entry).map_err(|e| {
                let message = e.to_string();
                let mut slot = refused.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                std::io::Error::other(message)
            })
        })
    }

    /// The whole of file `entry`, read through its descriptor like
    /// [`Tree::opener`]; for small documents (at most `limit` bytes).
    pub fn read(&self, entry: &LocalEntry, limit: u64) -> Result<Vec<u8>, TreeError> {
        if entry.size > limit {
            return Err(TreeError::TooLarge {
                path: entry.source.clone(),
                size: entry.size,
                limit,
            });
        }
        let file = open_checked(&self.root, entry)?;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, limit), &mut data)
            .map_err(io(&entry.source))?;
        Ok(data)
    }

    /// The first file an opener refused, if any.
    pub fn refused(&self) -> Option<TreeError> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Opens file `entry` below `root`; see [`Tree::opener`].
fn open_checked(root: &OwnedFd, entry: &LocalEntry) -> Result<std::fs::File, TreeError> {
    let changed = |what: &str| TreeError::Changed {
        path: entry.source.clone(),
        what: what.into(),
    };
    let fd = match open_beneath(root.as_raw_fd(), &entry.path, OFlag::empty()) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ELOOP | nix::errno::Errno::EXDEV) => {
            return Err(changed("a symlink is in its path now"))
        }
        Err(e) => return Err(io(&entry.source)(e.into())),
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(io(&entry.source))?;
    if !meta.is_file() {
        return Err(changed("it is no longer a regular file"));
    }
    if meta.dev() != entry.dev || meta.ino() != entry.ino {
        return Err(changed("another file was put in its place"));
    }
    if meta.len() != entry.size {
        return Err(changed(&format!(
            "{} bytes now, {} when scanned",
            meta.len(),
            entry.size
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_file_size: 1 << 20,
        max_entries: 1000,
    };

    #[test]
    fn walks_sorted_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("b/c/f"), b"abc").unwrap();
        std::fs::write(root.join("a"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", root.join("b/link")).unwrap();
        let entries = scan(root, LIMITS).unwrap().entries;
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "b", "b/c", "b/c/f", "b/link"]);
        assert_eq!(entries[3].size, 3);
        assert_eq!(entries[4].kind, EntryKind::Symlink);
        assert_eq!(entries[4].target.as_deref(), Some("/etc/shadow"));
    }

    #[test]
    fn refuses_fifos_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            scan(dir.path(), LIMITS),
            Err(TreeError::Special { kind: "FIFO", .. })
        ));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), vec![0u8; 2 << 20]).unwrap();
        let e = scan(dir.path(), LIMITS).err().unwrap();
        assert!(e.to_string().contains("over the limit"), "{e}");
    }

    /// A tree with `files/a` (3 bytes) and `files/b`, scanned.
    fn scanned() -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("files/a"), b"abc").unwrap();
        std::fs::write(dir.path().join("files/b"), b"b").unwrap();
        let tree = scan(dir.path(), LIMITS).unwrap();
        (dir, tree)
    }

    fn entry<'a>(tree: &'a Tree, path: &str) -> &'a LocalEntry {
        tree.entries.iter().find(|e| e.path == path).unwrap()
    }

    #[test]
    fn an_unchanged_file_is_read_through_its_descriptor() {
        let (_dir, tree) = scanned();
        let mut file = open_checked(&tree.root, entry(&tree, "files/a")).unwrap();
        let mut read = String::new();
        std::io::Read::read_to_string(&mut file, &mut read).unwrap();
        assert_eq!(read, "abc");
    }

    #[test]
    fn a_file_swapped_for_a_symlink_after_the_scan_is_refused() {
        let (dir, tree) = scanned();
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), b"secret").unwrap();
        std::fs::remove_file(dir.path().join("files/a")).unwrap();
        std::os::unix::fs::symlink(secret.path(), dir.path().join("files/a")).unwrap();
        let e = open_checked(&tree.root, entry(&tree, "files/a")).unwrap_err();
        assert!(matches!(e, TreeError::Changed { .. }), "{e}");
        assert!(e.to_string().contains("symlink"), "{e}");
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_after_the_scan_is_refused() {
        let (dir, tree) = scanned();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("a"), b"abc").unwrap();
        std::fs::rename(dir.path().join("files"), dir.path().join("old")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("files")).unwrap();
        let e = open_checked(&tree.root, entry(&tree, "files/a")).unwrap_err();
        assert!(matches!(e, TreeError::Changed { .. }), "{e}");
    }

    #[test]
    fn another_file_or_size_in_its_place_is_refused() {
        let (dir, tree) = scanned();
        // Same name, another inode (the old one kept aside, so that its
        // number is not reused).
        std::fs::rename(dir.path().join("files/a"), dir.path().join("aside")).unwrap();
        std::fs::write(dir.path().join("files/a"), b"abc").unwrap();
        let e = open_checked(&tree.root, entry(&tree, "files/a")).unwrap_err();
        assert!(e.to_string().contains("another file"), "{e}");
        std::fs::write(dir.path().join("files/b"), b"longer").unwrap();
        let e = open_checked(&tree.root, entry(&tree, "files/b")).unwrap_err();
        assert!(e.to_string().contains("bytes now"), "{e}");
    }

    #[test]
    fn an_opener_keeps_its_refusal_for_the_publisher() {
        let (dir, tree) = scanned();
        std::fs::remove_file(dir.path().join("files/b")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", dir.path().join("files/b")).unwrap();
        assert!(tree.opener(entry(&tree, "files/a"))().is_ok());
        assert!(tree.refused().is_none());
        let e = tree.opener(entry(&tree, "files/b"))().unwrap_err();
        assert!(e.to_string().contains("changed"), "{e}");
        assert!(matches!(tree.refused(), Some(TreeError::Changed { .. })));
    }

    #[test]
    fn a_symlinked_deploy_directory_is_followed_once() {
        let (dir, _) = scanned();
        let link_dir = tempfile::tempdir().unwrap();
        let active = link_dir.path().join("active");
        std::os::unix::fs::symlink(dir.path(), &active).unwrap();
        let tree = scan(&active, LIMITS).unwrap();
        let paths: Vec<&str> = tree.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["files", "files/a", "files/b"]);
    }
}
