//! Making a release's encodings when it is published: the pack (every file,
//! small files grouped so they compress together, large files split into
//! independently decodable pieces; with it, the directory CAR: every
//! directory node of `deploy/` in one file) and per-file deltas from the previous
//! releases of the store index's history (same path, or the most similar
//! file where a path was renamed: `libfoo.so.1.2` → `libfoo.so.1.3`).
//!
//! File contents are read back from this node's Kubo by CID, so what is
//! encoded is exactly what the manifest names. The encoded blobs are added
//! as one UnixFS directory, pinned under its own name and *not* linked from
//! the release root (pinning a release never fetches them); the manifest
//! names each blob by CID (`flatipfs_format::encodings`).

use std::collections::HashMap;
use std::time::Instant;

use tracing::{info, warn};

use crate::codec::{self, EncodeSettings};
use crate::kubo::{AddOptions, AddPart, Client};
use crate::release::{Entry, EntryKind, Manifest, ManifestLimits};
use flatipfs_format::encodings::{
    Delta, DirectoryCar, EncodingLimits, Encodings, PackPiece, Slice, CODEC_ZSTD,
};

/// What the publisher makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Make the pack.
    pub pack: bool,
    /// Make deltas.
    pub deltas: bool,
    /// From how many earlier releases (newest first).
    pub delta_releases: usize,
    /// zstd level.
    pub level: i32,
    /// log2 of the largest window a frame may use.
    pub window_log: u32,
    /// Bytes of output of one pack piece.
    pub piece_size: u64,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            pack: true,
            deltas: true,
            delta_releases: 2,
            level: 19,
            window_log: flatipfs_format::encodings::DEFAULT_MAX_WINDOW_LOG,
            piece_size: 32 << 20,
        }
    }
}

/// What was made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodeReport {
    pub pack_pieces: u64,
    pub pack_bytes: u64,
    pub deltas: u64,
    pub delta_bytes: u64,
    /// Bytes of the files the deltas produce.
    pub delta_target_bytes: u64,
    /// Time spent making the encodings.
    pub seconds: f64,
    /// CID of the directory holding every blob (pinned).
    pub directory: Option<String>,
}

/// Why encodings could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Kubo(#[from] crate::kubo::KuboError),
    #[error("encoding: {0}")]
    Io(#[from] std::io::Error),
    #[error("Kubo returned no CID for encoding {0}")]
    NoCid(String),
    #[error("the directory CAR: {0}")]
    DirectoryCar(String),
}

/// Files smaller than this get no delta: a patch of a few bytes saves less
/// than the round trip that fetches it (and a blob of up to 32 bytes would
/// be inlined into its CID).
pub const MIN_DELTA_FILE: u64 = 1024;

/// One blob waiting to be added.
struct Blob {
    name: String,
    data: Vec<u8>,
}

