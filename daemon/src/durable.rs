//! Durable renames: a rename is on disk only once the directory holding the
//! new name is fsynced. Every rename that makes state durable (state file,
//! cached manifests, deploy directories, `active`/`current` links, exports)
//! goes through [`rename`].

use std::io;
use std::path::Path;

/// Fsyncs directory `dir`, so that the names it holds survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Renames `from` to `to`, then fsyncs the directory of `to` (and that of
/// `from`, when it is another one).
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => ".".into(),
    };
    let (old_dir, new_dir) = (parent(from), parent(to));
    sync_dir(&new_dir)?;
    if old_dir != new_dir {
        sync_dir(&old_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_files_directories_and_links_and_syncs_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(".state.json.tmp");
        let path = dir.path().join("state.json");
        std::fs::write(&tmp, b"new").unwrap();
        std::fs::write(&path, b"old").unwrap();
        rename(&tmp, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!tmp.exists());

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let tmp_dir = sub.join(".deploy.tmp");
        std::fs::create_dir(&tmp_dir).unwrap();
        std::fs::write(tmp_dir.join("deploy"), b"d").unwrap();
        rename(&tmp_dir, &dir.path().join("deploy")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("deploy/deploy")).unwrap(),
            b"d"
        );

        let link = dir.path().join(".active.tmp");
        std::os::unix::fs::symlink("deploy", &link).unwrap();
        rename(&link, &dir.path().join("active")).unwrap();
        assert_eq!(
            std::fs::read_link(dir.path().join("active")).unwrap(),
            Path::new("deploy")
        );
        sync_dir(dir.path()).unwrap();
    }

    #[test]
    fn a_failed_rename_is_an_error_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"old").unwrap();
        assert!(rename(&dir.path().join("missing"), &path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(sync_dir(&dir.path().join("missing")).is_err());
    }
}
