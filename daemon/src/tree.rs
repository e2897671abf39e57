//! Reading a deploy directory from local disk for publishing.
//!
//! Walks the tree without following symlinks, in a stable (sorted) order, and
//! refuses what a release cannot hold: device files, sockets and FIFOs, names
//! that are not UTF-8, and files beyond the configured size limit.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    /// Where it is on disk.
    pub source: PathBuf,
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
}

/// Limits applied while walking.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_entries: usize,
}

/// Every entry below `root` (not `root` itself), parents before children,
/// siblings sorted by name.
pub fn scan(root: &Path, limits: Limits) -> Result<Vec<LocalEntry>, TreeError> {
    let mut entries = Vec::new();
    walk(root, "", limits, &mut entries)?;
    Ok(entries)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_owned(),
        source,
    }
}

fn walk(
    dir: &Path,
    prefix: &str,
    limits: Limits,
    out: &mut Vec<LocalEntry>,
) -> Result<(), TreeError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| TreeError::NotUtf8 { path: entry.path() })?
            .to_string();
        names.push(name);
    }
    names.sort();
    for name in names {
        let source = dir.join(&name);
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(&source).map_err(io(&source))?;
        let file_type = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        if out.len() >= limits.max_entries {
            return Err(TreeError::TooMany {
                path: dir.to_owned(),
                limit: limits.max_entries,
            });
        }
        if file_type.is_symlink() {
            let target = std::fs::read_link(&source).map_err(io(&source))?;
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
            });
        } else if file_type.is_dir() {
            out.push(LocalEntry {
                path: path.clone(),
                kind: EntryKind::Directory,
                mode,
                size: 0,
                target: None,
                source: source.clone(),
            });
            walk(&source, &path, limits, out)?;
        } else if file_type.is_file() {
            if meta.len() > limits.max_file_size {
                return Err(TreeError::TooLarge {
                    path: source,
                    size: meta.len(),
                    limit: limits.max_file_size,
                });
            }
            out.push(LocalEntry {
                path,
                kind: EntryKind::File,
                mode,
                size: meta.len(),
                target: None,
                source,
            });
        } else {
            let kind = if file_type.is_block_device() {
                "block device"
            } else if file_type.is_char_device() {
                "character device"
            } else if file_type.is_socket() {
                "socket"
            } else {
                "FIFO"
            };
            return Err(TreeError::Special { path: source, kind });
        }
    }
    Ok(())
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
        let entries = scan(root, LIMITS).unwrap();
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
        let e = scan(dir.path(), LIMITS).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
    }
}