/// Makes the encodings of a release whose files are `entries`; `bases` are
/// the release roots of earlier releases, newest first.
pub async fn make(
    kubo: &Client,
    deploy: &str,
    entries: &[Entry],
    bases: &[String],
    options: EncodeOptions,
    pin_name: &str,
) -> Result<(Option<Encodings>, EncodeReport), EncodeError> {
    let started = Instant::now();
    let limits = EncodingLimits::default();
    let settings = EncodeSettings {
        level: options.level,
        window_log: options.window_log.min(limits.max_window_log),
    };
    let mut blobs = Vec::new();
    let mut pack = Vec::new();
    let mut deltas = Vec::new();
    if options.pack {
        let piece_size = options.piece_size.clamp(1 << 16, limits.max_piece_output);
        for slices in plan_pack(entries, piece_size) {
            let mut data = Vec::new();
            for slice in &slices {
                let cid = &entries
                    .iter()
                    .find(|e| e.path == slice.path)
                    .expect("planned from entries")
                    .cid;
                data.extend(kubo.cat_range(cid, slice.offset, slice.length).await?);
            }
            let frame = blocking(move || codec::encode(&data, settings)).await?;
            let name = format!("p{}", pack.len());
            pack.push(PackPiece {
                cid: name.clone(),
                size: frame.len() as u64,
                slices,
            });
            blobs.push(Blob { name, data: frame });
        }
    }
    let mut directories = None;
    if options.pack {
        let data = directory_car(kubo, deploy, entries).await?;
        directories = Some(DirectoryCar {
            cid: DIRECTORY_CAR.into(),
            size: data.len() as u64,
        });
        blobs.push(Blob {
            name: DIRECTORY_CAR.into(),
            data,
        });
    }
    if options.deltas {
        let max = limits.max_delta_file.min(1 << settings.window_log);
        for base in bases.iter().take(options.delta_releases) {
            match base_manifest(kubo, base).await {
                Ok(old) => {
                    for (file, old_file) in pair_files(entries, &old.entries, max) {
                        let target = kubo.cat(&format!("/ipfs/{}", file.cid), file.size).await?;
                        let source = kubo
                            .cat(&format!("/ipfs/{}", old_file.cid), old_file.size)
                            .await?;
                        let size = file.size;
                        let frame =
                            blocking(move || codec::encode_delta(&source, &target, settings))
                                .await?;
                        // A delta no smaller than its file saves nothing.
                        if frame.len() as u64 >= size {
                            continue;
                        }
                        let name = format!("d{}", deltas.len());
                        deltas.push(Delta {
                            path: file.path.clone(),
                            base_release: base.clone(),
                            base_path: old_file.path.clone(),
                            base_cid: old_file.cid.clone(),
                            base_size: old_file.size,
                            cid: name.clone(),
                            size: frame.len() as u64,
                        });
                        blobs.push(Blob { name, data: frame });
                    }
                }
                Err(e) => warn!(%base, "no deltas from this release: {e}"),
            }
        }
    }
    let mut report = EncodeReport {
        pack_pieces: pack.len() as u64,
        pack_bytes: pack.iter().map(|p| p.size).sum(),
        deltas: deltas.len() as u64,
        delta_bytes: deltas.iter().map(|d| d.size).sum(),
        delta_target_bytes: deltas
            .iter()
            .filter_map(|d| entries.iter().find(|e| e.path == d.path))
            .map(|e| e.size)
            .sum(),
        ..EncodeReport::default()
    };
    if blobs.is_empty() {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok((None, report));
    }
    // Every blob, as one directory.
    let mut parts = vec![AddPart::Directory {
        name: "encodings".into(),
    }];
    for blob in blobs {
        parts.push(AddPart::Bytes {
            name: format!("encodings/{}", blob.name),
            data: blob.data,
        });
    }
    let lines = kubo.add(parts, AddOptions { pin: false }, |_| {}).await?;
    let cid_of = |name: &str| -> Result<String, EncodeError> {
        lines
            .iter()
            .rev()
            .find(|l| l.name == name)
            .and_then(|l| l.hash.clone())
            .ok_or_else(|| EncodeError::NoCid(name.to_string()))
    };
    for piece in &mut pack {
        piece.cid = cid_of(&format!("encodings/{}", piece.cid))?;
    }
    for delta in &mut deltas {
        delta.cid = cid_of(&format!("encodings/{}", delta.cid))?;
    }
    if let Some(car) = &mut directories {
        car.cid = cid_of(&format!("encodings/{DIRECTORY_CAR}"))?;
    }
    let directory = cid_of("encodings")?;
    kubo.pin_add(&directory, pin_name).await?;
    report.directory = Some(directory);
    report.seconds = started.elapsed().as_secs_f64();
    info!(
        pieces = report.pack_pieces,
        pack_bytes = report.pack_bytes,
        deltas = report.deltas,
        delta_bytes = report.delta_bytes,
        seconds = report.seconds,
        "encodings made"
    );
    Ok((
        Some(Encodings {
            codec: CODEC_ZSTD.into(),
            window_log: settings.window_log,
            pack,
            deltas,
            directories,
        }),
        report,
    ))
}

