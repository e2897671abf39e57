//! Releases whose files are all local, laid out as plain directory trees
//! and bind-mounted on their deploy's `files/` instead of a FUSE slot: once a
//! release is local, opens and reads of its files are the local
//! filesystem's own (no FUSE round trip, no passthrough layer).
//!
//! A tree is `<state_directory>/trees/<release>/` (the directory `trees/`
//! is root's, 0700). Its regular files are hard links to the local store's
//! files (`local_store`: the same inodes Kubo's filestore serves to peers,
//! so no second copy). One inode has one mode: a store file takes the mode
//! of the first tree that links it, and only content needed both 0644 and
//! 0755 gets a second inode, a variant `<cid>.x` or `<cid>.r`
//! (`LocalStore::linkable`; a copy, reflinked where the filesystem can,
//! counted in the disk measurement); files whose CID
//! carries their bytes (up to 32 bytes, `.ref` among them) are written
//! into the tree. Directories are 0755, files 0644 or 0755 (the manifest's
//! clamped modes), everything root's; symlinks as in the manifest.
//!
//! Built ([`build`], after `local_store::make_local`) without ever
//! following a path: the manifest's entries are taken parents first, each
//! created relative to its parent's open directory handle (`mkdirat`,
//! `linkat`, `symlinkat`, `openat` with `O_NOFOLLOW|O_EXCL`), and an entry
//! whose parent is not a directory the build itself made (a symlink, a
//! file, nothing) or whose name is not one plain component stops the
//! build. Crash ordering: built under `<release>.tmp`, the filesystem
//! synced, renamed to `<release>`, `trees/` synced; only a tree under its
//! final name is trusted and mounted; leftovers are removed at start-up.
//!
//! Mounted ([`bind`]) read-only, `nosuid,nodev`, private (so are the FUSE
//! bind mounts, `fuse::Pool::attach`: nothing mounted on or unmounted from
//! a deploy's `files/` propagates into a running sandbox's copy). A release
//! mounted through FUSE when its tree appears has the tree put in place of
//! its FUSE mount ([`replace`]: mounted beneath it, then the FUSE mount
//! detached; `apps::LiveApp::switch_to_tree`): processes that hold files of
//! the FUSE mount open, and sandboxes started before, keep reading through
//! the FUSE slot, which is served until the release is unmounted; new opens
//! see the tree. At start-up a release with a tree is mounted
//! from it directly (no FUSE). A tree is removed when no record keeps its
//! release and no sandbox runs it (a lock on its `.ref`): by uninstall,
//! retention and vacuum ([`prune`]).

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{AtFlags, OFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;
use tracing::{info, warn};

use crate::local_store::LocalStore;
use crate::release::{clamp_mode, EntryKind, Manifest};

/// Why a release got no tree (it stays mounted through FUSE).
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("entry {0:?} is not a plain path below a directory of the tree")]
    Refused(String),
    #[error("file {0:?} is not in the local store")]
    NotLocal(String),
    #[error("release {0:?} cannot name a tree")]
    BadName(String),
}

fn errno(path: &str) -> impl FnOnce(nix::errno::Errno) -> TreeError + '_ {
    move |e| TreeError::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The directory of every tree of a state directory.
pub fn dir(state_directory: &Path) -> PathBuf {
    state_directory.join("trees")
}

/// Whether `release` can name a tree (a CID: letters and digits).
fn plain(release: &str) -> bool {
    !release.is_empty()
        && release.len() <= 128
        && release.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The finished tree of `release`, if there is one.
pub fn complete(state_directory: &Path, release: &str) -> Option<PathBuf> {
    let path = dir(state_directory).join(release);
    (plain(release) && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir()))
        .then_some(path)
}

