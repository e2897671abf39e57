//! Binding a release manifest to its release's actual `deploy/` tree.
//!
//! The manifest is the publisher's description of `deploy/`: the mount
//! serves names, types, sizes and symlink targets from it and reads file
//! contents by the CIDs it names. Before a release is laid out (install,
//! update), one walk of the release's tree through Kubo checks that the
//! manifest tells the truth: `deploy` is the CID at
//! `/ipfs/<release root>/deploy`, and in every directory the manifest's
//! entries and the tree's children are the same names with the same CIDs,
//! both ways. One `ls` per directory, from the directory's own blocks (no
//! child is fetched: a walk that typed every child would fetch the root
//! block of every file first, one after another in each directory). Types,
//! file sizes and symlink targets are compared wherever that costs nothing:
//! Kubo types `raw` children (files, with their size), and an identity CID
//! carries its whole node (`unixfs`). A child whose type stays unknown is a
//! hashed dag-pb node: a manifest directory is listed in turn (a file there
//! would show unnamed chunk links), and a file or symlink is served by its
//! CID, which is the tree's. A release checked once is marked as such next
//! to its cached manifest, so that restarts (offline) do not walk it again.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::kubo::{Client, KuboError, Link};
use crate::release::{EntryKind, Manifest, DEPLOY_NAME};

/// Listings in flight at once.
const CONCURRENCY: usize = 8;

/// Why a release's manifest was not accepted as the description of its tree.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the manifest of /ipfs/{release} does not describe its deploy/ tree: {what}")]
    Mismatch { release: String, what: String },
    #[error("cannot walk the deploy/ tree of /ipfs/{release}: {source}")]
    Kubo {
        release: String,
        #[source]
        source: KuboError,
    },
}

/// The type `ls` reports: `Ok(None)` when it did not resolve it.
fn link_kind(link: &Link) -> Result<Option<EntryKind>, i32> {
    match link.kind {
        0 => Ok(None),
        1 | 5 => Ok(Some(EntryKind::Directory)),
        2 => Ok(Some(EntryKind::File)),
        4 => Ok(Some(EntryKind::Symlink)),
        other => Err(other),
    }
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Directory => "a directory",
        EntryKind::File => "a file",
        EntryKind::Symlink => "a symlink",
    }
}