/// The name of the directory CAR among the encodings.
const DIRECTORY_CAR: &str = "directories.car";

/// A CAR of the dag-pb node of `deploy` and of every directory of
/// `entries` (each once; inlined ones carry themselves), read from this
/// node. Sub-shards of a HAMT-sharded directory are not in it: a client
/// fetches those as it would without the CAR.
async fn directory_car(
    kubo: &Client,
    deploy: &str,
    entries: &[Entry],
) -> Result<Vec<u8>, EncodeError> {
    let mut seen = std::collections::HashSet::new();
    let mut blocks = Vec::new();
    let directories = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Directory)
        .map(|e| e.cid.as_str());
    for cid in std::iter::once(deploy).chain(directories) {
        let parsed = cid::Cid::try_from(cid)
            .map_err(|e| EncodeError::DirectoryCar(format!("directory {cid}: {e}")))?;
        // Identity CIDs carry their node.
        if parsed.hash().code() == 0 || !seen.insert(parsed) {
            continue;
        }
        let data = kubo.block_get(cid, crate::range_blocks::MAX_NODE).await?;
        blocks.push((parsed, data));
    }
    let refs: Vec<(cid::Cid, &[u8])> = blocks.iter().map(|(c, d)| (*c, d.as_slice())).collect();
    crate::car::v1(&refs)
        .ok_or_else(|| EncodeError::DirectoryCar("deploy/ has no directory block".into()))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// The manifest of an earlier release, read from this node and validated.
async fn base_manifest(kubo: &Client, release: &str) -> Result<Manifest, String> {
    let path = format!("/ipfs/{release}/{}", crate::release::MANIFEST_NAME);
    let bytes = kubo
        .cat_bounded(&path, 64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    manifest
        .validate(ManifestLimits::default())
        .map_err(|e| e.to_string())?;
    Ok(manifest)
}

/// The pack's pieces: files ordered by extension then path (alike files
/// next to each other compress better together), small files grouped up to
/// `piece_size` bytes, larger files cut into pieces of `piece_size`.
pub fn plan_pack(entries: &[Entry], piece_size: u64) -> Vec<Vec<Slice>> {
    let mut files: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && e.size > 0)
        .collect();
    files.sort_by(|a, b| (extension(&a.path), &a.path).cmp(&(extension(&b.path), &b.path)));
    let mut pieces = Vec::new();
    let mut group: Vec<Slice> = Vec::new();
    let mut group_bytes = 0;
    for file in files {
        if file.size > piece_size {
            let mut offset = 0;
            while offset < file.size {
                let length = piece_size.min(file.size - offset);
                pieces.push(vec![Slice {
                    path: file.path.clone(),
                    offset,
                    length,
                }]);
                offset += length;
            }
            continue;
        }
        if group_bytes + file.size > piece_size {
            pieces.push(std::mem::take(&mut group));
            group_bytes = 0;
        }
        group.push(Slice {
            path: file.path.clone(),
            offset: 0,
            length: file.size,
        });
        group_bytes += file.size;
    }
    if !group.is_empty() {
        pieces.push(group);
    }
    pieces
}

fn extension(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split_once('.').map_or("", |(_, ext)| ext)
}

/// A path with its digit runs replaced by `#`: `lib/libfoo.so.1.2` and
/// `lib/libfoo.so.1.3` are the same file renamed.
fn shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_digits = false;
    for c in path.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// The files of the new release worth a delta, each with its base: the