/// Creates `trees/` (root's, 0700) and removes unfinished trees.
pub fn prepare(state_directory: &Path) -> Result<(), TreeError> {
    use std::os::unix::fs::PermissionsExt;
    let trees = dir(state_directory);
    std::fs::create_dir_all(&trees).map_err(io(&trees))?;
    std::fs::set_permissions(&trees, std::fs::Permissions::from_mode(0o700)).map_err(io(&trees))?;
    for entry in std::fs::read_dir(&trees).map_err(io(&trees))? {
        let entry = entry.map_err(io(&trees))?;
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

fn open_dir(at: Option<RawFd>, name: &CString, what: &str) -> Result<OwnedFd, TreeError> {
    let fd = nix::fcntl::openat(
        at,
        name.as_c_str(),
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno(what))?;
    // SAFETY: `openat` just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn component(name: &str, path: &str) -> Result<CString, TreeError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(TreeError::Refused(path.to_owned()));
    }
    CString::new(name).map_err(|_| TreeError::Refused(path.to_owned()))
}

/// Builds the tree of `manifest`'s `files/` (release `release`) from
/// `store` under `trees` and returns its final path. Every file must be in
/// the store (or carried by its CID). See the module's comment.
pub fn build(
    store: &LocalStore,
    trees: &Path,
    manifest: &Manifest,
    release: &str,
) -> Result<PathBuf, TreeError> {
    if !plain(release) {
        return Err(TreeError::BadName(release.to_owned()));
    }
    let final_path = trees.join(release);
    let tmp = trees.join(format!("{release}.tmp"));
    match std::fs::remove_dir_all(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
        _ => {}
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let built = fill(store, &tmp, manifest);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let root = open_dir(
        None,
        &CString::new(tmp.as_os_str().as_bytes())
            .map_err(|_| TreeError::BadName(release.into()))?,
        "tree",
    )?;
    nix::unistd::syncfs(root.as_raw_fd()).map_err(errno("tree"))?;
    drop(root);
    crate::durable::rename(&tmp, &final_path).map_err(io(&final_path))?;
    Ok(final_path)
}

/// Lays out `manifest`'s `files/` in the empty directory `root`.
fn fill(store: &LocalStore, root: &Path, manifest: &Manifest) -> Result<(), TreeError> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("no NUL in a local path");
    let store_fd = open_dir(None, &c(store.dir()), "local store")?;
    let root_fd = open_dir(None, &c(root), "tree")?;
    nix::sys::stat::fchmod(root_fd.as_raw_fd(), Mode::from_bits_truncate(0o755))
        .map_err(errno("tree"))?;
    // Parents before children, each subtree in one run.
    let mut entries: Vec<(Vec<&str>, &crate::release::Entry)> = manifest
        .entries
        .iter()
        .filter_map(|e| {
            let rel = e.path.strip_prefix("files/")?;
            Some((rel.split('/').collect(), e))
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    // The open directories from the root down to the last one made.
    let mut stack: Vec<(Vec<&str>, OwnedFd)> = vec![(Vec::new(), root_fd)];
    for (parts, entry) in entries {
        let Some((name, parent)) = parts.split_last() else {
            continue;
        };
        while stack.last().is_some_and(|(p, _)| p.as_slice() != parent) {
            stack.pop();
        }
        let Some((_, parent_fd)) = stack.last() else {
            return Err(TreeError::Refused(entry.path.clone()));
        };
        let at = Some(parent_fd.as_raw_fd());
        let cname = component(name, &entry.path)?;
        let what = entry.path.as_str();
        match entry.kind {
            EntryKind::Directory => {
                nix::sys::stat::mkdirat(at, cname.as_c_str(), Mode::from_bits_truncate(0o755))
                    .map_err(errno(what))?;
                let fd = open_dir(at, &cname, what)?;
                nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o755))
                    .map_err(errno(what))?;
                stack.push((parts.clone(), fd));
            }
            EntryKind::Symlink => {
                let target = entry
                    .target
                    .as_deref()
                    .ok_or_else(|| TreeError::Refused(entry.path.clone()))?;
                let target =
                    CString::new(target).map_err(|_| TreeError::Refused(entry.path.clone()))?;
                nix::unistd::symlinkat(target.as_c_str(), at, cname.as_c_str())
                    .map_err(errno(what))?;
            }
            EntryKind::File => {
                let mode = clamp_mode(EntryKind::File, entry.mode);
                if let Some(bytes) = crate::unixfs::inline_file(&entry.cid) {
                    let fd = nix::fcntl::openat(
                        at,
                        cname.as_c_str(),
                        OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_WRONLY
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(mode),
                    )
                    .map_err(errno(what))?;
                    // SAFETY: `openat` just returned this descriptor.
                    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
                    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode))
                        .map_err(errno(what))?;
                    std::io::Write::write_all(&mut file, &bytes).map_err(|source| {
                        TreeError::Io {
                            path: entry.path.clone(),
                            source,
                        }
                    })?;
                    continue;
                }
                let source = store
                    .linkable(&entry.cid, mode)
                    .map_err(|source| TreeError::Io {
                        path: entry.cid.clone(),
                        source,
                    })?
                    .ok_or_else(|| TreeError::NotLocal(entry.path.clone()))?;
                let source = component(&source, &entry.path)?;
                match nix::unistd::linkat(
                    Some(store_fd.as_raw_fd()),
                    source.as_c_str(),
                    at,
                    cname.as_c_str(),
                    AtFlags::empty(),
                ) {
                    Ok(()) => {}
                    Err(nix::errno::Errno::ENOENT) => {
                        return Err(TreeError::NotLocal(entry.path.clone()))
                    }
                    Err(e) => return Err(errno(what)(e)),
                }
            }
        }
    }
    Ok(())
}