/// Two CIDs name the same content (whatever base they are written in).
fn same_cid(a: &str, b: &str) -> bool {
    match (cid::Cid::try_from(a), cid::Cid::try_from(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// An upper bound of the `ls` reply of a directory with `children`
/// entries: a directory holding more than the manifest says is refused
/// before it is read whole.
fn listing_limit(children: usize) -> u64 {
    (64 << 10) + children as u64 * (8 << 10)
}

/// Checks `manifest` (validated) against the tree of release root
/// `release`; each listing gets `timeout`.
pub async fn release_tree(
    kubo: &Client,
    release: &str,
    manifest: &Manifest,
    timeout: Duration,
) -> Result<(), VerifyError> {
    let mismatch = |what: String| VerifyError::Mismatch {
        release: release.to_string(),
        what,
    };
    let failed = |source| VerifyError::Kubo {
        release: release.to_string(),
        source,
    };
    // The release root: `deploy` and `manifest`, nothing else matters here.
    let root = kubo
        .ls(&format!("/ipfs/{release}"), listing_limit(16), timeout)
        .await
        .map_err(failed)?;
    let deploy = root
        .iter()
        .find(|l| l.name == DEPLOY_NAME)
        .ok_or_else(|| mismatch("the release root has no deploy/ directory".into()))?;
    if matches!(link_kind(deploy), Ok(Some(k)) if k != EntryKind::Directory) {
        return Err(mismatch("deploy is not a directory".into()));
    }
    if !same_cid(&deploy.hash, &manifest.deploy) {
        return Err(mismatch(format!(
            "its deploy field says {}, the release's deploy/ is {}",
            manifest.deploy, deploy.hash
        )));
    }

    // Directory path ("" for deploy/ itself) → name → entry.
    let mut children: BTreeMap<&str, BTreeMap<&str, &crate::release::Entry>> = BTreeMap::new();
    children.insert("", BTreeMap::new());
    for entry in &manifest.entries {
        let (parent, name) = entry.path.rsplit_once('/').unwrap_or(("", &entry.path));
        children.entry(parent).or_default().insert(name, entry);
        if entry.kind == EntryKind::Directory {
            children.entry(&entry.path).or_default();
        }
    }

    let mut queue: VecDeque<(String, String)> =
        VecDeque::from([(String::new(), deploy.hash.clone())]);
    let mut listings = tokio::task::JoinSet::new();
    loop {
        while listings.len() < CONCURRENCY {
            let Some((path, cid)) = queue.pop_front() else {
                break;
            };
            let expected = children.get(path.as_str()).map_or(0, BTreeMap::len);
            let kubo = kubo.clone();
            listings.spawn(async move {
                let links = kubo
                    .ls(&format!("/ipfs/{cid}"), listing_limit(expected), timeout)
                    .await;
                (path, links)
            });
        }
        let Some(done) = listings.join_next().await else {
            return Ok(());
        };
        let (path, links) = done.map_err(|e| mismatch(format!("the walk stopped: {e}")))?;
        let links = links.map_err(failed)?;
        let shown = |name: &str| {
            if path.is_empty() {
                format!("deploy/{name}")
            } else {
                format!("deploy/{path}/{name}")
            }
        };
        let mut expected = children.get(path.as_str()).cloned().unwrap_or_default();
        for link in &links {
            if link.name.is_empty() {
                return Err(mismatch(format!(
                    "{} is a directory in the manifest, not in the release",
                    if path.is_empty() {
                        "deploy".to_string()
                    } else {
                        format!("deploy/{path}")
                    }
                )));
            }
            let Some(entry) = expected.remove(link.name.as_str()) else {
                return Err(mismatch(format!(
                    "{} is in the release but not in the manifest",
                    shown(&link.name)
                )));
            };
            if !same_cid(&link.hash, &entry.cid) {
                return Err(mismatch(format!(
                    "{} is {} in the release, the manifest says {}",
                    shown(&link.name),
                    link.hash,
                    entry.cid
                )));
            }
            let listed = link_kind(link).map_err(|t| {
                mismatch(format!(
                    "{} has UnixFS type {t}, which a release cannot hold",
                    shown(&link.name)
                ))
            })?;
            let known = crate::unixfs::from_cid(&link.hash);
            if let Some(kind) = listed.or(known.as_ref().map(|k| k.kind)) {
                if kind != entry.kind {
                    return Err(mismatch(format!(
                        "{} is {} in the release, {} in the manifest",
                        shown(&link.name),
                        kind_name(kind),
                        kind_name(entry.kind)
                    )));
                }
            }
            // Kubo sizes the children it types (raw blocks: the file).
            let size = if listed == Some(EntryKind::File) {
                Some(link.size)
            } else {
                known.as_ref().and_then(|k| k.size)
            };
            let target = known.and_then(|k| k.target);
            match entry.kind {
                EntryKind::File if size.is_some_and(|s| s != entry.size) => {
                    return Err(mismatch(format!(
                        "{} has {} bytes in the release, {} in the manifest",
                        shown(&link.name),
                        size.unwrap_or_default(),
                        entry.size
                    )));
                }
                EntryKind::Symlink
                    if target
                        .as_ref()
                        .is_some_and(|t| Some(t) != entry.target.as_ref()) =>
                {
                    return Err(mismatch(format!(
                        "{} points at {:?} in the release, {:?} in the manifest",
                        shown(&link.name),
                        target.unwrap_or_default(),
                        entry.target.as_deref().unwrap_or_default()
                    )));
                }
                EntryKind::Directory => queue.push_back((entry.path.clone(), link.hash.clone())),
                _ => {}
            }
        }
        if let Some(name) = expected.keys().next() {
            return Err(mismatch(format!(
                "{} is in the manifest but not in the release",
                shown(name)
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cids_compare_by_content_not_spelling() {
        let b32 = "bafkqabtimvwgy3yk";
        let parsed = cid::Cid::try_from(b32).unwrap();
        let b58 = parsed
            .to_string_of_base(cid::multibase::Base::Base58Btc)
            .unwrap();
        assert_ne!(b32, b58);
        assert!(same_cid(b32, &b58));
        assert!(!same_cid(b32, "bafkqaaa"));
        assert!(!same_cid(b32, "not a cid"));
    }

    #[test]
    fn listing_limit_grows_with_the_expected_children() {
        assert!(listing_limit(0) >= 64 << 10);
        assert!(listing_limit(1000) > listing_limit(10));
    }
}
