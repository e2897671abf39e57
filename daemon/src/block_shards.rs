//! The embedded Kubo repository's block directory, sharded into 32
//! directories instead of Kubo's 1,024.
//!
//! Kubo's flatfs keeps each block in a file of its own under a shard
//! directory named by two characters of the block's key
//! (`/repo/flatfs/shard/v1/next-to-last/2`): up to 1,024 directories of
//! 4 KiB each. Once a release is kept as local files (`local_store`) what
//! stays in the blockstore is small (directory nodes, the inner nodes of
//! large files), and those directories were a quarter of it: 1.11× the
//! installed files' size on disk for the scipy tree of
//! `scripts/bench-reads.sh`, against the 1.1× bound. With one character
//! (`next-to-last/1`, 32 directories) they cost 128 KiB; a directory then
//! holds about 1/32 of the blocks, which ext4 indexes.
//!
//! Applied only to a repository the daemon has just created (`ipfs init`),
//! and crash-safe: a marker `flatipfs-block-shards` is written (and
//! synced) before anything changes and removed after; while it is there,
//! every start applies the change again from the start. The change, each
//! step idempotent: the flatfs mount's `shardFunc` in `config`, the same
//! in `datastore_spec` (Kubo compares the two at open), the `SHARDING` file
//! of `blocks/` (flatfs compares it with the config), and every block file
//! in a two-character directory moved to its one-character one. A
//! repository that existed before (its blocks in the old layout) is left
//! as it is: Kubo reads either.
//!
//! The repository is the Kubo user's, so the daemon (root) acts in it as
//! in a hostile directory: only a marker that is a regular file of root's
//! counts (the Kubo user cannot make one; the node never ran while it is
//! there), files are written under new names (`O_EXCL`, no symlink
//! followed) and given to the Kubo user through their descriptor, and only
//! real directories and regular files are moved.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The shard function of new repositories.
pub const SHARD_FUNC: &str = "/repo/flatfs/shard/v1/next-to-last/1";
/// Kubo's default, which `ipfs init` writes.
const KUBO_SHARD_FUNC: &str = "/repo/flatfs/shard/v1/next-to-last/2";
/// Present while the change is under way.
const MARKER: &str = "flatipfs-block-shards";

/// The marker of `repo` (root's; the repository's owner must leave it so).
pub fn marker(repo: &Path) -> std::path::PathBuf {
    repo.join(MARKER)
}

/// Marks the fresh repository `repo` for the change; [`apply`] makes it.
pub fn mark(repo: &Path) -> std::io::Result<()> {
    let marker = repo.join(MARKER);
    std::fs::write(&marker, b"")?;
    std::fs::File::open(&marker)?.sync_all()?;
    crate::durable::sync_dir(repo)
}

/// Makes the change if `repo` is marked for it (see the module docs);
/// files it writes get the owner of `repo`.
pub fn apply(repo: &Path) -> std::io::Result<bool> {
    let marker = repo.join(MARKER);
    let ours = std::fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file() && m.uid() == 0);
    if !ours {
        return Ok(false);
    }
    let owner = std::fs::metadata(repo)?;
    let (uid, gid) = (owner.uid(), owner.gid());
    let write = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = repo.join(name);
        let mode = std::fs::symlink_metadata(&path)
            .map(|m| m.mode() & 0o777)
            .unwrap_or(0o600);
        let part = repo.join(format!("{name}.flatipfs-part"));
        let _ = std::fs::remove_file(&part);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&part)?;
        file.write_all(bytes)?;
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        file.sync_all()?;
        crate::durable::rename(&part, &path)
    };
    // Reads only regular files (no symlink followed).
    let read = |name: &str| -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut bytes = Vec::new();
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(repo.join(name))?
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    // config: the flatfs mount's shardFunc.
    let config = read("config")?;
    let mut json: serde_json::Value = serde_json::from_slice(&config)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if let Some(mounts) = json
        .pointer_mut("/Datastore/Spec/mounts")
        .and_then(|m| m.as_array_mut())
    {
        for mount in mounts {
            let child = if mount.get("child").is_some() {
                &mut mount["child"]
            } else {
                mount
            };
            if child.get("type").and_then(|t| t.as_str()) == Some("flatfs") {
                child["shardFunc"] = SHARD_FUNC.into();
            }
        }
    }
    let mut config = serde_json::to_vec_pretty(&json)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    config.push(b'\n');
    write("config", &config)?;
    // datastore_spec: what Kubo wrote, with the new function.
    let spec = String::from_utf8_lossy(&read("datastore_spec")?).into_owned();
    write(
        "datastore_spec",
        spec.replace(KUBO_SHARD_FUNC, SHARD_FUNC).as_bytes(),
    )?;
    // blocks/: its SHARDING file, then the blocks.
    let blocks = repo.join("blocks");
    if !std::fs::symlink_metadata(&blocks)?.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            blocks.display()
        )));
    }
    write("blocks/SHARDING", format!("{SHARD_FUNC}\n").as_bytes())?;
    for dir in std::fs::read_dir(&blocks)?.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !dir.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path())?.flatten() {
            if !file.file_type()?.is_file() {
                continue;
            }
            let file_name = file.file_name().to_string_lossy().into_owned();
            let Some(key) = file_name.strip_suffix(".data") else {
                continue;
            };
            let Some(shard) = shard(key) else { continue };
            let to = blocks.join(shard);
            if std::fs::symlink_metadata(&to).is_err() {
                std::fs::create_dir(&to)?;
                std::os::unix::fs::lchown(&to, Some(uid), Some(gid))?;
            }
            std::fs::rename(file.path(), to.join(&file_name))?;
        }
        std::fs::remove_dir(dir.path())?;
    }
    crate::durable::sync_dir(&blocks)?;
    std::fs::remove_file(&marker)?;
    crate::durable::sync_dir(repo)?;
    Ok(true)
}