/// Gives `release` (local, its `.local` marker written) its tree if it has
/// none, and moves a FUSE mount of it onto the tree (stacked on top).
/// Errors are logged: the release stays on FUSE, and the next start tries
/// again.
pub async fn settle(
    manager: &crate::manager::Manager,
    store: &LocalStore,
    manifest: &Manifest,
    release: &str,
) {
    let state_directory = manager.config().state_directory.clone();
    let tree = match complete(&state_directory, release) {
        Some(tree) => tree,
        None => {
            let (store, manifest_copy, name) =
                (store.clone(), manifest.clone(), release.to_owned());
            let built = tokio::task::spawn_blocking(move || {
                prepare(&state_directory)?;
                build(&store, &dir(&state_directory), &manifest_copy, &name)
            })
            .await;
            match built {
                Ok(Ok(tree)) => {
                    info!(app = %manifest.id, %release, "release laid out as a local tree");
                    tree
                }
                Ok(Err(e)) => {
                    warn!(app = %manifest.id, %release, "no local tree, reads stay on FUSE: {e}");
                    return;
                }
                Err(e) => {
                    warn!(app = %manifest.id, %release, "no local tree: {e}");
                    return;
                }
            }
        }
    };
    let Some(app) = manager.apps.get(&manifest.id) else {
        return;
    };
    // A recording's mount is the topmost one there: leave it on top.
    if manager.recordings.is_recording(&manifest.id) {
        info!(app = %manifest.id, %release, "recording: its tree is mounted at the next start");
        return;
    }
    // A `flatpak run` opens `files/` early and has bwrap bind it by that
    // descriptor later, checking that what got mounted is what it opened;
    // a switch in between fails the launch ("Race condition binding
    // dirfd"). So the switch waits until no process holds `files/` open.
    if let Some(path) = app.fuse_mount_path(release) {
        let waited = tokio::task::spawn_blocking(move || wait_for_launches(&path))
            .await
            .unwrap_or(Ok(Duration::ZERO));
        match waited {
            Ok(waited) if waited > Duration::ZERO => {
                info!(app = %manifest.id, %release, "waited {waited:?} for launches to take their mounts")
            }
            Ok(_) => {}
            Err(holders) => warn!(
                app = %manifest.id, %release, holders,
                "processes still hold files/ open after {LAUNCH_WAIT:?}; switching anyway"
            ),
        }
    }
    match app.switch_to_tree(release, &tree) {
        Ok(true) => info!(app = %manifest.id, %release, "now read from its local tree"),
        Ok(false) => {}
        Err(e) => {
            warn!(app = %manifest.id, %release, "cannot mount its tree, reads stay on FUSE: {e}")
        }
    }
}

