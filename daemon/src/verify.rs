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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::kubo::{Client, KuboError, Link};
use crate::release::{Entry, EntryKind, Manifest, DEPLOY_NAME};

/// Listings in flight at once: each waits mostly on the network for one
/// directory block, so a large tree (thousands of directories) is walked
/// in a few dozen round trips instead of hundreds; memory stays bounded by
/// this times the largest listing a manifest directory allows.
const CONCURRENCY: usize = 128;

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
/// `release`; each listing gets `timeout`. `known` holds directory blocks
/// already checked against their CIDs (the release's directory CAR,
/// `directory_car`): a plain directory found there is listed from its
/// bytes, as Kubo would list it, without a call.
pub async fn release_tree(
    kubo: &Client,
    release: &str,
    manifest: &Manifest,
    timeout: Duration,
    known: &HashMap<cid::Cid, Vec<u8>>,
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
    let mut children: BTreeMap<&str, BTreeMap<&str, &Entry>> = BTreeMap::new();
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
            if let Some(links) = known_listing(known, &cid) {
                let expected = children.get(path.as_str()).cloned().unwrap_or_default();
                let subdirs = compare_directory(&path, &links, expected).map_err(mismatch)?;
                queue.extend(subdirs);
                continue;
            }
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
        let expected = children.get(path.as_str()).cloned().unwrap_or_default();
        let subdirs = compare_directory(&path, &links, expected).map_err(mismatch)?;
        queue.extend(subdirs);
    }
}

/// What `ls?resolve-type=false&size=false` says of directory `cid` when
/// its block is in `known` and is a plain directory: each link's name and
/// CID; raw children typed as files sized by their link. `None` otherwise
/// (the walk asks Kubo).
fn known_listing(known: &HashMap<cid::Cid, Vec<u8>>, cid: &str) -> Option<Vec<Link>> {
    let block = known.get(&cid::Cid::try_from(cid).ok()?)?;
    let links = crate::unixfs::directory_links(block)?;
    Some(
        links
            .into_iter()
            .map(|l| {
                let raw = l.cid.codec() == crate::unixfs::RAW;
                Link {
                    name: l.name,
                    hash: l.cid.to_string(),
                    size: if raw { l.tsize } else { 0 },
                    kind: if raw { 2 } else { 0 },
                }
            })
            .collect(),
    )
}

