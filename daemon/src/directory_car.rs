//! A release's directory CAR on the installing side: every directory node
//! of `deploy/` in one download, before the binding check (`verify`) walks
//! them.
//!
//! Without it, the binding check fetches each directory's block through
//! bitswap, one session per block: 900 directories took 0.5 s over
//! loopback, most of an `install --no-wait` (measured on the LibreOffice
//! benchmark). The CAR (`flatipfs_format::encodings::DirectoryCar`, made by
//! `encode`) is one UnixFS file: fetched bounded by the size the validated
//! manifest gives (itself bounded by its number of entries), split into
//! blocks (`car::sections`), and only the blocks whose CID is `deploy/` or
//! one of the manifest's directories *and* whose bytes hash to that CID
//! are kept. The binding check then walks the tree exactly as it would
//! without the CAR, reading those blocks from memory instead of asking
//! Kubo; they are stored later ([`store`]: one `dag/import`, which checks
//! them again) for what needs them then (the pin walk): an install stores
//! them once the startup set is local (measured: storing 850 blocks held
//! Kubo up to 0.24 s, in the way of the install's own calls). So a CAR that lies, is cut short or is
//! missing costs only its bytes: the walk fetches what it lacks.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cid::Cid;

use crate::kubo::{Client, KuboError};
use crate::release::{EntryKind, Manifest};
use flatipfs_format::encodings::DirectoryCar;

/// Why a directory CAR was not used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryCarError {
    #[error(transparent)]
    Kubo(#[from] KuboError),
    #[error("it is larger than the {0} bytes its manifest says")]
    TooLarge(u64),
    #[error(transparent)]
    Car(#[from] crate::car::CarError),
}

/// What a directory CAR brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// The blocks kept (and stored): the manifest's directories, each with
    /// bytes that hash to its CID.
    pub blocks: HashMap<Cid, Vec<u8>>,
    /// Blocks left out: not a directory of the manifest, a duplicate, or
    /// bytes of another digest.
    pub refused: usize,
    /// The kept blocks as a CAR, for [`store`].
    pub car: Option<Vec<u8>>,
}

/// Stores the kept blocks in Kubo (`dag/import`, which checks them again);
/// a failure only means they are fetched again when needed.
pub async fn store(kubo: &Client, car: Vec<u8>) {
    if let Err(e) = kubo.dag_import(car).await {
        tracing::warn!("cannot store the directory CAR's blocks: {e}");
    }
}

/// Fetches `car` (the manifest's, validated) and keeps the directory
/// blocks it holds for `manifest`: returns them (for the binding check to
/// read without asking Kubo) and as a CAR to [`store`]. `stall` bounds a
/// wait for bytes.
pub async fn import(
    kubo: &Client,
    manifest: &Manifest,
    car: &DirectoryCar,
    stall: Duration,
) -> Result<Imported, DirectoryCarError> {
    let started = std::time::Instant::now();
    let bytes = kubo
        .cat_bounded_stalling(&format!("/ipfs/{}", car.cid), car.size, stall)
        .await?;
    let fetched = started.elapsed();
    if bytes.len() as u64 > car.size {
        return Err(DirectoryCarError::TooLarge(car.size));
    }
    let (car, imported) = tokio::task::block_in_place(|| keep_directories(manifest, &bytes))?;
    tracing::debug!("directory CAR fetched in {:.2} s", fetched.as_secs_f64());
    Ok(Imported { car, ..imported })
}

/// A CAR of the blocks of `bytes` that are directories of `manifest` with
/// the bytes their CID names (each once), and the counts.
fn keep_directories(
    manifest: &Manifest,
    bytes: &[u8],
) -> Result<(Option<Vec<u8>>, Imported), crate::car::CarError> {
    let mut wanted: HashSet<Cid> = manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::Directory)
        .map(|e| e.cid.as_str())
        .chain(std::iter::once(manifest.deploy.as_str()))
        .filter_map(|c| Cid::try_from(c).ok())
        .collect();
    let mut kept = Vec::new();
    let mut refused = 0;
    for (cid, data) in crate::car::sections(bytes)? {
        // `remove`: a CID is kept once, whatever the CAR repeats.
        if crate::unixfs::is_block_of(&cid, data) && wanted.remove(&cid) {
            kept.push((cid, data));
        } else {
            refused += 1;
        }
    }
    let car = crate::car::v1(&kept);
    let imported = Imported {
        blocks: kept.into_iter().map(|(c, d)| (c, d.to_vec())).collect(),
        refused,
        car: None,
    };
    Ok((car, imported))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::{Entry, Manifest};

    /// The manifest of a release whose `deploy/` has one directory,
    /// `files`: CIDs of two real blocks (an empty dag-pb directory node and
    /// `hello world`), whatever they are, stand for the two directories.
    fn manifest(deploy: &Cid, files: &Cid) -> Manifest {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "schema": 1, "id": "org.test.Hello", "kind": "app", "arch": "x86_64",
            "branch": "master", "version": "1", "runtime": "org.test.Platform/x86_64/master",
            "published": 0,
            "import": {"kubo_version": "0.43.1", "chunker": "buzhash", "cid_version": 1,
                       "hash": "sha2-256", "raw_leaves": true, "inline_limit": 32},
            "deploy": deploy.to_string(),
            "totals": {"bytes": 0, "files": 0, "entries": 0, "blocks": 0, "dag_bytes": 0},
            "entries": []
        }))
        .unwrap_or_else(|e| panic!("fixture manifest: {e}"));
        m.entries.push(Entry {
            path: "files".into(),
            kind: EntryKind::Directory,
            mode: 0o755,
            size: 0,
            cid: files.to_string(),
            target: None,
        });
        m
    }

    fn cid_of(data: &[u8]) -> Cid {
        use crate::unixfs::SHA2_256;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(data);
        let hash = cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest).unwrap();
        Cid::new_v1(0x70, hash)
    }

    #[test]
    fn only_the_manifests_directories_with_their_own_bytes_are_kept() {
        let (deploy_block, files_block) = (b"deploy node".as_slice(), b"files node".as_slice());
        let (deploy, files) = (cid_of(deploy_block), cid_of(files_block));
        let m = manifest(&deploy, &files);
        let stranger = b"a block no directory names".as_slice();
        let car = crate::car::v1(&[
            (deploy, deploy_block),
            // Bytes of another digest under a wanted CID.
            (files, b"tampered"),
            (files, files_block),
            // A repeat, and a block the manifest does not name.
            (deploy, deploy_block),
            (cid_of(stranger), stranger),
        ])
        .unwrap();
        let (kept, imported) = keep_directories(&m, &car).unwrap();
        assert_eq!(imported.refused, 3);
        assert_eq!(
            imported.blocks,
            [
                (deploy, deploy_block.to_vec()),
                (files, files_block.to_vec())
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(
            crate::car::sections(&kept.unwrap()).unwrap(),
            vec![(deploy, deploy_block), (files, files_block)]
        );
        // Nothing of use: no CAR to import.
        let car = crate::car::v1(&[(cid_of(stranger), stranger)]).unwrap();
        let (kept, imported) = keep_directories(&m, &car).unwrap();
        assert!(kept.is_none());
        assert_eq!(imported.refused, 1);
    }
}