/// Bind-mounts `tree` (a local tree, or a FUSE slot) on `target`,
/// read-only, `nosuid,nodev`, private (see [`private`]).
pub fn bind(tree: &Path, target: &Path) -> std::io::Result<()> {
    nix::mount::mount(
        Some(tree),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    nix::mount::mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .and_then(|()| private(target))
    .inspect_err(|_| {
        let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
    })?;
    Ok(())
}

/// The longest a switch to a tree waits for launches ([`wait_for_launches`]).
const LAUNCH_WAIT: Duration = Duration::from_secs(10);

/// Waits until no process (but this one) holds a descriptor of the
/// directory `path` itself, polling `/proc`, for at most [`LAUNCH_WAIT`];
/// returns how long it waited, or how many descriptors were still held.
/// Sandboxes already running hold none (their mounts are their own); a
/// launch holds one from flatpak's start until bwrap mounted it.
fn wait_for_launches(path: &Path) -> Result<Duration, usize> {
    let started = std::time::Instant::now();
    loop {
        let holders = holders(path);
        if holders == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= LAUNCH_WAIT {
            return Err(holders);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many open descriptors of other processes name `path` exactly
/// (`/proc/PID/fd/N` read as links: no access to the files themselves).
fn holders(path: &Path) -> usize {
    let me = std::process::id().to_string();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    processes
        .flatten()
        .filter(|p| {
            let name = p.file_name();
            let name = name.to_string_lossy();
            name != me && name.bytes().all(|b| b.is_ascii_digit())
        })
        .filter_map(|p| std::fs::read_dir(p.path().join("fd")).ok())
        .flat_map(|fds| fds.flatten())
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
        .count()
}

/// Puts `tree` in place of the FUSE mount on `target`: the tree is
/// mounted beneath it (`open_tree`, `mount_setattr` read-only, `nosuid`,
/// `nodev`, private, `move_mount(MOVE_MOUNT_BENEATH)`), then the FUSE mount
/// is detached, so a lookup there always finds one of the two and, after,
/// only the tree (one mount, as after a restart). Processes that opened
/// files through FUSE, and sandboxes holding a copy of it, keep it (its
/// slot stays served until the release is unmounted). Without
/// `MOVE_MOUNT_BENEATH` (kernels before 6.5) nothing changes and this
/// fails: a tree stacked on top instead is refused by bwrap ("Race
/// condition binding dirfd", measured), so the release stays on FUSE until
/// the next start mounts its tree directly. Returns how many mounts are
/// on `target` now (1: the tree; 2 if the FUSE mount could not be
/// detached and stays above it).
pub fn replace(tree: &Path, target: &Path) -> std::io::Result<usize> {
    use nix::libc;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_BENEATH: libc::c_uint = 0x200;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (tree_c, target_c, empty) = (c(tree)?, c(target)?, CString::default());
    // SAFETY: plain syscalls on NUL-terminated strings and a local struct.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            tree_c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall just returned this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: as above.
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if set < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_BENEATH,
        )
    };
    if moved < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if let Err(e) = nix::mount::umount2(target, MntFlags::MNT_DETACH) {
        // The tree waits beneath; both go when the release is unmounted.
        warn!(path = %target.display(), "cannot detach the FUSE mount above the tree: {e}");
        return Ok(2);
    }
    Ok(1)
}

/// Makes the mount on `target` private: what is mounted on it later (a
/// tree stacked on a FUSE mount) or unmounted from it never propagates into
/// the mount namespaces of sandboxes, which keep what they started with.
pub fn private(target: &Path) -> nix::Result<()> {
    nix::mount::mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
}

/// Whether a sandbox runs `tree` now (bwrap's lock on its `.ref`).
pub fn in_use(tree: &Path) -> bool {
    crate::fuse::locked(&tree.join(".ref"))
}

/// Removes the tree of `release` unless a sandbox runs it (it then goes
/// at the next vacuum or start); returns whether it is gone.
pub fn remove(state_directory: &Path, release: &str) -> bool {
    let Some(tree) = complete(state_directory, release) else {
        return true;
    };
    if in_use(&tree) {
        info!(%release, "a sandbox still runs the release: its tree stays for now");
        return false;
    }
    // Renamed first so that a half-removed tree is never under its name.
    let doomed = tree.with_extension("tmp");
    let gone = std::fs::rename(&tree, &doomed).and_then(|()| std::fs::remove_dir_all(&doomed));
    if let Err(e) = gone {
        warn!(%release, "cannot remove its tree: {e}");
        return false;
    }
    true
}

/// Removes every tree whose release is not in `keep` (and that no sandbox
/// runs); returns how many went.
pub fn prune(state_directory: &Path, keep: &HashSet<String>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir(state_directory)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if plain(&name) && !keep.contains(&name) && remove(state_directory, &name) {
            removed += 1;
        }
    }
    if removed > 0 {
        info!(removed, "removed trees no release keeps");
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::Entry;

    const EMPTY: &str = "bafkqaaa";

    fn entry(path: &str, kind: EntryKind, mode: u32, cid: &str, target: Option<&str>) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            size: 0,
            target: target.map(Into::into),
            cid: cid.into(),
        }
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "schema": 1, "id": "org.test.Hello", "kind": "app", "arch": "x86_64",
            "branch": "stable", "version": "1", "published": 0,
            "import": {"kubo_version": "0.43.1", "chunker": "size-262144", "raw_leaves": true, "cid_version": 1, "hash": "sha2-256", "inline_limit": 32},
            "deploy": "bafy", "entries": [], "totals": {"bytes": 0, "files": 0, "entries": 0, "blocks": 0, "dag_bytes": 0}
        }))
        .expect("a manifest");
        m.entries = entries;
        m
    }

    struct Fixture {
        dir: tempfile::TempDir,
        store: LocalStore,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        store.prepare().unwrap();
        std::fs::write(store.dir().join("bafkreifile"), b"hello").unwrap();
        prepare(dir.path()).unwrap();
        Fixture { dir, store }
    }

    #[test]
    fn a_tree_links_local_files_with_the_manifests_modes() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let f = fixture();
        let m = manifest(vec![
            entry("files", EntryKind::Directory, 0o755, "d", None),
            entry("files/.ref", EntryKind::File, 0o644, EMPTY, None),
            entry("files/bin", EntryKind::Directory, 0o700, "d", None),
            entry(
                "files/bin/tool",
                EntryKind::File,
                0o4755,
                "bafkreifile",
                None,
            ),
            entry("files/share", EntryKind::File, 0o666, "bafkreifile", None),
            entry(
                "files/link",
                EntryKind::Symlink,
                0o777,
                "s",
                Some("bin/tool"),
            ),
        ]);
        let tree = build(&f.store, &dir(f.dir.path()), &m, "bafyrelease").unwrap();
        assert_eq!(complete(f.dir.path(), "bafyrelease"), Some(tree.clone()));
        let meta = |p: &str| std::fs::symlink_metadata(tree.join(p)).unwrap();
        assert_eq!(meta("bin").permissions().mode() & 0o7777, 0o755);
        assert_eq!(meta("bin/tool").permissions().mode() & 0o7777, 0o755);
        assert_eq!(meta("share").permissions().mode() & 0o7777, 0o644);
        assert_eq!(meta(".ref").len(), 0);
        let store = std::fs::metadata(f.store.dir().join("bafkreifile")).unwrap();
        // bin/tool comes first: the store's file takes its mode; share
        // needs the other mode, a variant.
        assert_eq!(meta("bin/tool").ino(), store.ino(), "a hard link, no copy");
        assert_ne!(meta("share").ino(), store.ino(), "the 0644 variant");
        assert_eq!(std::fs::read(tree.join("share")).unwrap(), b"hello");
        assert_eq!(std::fs::read(tree.join("bin/tool")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read_link(tree.join("link")).unwrap(),
            Path::new("bin/tool")
        );
    }

    #[test]
    fn a_missing_local_file_leaves_no_tree() {
        let f = fixture();
        let m = manifest(vec![
            entry("files", EntryKind::Directory, 0o755, "d", None),
            entry("files/a", EntryKind::File, 0o644, "bafkreimissing", None),
        ]);
        assert!(matches!(
            build(&f.store, &dir(f.dir.path()), &m, "bafyrelease"),
            Err(TreeError::NotLocal(_))
        ));
        assert_eq!(complete(f.dir.path(), "bafyrelease"), None);
        assert_eq!(std::fs::read_dir(dir(f.dir.path())).unwrap().count(), 0);
    }

    /// A manifest no validation let through, built anyway: a symlink out of
    /// the tree and entries below it, `..`, a file under a file. Nothing is
    /// written outside the tree and no tree is left.
    #[test]
    fn hostile_entries_never_write_outside_the_tree() {
        let f = fixture();
        let outside = f.dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let attacks = [
            vec![
                entry(
                    "files/evil",
                    EntryKind::Symlink,
                    0o777,
                    "s",
                    Some(outside.to_str().unwrap()),
                ),
                entry("files/evil/x", EntryKind::File, 0o644, "bafkreifile", None),
            ],
            vec![
                entry("files/evil", EntryKind::Symlink, 0o777, "s", Some("..")),
                entry("files/evil/d", EntryKind::Directory, 0o755, "d", None),
                entry("files/evil/d/x", EntryKind::File, 0o644, EMPTY, None),
            ],
            vec![entry("files/../x", EntryKind::File, 0o644, EMPTY, None)],
            vec![
                entry("files/d", EntryKind::Directory, 0o755, "d", None),
                entry("files/d/../../x", EntryKind::File, 0o644, EMPTY, None),
            ],
            vec![
                entry("files/f", EntryKind::File, 0o644, "bafkreifile", None),
                entry("files/f/x", EntryKind::File, 0o644, EMPTY, None),
            ],
            vec![entry("files//x", EntryKind::File, 0o644, EMPTY, None)],
            vec![
                entry("files/a", EntryKind::File, 0o644, EMPTY, None),
                entry("files/a", EntryKind::Symlink, 0o777, "s", Some("/")),
            ],
        ];
        for attack in attacks {
            let m = manifest(attack.clone());
            let got = build(&f.store, &dir(f.dir.path()), &m, "bafyrelease");
            assert!(got.is_err(), "{attack:?} built {got:?}");
            assert_eq!(
                std::fs::read_dir(&outside).unwrap().count(),
                0,
                "{attack:?}"
            );
            assert!(!f.dir.path().join("x").exists(), "{attack:?}");
            assert!(!dir(f.dir.path()).join("x").exists(), "{attack:?}");
            assert_eq!(complete(f.dir.path(), "bafyrelease"), None);
        }
        assert_eq!(std::fs::read_dir(dir(f.dir.path())).unwrap().count(), 0);
    }

    #[test]
    fn trees_no_release_keeps_are_pruned() {
        let f = fixture();
        let m = manifest(vec![entry("files", EntryKind::Directory, 0o755, "d", None)]);
        build(&f.store, &dir(f.dir.path()), &m, "bafykept").unwrap();
        build(&f.store, &dir(f.dir.path()), &m, "bafygone").unwrap();
        let keep = HashSet::from(["bafykept".to_string()]);
        assert_eq!(prune(f.dir.path(), &keep), 1);
        assert!(complete(f.dir.path(), "bafykept").is_some());
        assert!(complete(f.dir.path(), "bafygone").is_none());
    }
}