/// Compares the listing of directory `path` of `deploy/` ("" for
/// `deploy/` itself) with the manifest's entries there; returns the
/// subdirectories to walk next as (path, CID), or what does not match.
fn compare_directory(
    path: &str,
    links: &[Link],
    mut expected: BTreeMap<&str, &Entry>,
) -> Result<Vec<(String, String)>, String> {
    let shown = |name: &str| {
        if path.is_empty() {
            format!("deploy/{name}")
        } else {
            format!("deploy/{path}/{name}")
        }
    };
    let mut subdirs = Vec::new();
    for link in links {
        if link.name.is_empty() {
            return Err(format!(
                "{} is a directory in the manifest, not in the release",
                if path.is_empty() {
                    "deploy".to_string()
                } else {
                    format!("deploy/{path}")
                }
            ));
        }
        let Some(entry) = expected.remove(link.name.as_str()) else {
            return Err(format!(
                "{} is in the release but not in the manifest",
                shown(&link.name)
            ));
        };
        if !same_cid(&link.hash, &entry.cid) {
            return Err(format!(
                "{} is {} in the release, the manifest says {}",
                shown(&link.name),
                link.hash,
                entry.cid
            ));
        }
        let listed = link_kind(link).map_err(|t| {
            format!(
                "{} has UnixFS type {t}, which a release cannot hold",
                shown(&link.name)
            )
        })?;
        let known = crate::unixfs::from_cid(&link.hash);
        if let Some(kind) = listed.or(known.as_ref().map(|k| k.kind)) {
            if kind != entry.kind {
                return Err(format!(
                    "{} is {} in the release, {} in the manifest",
                    shown(&link.name),
                    kind_name(kind),
                    kind_name(entry.kind)
                ));
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
                return Err(format!(
                    "{} has {} bytes in the release, {} in the manifest",
                    shown(&link.name),
                    size.unwrap_or_default(),
                    entry.size
                ));
            }
            EntryKind::Symlink
                if target
                    .as_ref()
                    .is_some_and(|t| Some(t) != entry.target.as_ref()) =>
            {
                return Err(format!(
                    "{} points at {:?} in the release, {:?} in the manifest",
                    shown(&link.name),
                    target.unwrap_or_default(),
                    entry.target.as_deref().unwrap_or_default()
                ));
            }
            EntryKind::Directory => subdirs.push((entry.path.clone(), link.hash.clone())),
            _ => {}
        }
    }
    if let Some(name) = expected.keys().next() {
        return Err(format!(
            "{} is in the manifest but not in the release",
            shown(name)
        ));
    }
    Ok(subdirs)
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

    const HELLO: &str = "bafkqabtimvwgy3yk"; // "hello\n", inlined
    const LINK_TO_A: &str = "bafyaabykaueaieqbme"; // symlink to "a", inlined
    const RAW_100: &str = "bafkreigymvycnibrglvfyy7ypp34g2sz3yuggwu2k36gxjewitpoxsgwy4";
    const DIR: &str = "bafybeiecqizdhucnj5ty4wbiweadzj73xgaw726h265g4xujfiz2n5yahe";

    fn link(name: &str, hash: &str, size: u64, kind: i32) -> Link {
        Link {
            name: name.into(),
            hash: hash.into(),
            size,
            kind,
        }
    }

    fn entry(path: &str, kind: EntryKind, size: u64, target: Option<&str>, cid: &str) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: 0o644,
            size,
            target: target.map(Into::into),
            cid: cid.into(),
        }
    }

    /// The listing Kubo gives of `files/` (raw children typed and sized,
    /// dag-pb ones not), and the manifest entries that describe it.
    fn honest() -> (Vec<Link>, Vec<Entry>) {
        (
            vec![
                link("a", HELLO, 6, 2),
                link("data", RAW_100, 100, 2),
                link("l", LINK_TO_A, 0, 0),
                link("sub", DIR, 0, 0),
            ],
            vec![
                entry("files/a", EntryKind::File, 6, None, HELLO),
                entry("files/data", EntryKind::File, 100, None, RAW_100),
                entry("files/l", EntryKind::Symlink, 0, Some("a"), LINK_TO_A),
                entry("files/sub", EntryKind::Directory, 0, None, DIR),
            ],
        )
    }

    fn compare(links: &[Link], entries: &[Entry]) -> Result<Vec<(String, String)>, String> {
        let expected = entries
            .iter()
            .map(|e| (e.path.rsplit_once('/').unwrap().1, e))
            .collect();
        compare_directory("files", links, expected)
    }

    #[test]
    fn an_honest_directory_passes_and_names_its_subdirectories() {
        let (links, entries) = honest();
        assert_eq!(
            compare(&links, &entries).unwrap(),
            [("files/sub".to_string(), DIR.to_string())]
        );
    }

    #[test]
    fn every_lie_is_refused_naming_the_path() {
        type Lie = fn(&mut Vec<Link>, &mut Vec<Entry>);
        let lies: [(Lie, &str); 9] = [
            (|_, e| e[1].cid = HELLO.into(), "deploy/files/data is bafk"),
            (
                |l, _| l.truncate(3),
                "deploy/files/sub is in the manifest but not",
            ),
            (
                |_, e| {
                    e.pop();
                },
                "deploy/files/sub is in the release but not",
            ),
            (|_, e| e[1].size = 99, "deploy/files/data has 100 bytes"),
            (|_, e| e[0].size = 7, "deploy/files/a has 6 bytes"),
            (
                |_, e| e[2].target = Some("/etc/shadow".into()),
                "deploy/files/l points at \"a\"",
            ),
            (
                |_, e| e[0].kind = EntryKind::Directory,
                "deploy/files/a is a file in the release, a directory",
            ),
            (
                |_, e| e[2].kind = EntryKind::File,
                "deploy/files/l is a symlink in the release, a file",
            ),
            (|l, _| l[3].kind = 3, "deploy/files/sub has UnixFS type 3"),
        ];
        for (lie, says) in lies {
            let (mut links, mut entries) = honest();
            lie(&mut links, &mut entries);
            let e = compare(&links, &entries).unwrap_err();
            assert!(e.contains(says), "{e} (expected {says:?})");
        }
        // A file listed where the manifest has a directory shows its
        // unnamed chunk links.
        let chunks = [link("", RAW_100, 100, 2)];
        let e = compare_directory("files/sub", &chunks, BTreeMap::new()).unwrap_err();
        assert!(
            e.contains("deploy/files/sub is a directory in the manifest, not"),
            "{e}"
        );
    }

    #[test]
    fn listing_limit_grows_with_the_expected_children() {
        assert!(listing_limit(0) >= 64 << 10);
        assert!(listing_limit(1000) > listing_limit(10));
    }
}