/// file at the same path if its content changed, else (a path the old
/// release lacks) the old file of the same shape the new release lacks,
/// closest in size. Unchanged files need nothing; files under
/// [`MIN_DELTA_FILE`] or over `max` bytes get no delta.
pub fn pair_files<'a>(new: &'a [Entry], old: &'a [Entry], max: u64) -> Vec<(&'a Entry, &'a Entry)> {
    let files = |entries: &'a [Entry]| -> HashMap<&'a str, &'a Entry> {
        entries
            .iter()
            .filter(|e| e.kind == EntryKind::File && e.size >= MIN_DELTA_FILE && e.size <= max)
            .map(|e| (e.path.as_str(), e))
            .collect()
    };
    let (new_files, old_files) = (files(new), files(old));
    let new_paths: std::collections::HashSet<&str> = new.iter().map(|e| e.path.as_str()).collect();
    let mut gone_by_shape: HashMap<String, Vec<&Entry>> = HashMap::new();
    for (path, entry) in &old_files {
        if !new_paths.contains(path) {
            gone_by_shape.entry(shape(path)).or_default().push(entry);
        }
    }
    let mut pairs = Vec::new();
    for entry in new
        .iter()
        .filter(|e| new_files.contains_key(e.path.as_str()))
    {
        match old_files.get(entry.path.as_str()) {
            Some(old) if old.cid == entry.cid => {}
            Some(old) => pairs.push((entry, *old)),
            None => {
                if let Some(old) = gone_by_shape.get(&shape(&entry.path)).and_then(|c| {
                    c.iter()
                        .filter(|o| o.cid != entry.cid)
                        .min_by_key(|o| (o.size.abs_diff(entry.size), o.path.as_str()))
                }) {
                    pairs.push((entry, *old));
                }
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, cid: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o644,
            size,
            target: None,
            cid: cid.into(),
        }
    }

    #[test]
    fn small_files_are_grouped_and_large_files_split() {
        let entries = vec![
            file("files/a.txt", 30, "x"),
            file("files/big.so", 250, "x"),
            file("files/b.txt", 50, "x"),
            file("files/c.so", 40, "x"),
            file("files/empty", 0, "x"),
        ];
        let pieces = plan_pack(&entries, 100);
        let shown: Vec<Vec<(String, u64, u64)>> = pieces
            .iter()
            .map(|p| {
                p.iter()
                    .map(|s| (s.path.clone(), s.offset, s.length))
                    .collect()
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                vec![("files/big.so".into(), 0, 100),],
                vec![("files/big.so".into(), 100, 100)],
                vec![("files/big.so".into(), 200, 50)],
                vec![("files/c.so".into(), 0, 40), ("files/a.txt".into(), 0, 30)],
                vec![("files/b.txt".into(), 0, 50)],
            ]
        );
    }

    #[test]
    fn changed_and_renamed_files_are_paired_with_their_base() {
        let old = vec![
            file("files/lib/libfoo.so.1.2", 10_000, "old-foo"),
            file("files/lib/libbar.so", 5000, "old-bar"),
            file("files/same", 10_000, "same"),
            file("files/lib/libqux.so.3", 1100, "qux3"),
            file("files/lib/libqux.so.4", 9000, "qux4"),
            file("files/tiny", 100, "tiny1"),
        ];
        let new = vec![
            file("files/lib/libfoo.so.1.3", 10_100, "new-foo"),
            file("files/lib/libbar.so", 5200, "new-bar"),
            file("files/same", 10_000, "same"),
            file("files/lib/libqux.so.5", 9500, "qux5"),
            file("files/brand-new", 10_000, "fresh"),
            file("files/huge", 50_000, "huge"),
            // Changed, but too small for a delta to pay.
            file("files/tiny", 120, "tiny2"),
        ];
        let pairs: Vec<(&str, &str)> = pair_files(&new, &old, 40_960)
            .into_iter()
            .map(|(n, o)| (n.path.as_str(), o.path.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("files/lib/libfoo.so.1.3", "files/lib/libfoo.so.1.2"),
                ("files/lib/libbar.so", "files/lib/libbar.so"),
                // The closest in size of the gone files of the same shape.
                ("files/lib/libqux.so.5", "files/lib/libqux.so.4"),
            ]
        );
    }
}