/// The one-character shard directory of block `key` (the next-to-last
/// character, as flatfs's `next-to-last/1`).
fn shard(key: &str) -> Option<&str> {
    let len = key.len();
    (len >= 2 && key.is_ascii()).then(|| &key[len - 2..len - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_is_the_next_to_last_character() {
        assert_eq!(
            shard("CIQA4T3TD3BP3C2M3GXCGRCRTCCHV7XSGAZPZJOAOHLPOI6IQR3H6YQ"),
            Some("Y")
        );
        assert_eq!(shard("AB"), Some("A"));
        assert_eq!(shard("A"), None);
    }

    #[test]
    fn a_fresh_repository_is_moved_to_32_shards_and_a_crash_is_finished_later() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        let config = r#"{"Datastore":{"Spec":{"mounts":[{"child":{"path":"blocks","shardFunc":"/repo/flatfs/shard/v1/next-to-last/2","sync":false,"type":"flatfs"},"mountpoint":"/blocks","prefix":"flatfs.datastore","type":"measure"},{"child":{"path":"datastore","type":"levelds"},"mountpoint":"/","type":"measure"}],"type":"mount"}},"Identity":{"PeerID":"x"}}"#;
        std::fs::write(repo.join("config"), config).unwrap();
        let spec = r#"{"mounts":[{"mountpoint":"/blocks","path":"blocks","shardFunc":"/repo/flatfs/shard/v1/next-to-last/2","type":"flatfs"},{"mountpoint":"/","path":"datastore","type":"levelds"}],"type":"mount"}"#;
        std::fs::write(repo.join("datastore_spec"), spec).unwrap();
        std::fs::create_dir_all(repo.join("blocks/X3")).unwrap();
        std::fs::write(repo.join("blocks/SHARDING"), format!("{KUBO_SHARD_FUNC}\n")).unwrap();
        std::fs::write(repo.join("blocks/X3/CIQABCX3A.data"), b"block").unwrap();
        // Not marked: nothing changes.
        assert!(!apply(repo).unwrap());
        assert_eq!(
            std::fs::read_to_string(repo.join("datastore_spec")).unwrap(),
            spec
        );

        mark(repo).unwrap();
        assert!(apply(repo).unwrap());
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap();
        assert_eq!(
            config["Datastore"]["Spec"]["mounts"][0]["child"]["shardFunc"],
            SHARD_FUNC
        );
        assert_eq!(
            config["Identity"]["PeerID"], "x",
            "the rest of the config kept"
        );
        assert_eq!(
            std::fs::read_to_string(repo.join("datastore_spec")).unwrap(),
            spec.replace("next-to-last/2", "next-to-last/1")
        );
        assert_eq!(
            std::fs::read_to_string(repo.join("blocks/SHARDING")).unwrap(),
            format!("{SHARD_FUNC}\n")
        );
        assert_eq!(
            std::fs::read(repo.join("blocks/3/CIQABCX3A.data")).unwrap(),
            b"block"
        );
        assert!(!repo.join("blocks/X3").exists());
        assert!(!repo.join(MARKER).exists());

        // A crash after some steps: the marker is back, the change is made
        // again over what is already done (a part file left by a crash, or
        // a symlink put there, is replaced, not written through).
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"not the Kubo user's").unwrap();
        std::os::unix::fs::symlink(&victim, repo.join("datastore_spec.flatipfs-part")).unwrap();
        mark(repo).unwrap();
        assert!(apply(repo).unwrap());
        assert_eq!(
            std::fs::read(repo.join("blocks/3/CIQABCX3A.data")).unwrap(),
            b"block"
        );
        assert_eq!(
            std::fs::read_to_string(repo.join("datastore_spec")).unwrap(),
            spec.replace("next-to-last/2", "next-to-last/1")
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"not the Kubo user's");
    }

    #[test]
    fn a_marker_the_kubo_user_made_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path();
        std::fs::write(repo.join("datastore_spec"), KUBO_SHARD_FUNC).unwrap();
        // Not root's (the Kubo user's), or a symlink to a root file.
        std::fs::write(repo.join(MARKER), b"").unwrap();
        std::os::unix::fs::chown(repo.join(MARKER), Some(65534), Some(65534)).unwrap();
        assert!(!apply(repo).unwrap());
        std::fs::remove_file(repo.join(MARKER)).unwrap();
        let root_file = dir.path().join("root-file");
        std::fs::write(&root_file, b"").unwrap();
        std::os::unix::fs::symlink(&root_file, repo.join(MARKER)).unwrap();
        assert!(!apply(repo).unwrap());
        assert_eq!(
            std::fs::read_to_string(repo.join("datastore_spec")).unwrap(),
            KUBO_SHARD_FUNC
        );
    }
}
