//! Fetching a release's files through its encodings: per file the cheapest
//! verified path, a delta when a complete earlier release holds its base,
//! else a pack piece, else nothing here (the pin walk that follows fetches
//! plain blocks, as for a release without encodings).
//!
//! Every decoded file is added to this node's Kubo with the release's import
//! profile and kept only if the CID Kubo returns is the manifest's; its
//! blocks are then local (and held by the release's MFS copy), so the pin
//! walk finds them and fetches nothing for it. A mismatch, a refused or
//! failed decoding ([`crate::codec`] bounds every one) is logged and
//! counted, and that file is left to plain blocks. Files already local are
//! skipped, so a fetch resumed after cancel, SIGKILL or restart never
//! fetches a verified file again (on a first try, files of a group with
//! anything missing are not checked one by one: see [`run`]). A file that
//! is one raw block is hashed here and stored with the others of its batch
//! in one `dag/import` ([`crate::car`]), the others with `add`. The bytes
//! each path moved are counted per release in
//! `<state>/releases/<release>.wire.json` (kept across restarts).
//!
//! The one hook for the fetch (`fetch.rs`) is [`run`]; what happens to a
//! file once verified is [`accept_verified`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::codec::{self, DecodeError, DecodeLimits};
use crate::kubo::{AddOptions, AddPart, Client, KuboError};
use crate::manager::Manager;
use crate::release::{Entry, EntryKind, Manifest};
use flatipfs_format::encodings::{Delta, Encodings, PackPiece};

/// Bytes moved per path for one release, and the decodings refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBytes {
    /// Encoded bytes fetched as deltas.
    pub delta: u64,
    /// Encoded bytes fetched as pack pieces.
    pub pack: u64,
    /// Bytes of the release fetched as plain blocks.
    pub plain: u64,
    /// Files produced (and verified) from deltas.
    pub delta_files: u64,
    /// Files produced (and verified) from pack pieces.
    pub pack_files: u64,
    /// Decodings refused or whose result did not verify.
    pub refused: u64,
}

/// Why one encoding was not used.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Kubo(#[from] KuboError),
    #[error("the encoding {cid} is {got} bytes, the manifest says {expected}")]
    EncodingSize {
        cid: String,
        got: u64,
        expected: u64,
    },
    #[error("{path}: decoded to CID {got}, the manifest says {expected}")]
    Mismatch {
        path: String,
        got: String,
        expected: String,
    },
    #[error("{0}")]
    Local(String),
}

/// Where the counters of `release` are kept.
pub fn wire_path(manager: &Manager, release: &str) -> PathBuf {
    manager
        .config()
        .state_directory
        .join("releases")
        .join(format!("{release}.wire.json"))
}

/// The counters of `release` so far (zero if none).
pub fn load_wire(manager: &Manager, release: &str) -> WireBytes {
    std::fs::read(wire_path(manager, release))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_wire(manager: &Manager, release: &str, wire: &WireBytes) {
    let path = wire_path(manager, release);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(wire).expect("serializes"))?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        warn!("cannot record the bytes fetched for {release}: {e}");
    }
}

/// Adds the counters of one step to `release`'s.
pub fn add_wire(manager: &Manager, release: &str, step: impl FnOnce(&mut WireBytes)) {
    let mut wire = load_wire(manager, release);
    step(&mut wire);
    save_wire(manager, release, &wire);
}

/// Whether this node's `add` reproduces the manifest's CIDs.
fn same_profile(manifest: &Manifest) -> bool {
    let p = &manifest.import;
    p.chunker == "buzhash"
        && p.cid_version == 1
        && p.hash == "sha2-256"
        && p.raw_leaves
        && p.inline_limit.to_string() == crate::kubo::INLINE_LIMIT
}

/// Releases of the app complete on this machine (their blocks all local).
fn complete_releases(manager: &Manager, id: &str) -> HashSet<String> {
    manager
        .store()
        .load()
        .ok()
        .and_then(|s| s.apps.get(id).cloned())
        .map(|a| {
            a.deployments
                .into_iter()
                .filter(|d| d.complete)
                .map(|d| d.release)
                .collect()
        })
        .unwrap_or_default()
}

/// The decoding phase of one fetch attempt of `release`; see the module
/// docs. Returns when every usable encoding was tried or `cancel` fired.
pub async fn run(
    manager: &Manager,
    kubo: &Client,
    manifest: &Manifest,
    release: &str,
    cancel: &CancellationToken,
) {
    let config = manager.config();
    let Some(encodings) = &manifest.encodings else {
        return;
    };
    if !config.fetch.encodings {
        return;
    }
    if !same_profile(manifest) {
        info!(app = %manifest.id, "encodings unused: the release's import profile is not this node's");
        return;
    }
    let limits = DecodeLimits {
        max_window_log: config
            .limits
            .max_window_log
            .min(encodings.window_log.max(10)),
        max_ratio: config.limits.max_encoding_ratio,
    };
    let files: HashMap<&str, &Entry> = manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && e.size > 0)
        .map(|e| (e.path.as_str(), e))
        .collect();
    // By CID, offline: resolving a path would fetch a one-block file whole.
    // A group of files per call first (a group all present costs one
    // call); the files of a group with anything missing one by one, a few
    // calls at once (one call per file, one after the other, cost seconds
    // for 5,000 small files). On a first try (no release of the app
    // complete here, nothing decoded for this one yet) the files of a group
    // with anything missing are all taken as missing, unchecked: they can
    // only be local by chance (shared with another app), and such a file is
    // then decoded and verified again, which stores nothing twice; the
    // check one by one would cost 0.7 s per 5,000 files.
    let held = complete_releases(manager, &manifest.id);
    let wire = load_wire(manager, release);
    let first_try = held.is_empty() && wire.pack_files == 0 && wire.delta_files == 0;
    let checking = std::time::Instant::now();
    let mut sorted: Vec<(&str, &Entry)> = files.iter().map(|(p, e)| (*p, *e)).collect();
    sorted.sort_unstable_by_key(|(p, _)| *p);
    let mut unsure: Vec<&str> = Vec::new();
    for group in groups(&sorted) {
        if cancel.is_cancelled() {
            return;
        }
        let cids: Vec<&str> = group.iter().map(|(_, e)| e.cid.as_str()).collect();
        if kubo.dag_stat(&cids).await.is_err() {
            unsure.extend(group.iter().map(|(p, _)| *p));
        }
    }
    let mut missing = HashSet::new();
    let mut running = tokio::task::JoinSet::new();
    let mut next = unsure.iter().enumerate();
    if first_try {
        missing.extend(next.by_ref().map(|(_, path)| *path));
    }
    loop {
        while running.len() < CHECKS_AT_ONCE {
            let Some((i, path)) = next.next() else { break };
            let (kubo, cid) = (kubo.clone(), files[path].cid.clone());
            running.spawn(async move { (i, kubo.dag_stat(&[&cid]).await.is_err()) });
        }
        if cancel.is_cancelled() {
            return;
        }
        match running.join_next().await {
            Some(Ok((i, true))) => {
                missing.insert(unsure[i]);
            }
            Some(_) => {}
            None => break,
        }
    }
    let checked = checking.elapsed();
    if missing.is_empty() {
        return;
    }
    let decoder = Decoder {
        manager,
        kubo,
        release,
        limits,
        block_cost: config.fetch.plain_block_cost,
        scratch: config.state_directory.join("tmp").join("decode"),
        timing: Timing::default(),
    };
    // Deltas first: the cheapest.
    for delta in &encodings.deltas {
        if cancel.is_cancelled() {
            return;
        }
        if !held.contains(&delta.base_release) || !missing.contains(delta.path.as_str()) {
            continue;
        }
        let file = files[delta.path.as_str()];
        // Verified or refused, the file is settled here: a refused one
        // comes as plain blocks, not through another encoding.
        if let Err(e) = decoder.delta(delta, file).await {
            decoder.refused(&delta.path, "delta", &e);
        }
        missing.remove(delta.path.as_str());
    }
    decoder.pack(encodings, &files, &mut missing, cancel).await;
    // Where the time went (scripts/bench-fetch.sh shows this line).
    let t = &decoder.timing;
    info!(
        "decoding timing {}: missing files checked {:.2} s ({} of {} files in groups with something missing{}), encodings fetched {:.2} s, decoded {:.2} s, verified {:.2} s",
        manifest.id,
        checked.as_secs_f64(),
        unsure.len(),
        files.len(),
        if first_try { ", a first try: not checked one by one" } else { ", checked one by one" },
        t.get(&t.fetched),
        t.get(&t.decoded),
        t.get(&t.verified),
    );
}

/// Time spent per step of decoding (nanoseconds, summed over encodings).
#[derive(Default)]
struct Timing {
    fetched: std::sync::atomic::AtomicU64,
    decoded: std::sync::atomic::AtomicU64,
    verified: std::sync::atomic::AtomicU64,
}

impl Timing {
    fn add(&self, step: &std::sync::atomic::AtomicU64, since: std::time::Instant) {
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        step.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    fn get(&self, step: &std::sync::atomic::AtomicU64) -> f64 {
        step.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
    }
}

struct Decoder<'a> {
    manager: &'a Manager,
    kubo: &'a Client,
    release: &'a str,
    limits: DecodeLimits,
    /// [`crate::config::FetchConfig::plain_block_cost`].
    block_cost: u64,
    scratch: PathBuf,
    timing: Timing,
}

impl Decoder<'_> {
    fn refused(&self, path: &str, what: &str, e: &WireError) {
        warn!(release = %self.release, %path, "{what} refused, plain blocks instead: {e}");
        add_wire(self.manager, self.release, |w| w.refused += 1);
    }

    /// Fetches an encoding of `size` bytes, after checking it may produce
    /// `output` bytes; counted in `count` as it arrives.
    async fn fetch(
        &self,
        cid: &str,
        size: u64,
        output: u64,
        count: fn(&mut WireBytes, u64),
    ) -> Result<Vec<u8>, WireError> {
        codec::check_size(size, output, self.limits)?;
        // A stalled encoding falls back to plain blocks, whose walk has its
        // own stall timeout and retry (with the peers' connections renewed).
        let stall = self.manager.config().fetch.stall_timeout;
        let started = std::time::Instant::now();
        let bytes = self
            .kubo
            .cat_bounded_stalling(&format!("/ipfs/{cid}"), size, stall)
            .await;
        self.timing.add(&self.timing.fetched, started);
        let bytes = bytes?;
        add_wire(self.manager, self.release, |w| count(w, bytes.len() as u64));
        if bytes.len() as u64 != size {
            return Err(WireError::EncodingSize {
                cid: cid.to_string(),
                got: bytes.len() as u64,
                expected: size,
            });
        }
        Ok(bytes)
    }

    async fn delta(&self, delta: &Delta, file: &Entry) -> Result<(), WireError> {
        let encoded = self
            .fetch(&delta.cid, delta.size, file.size, |w, n| w.delta += n)
            .await?;
        // The base is in a complete release: local, never fetched.
        let base = self
            .kubo
            .cat_bounded(&format!("/ipfs/{}", delta.base_cid), delta.base_size)
            .await?;
        if base.len() as u64 != delta.base_size {
            return Err(WireError::Local(format!(
                "the base {} is not {} bytes",
                delta.base_cid, delta.base_size
            )));
        }
        let (limits, expected) = (self.limits, file.size);
        let decoded = tokio::task::spawn_blocking(move || {
            codec::decode(&encoded, Some(&base), expected, limits)
        })
        .await
        .map_err(|e| WireError::Local(e.to_string()))??;
        self.verify(
            file,
            AddPart::Bytes {
                name: "file".into(),
                data: decoded,
            },
        )
        .await?;
        add_wire(self.manager, self.release, |w| w.delta_files += 1);
        Ok(())
    }

    /// Fetches the pieces worth fetching (those whose size is below the
    /// plain bytes of the missing files they hold), in order; a file cut
    /// into several pieces is assembled in a scratch file.
    async fn pack(
        &self,
        encodings: &Encodings,
        files: &HashMap<&str, &Entry>,
        missing: &mut HashSet<&str>,
        cancel: &CancellationToken,
    ) {
        // A large file being assembled: path and scratch file.
        let mut partial: Option<(String, PathBuf)> = None;
        for piece in &encodings.pack {
            if cancel.is_cancelled() {
                return;
            }
            let wanted: u64 = piece
                .slices
                .iter()
                .filter(|s| missing.contains(s.path.as_str()))
                .map(|s| s.length)
                .sum();
            if wanted == 0 {
                continue;
            }
            // What the plain blocks would cost: their bytes, and per block
            // what a block costs beyond its bytes.
            let plain_blocks: u64 = piece
                .slices
                .iter()
                .filter(|s| missing.contains(s.path.as_str()))
                .map(|s| blocks(s.length))
                .sum();
            // Too heavy for what it claims: refused (and counted) unfetched.
            let output: u64 = piece.slices.iter().map(|s| s.length).sum();
            if let Err(e) = codec::check_size(piece.size, output, self.limits) {
                let path = piece.slices.first().map_or("", |s| s.path.as_str());
                self.refused(path, "pack piece", &e.into());
                continue;
            }
            let piece_cost = piece.size + blocks(piece.size) * self.block_cost;
            if piece_cost >= wanted + plain_blocks * self.block_cost {
                continue;
            }
            if let Err(e) = self.piece(piece, files, missing, &mut partial).await {
                let path = piece.slices.first().map_or("", |s| s.path.as_str());
                self.refused(path, "pack piece", &e);
                // Whatever the piece was to produce goes to plain blocks.
                for slice in &piece.slices {
                    missing.remove(slice.path.as_str());
                }
                if let Some((_, scratch)) = partial.take() {
                    let _ = std::fs::remove_file(scratch);
                }
            }
        }
        if let Some((_, scratch)) = partial {
            let _ = std::fs::remove_file(scratch);
        }
    }

    async fn piece(
        &self,
        piece: &PackPiece,
        files: &HashMap<&str, &Entry>,
        missing: &mut HashSet<&str>,
        partial: &mut Option<(String, PathBuf)>,
    ) -> Result<(), WireError> {
        let output: u64 = piece.slices.iter().map(|s| s.length).sum();
        let encoded = self
            .fetch(&piece.cid, piece.size, output, |w, n| w.pack += n)
            .await?;
        let limits = self.limits;
        let started = std::time::Instant::now();
        let decoded =
            tokio::task::spawn_blocking(move || codec::decode(&encoded, None, output, limits))
                .await
                .map_err(|e| WireError::Local(e.to_string()))??;
        self.timing.add(&self.timing.decoded, started);
        let mut at = 0usize;
        // Whole files, verified together (one `dag/import` or `add` of many
        // files), a few batches at once once the piece is cut.
        let mut batch: Vec<(&Entry, &[u8])> = Vec::new();
        let mut batches = Vec::new();
        for slice in &piece.slices {
            // Validated: slices lie within their files and sum to `output`.
            let bytes = &decoded[at..at + slice.length as usize];
            at += slice.length as usize;
            let Some(file) = files.get(slice.path.as_str()).copied() else {
                continue;
            };
            if !missing.contains(slice.path.as_str()) {
                continue;
            }
            if slice.offset == 0 && slice.length == file.size {
                batch.push((file, bytes));
                missing.remove(slice.path.as_str());
                if batch.len() >= BATCH_FILES
                    || batch.iter().map(|(_, b)| b.len()).sum::<usize>() >= BATCH_BYTES
                {
                    batches.push(std::mem::take(&mut batch));
                }
                continue;
            }
            // Part of a large file: appended to its scratch file.
            let scratch = match partial {
                Some((path, scratch)) if *path == slice.path => scratch.clone(),
                _ => {
                    if slice.offset != 0 {
                        // Its beginning was not fetched: plain blocks.
                        continue;
                    }
                    std::fs::create_dir_all(&self.scratch)
                        .map_err(|e| WireError::Local(e.to_string()))?;
                    let scratch = self.scratch.join(&file.cid);
                    std::fs::write(&scratch, b"").map_err(|e| WireError::Local(e.to_string()))?;
                    *partial = Some((slice.path.clone(), scratch.clone()));
                    scratch
                }
            };
            append(&scratch, bytes).map_err(|e| WireError::Local(e.to_string()))?;
            if slice.offset + slice.length == file.size {
                *partial = None;
                let opened = scratch.clone();
                let result = self
                    .verify(
                        file,
                        AddPart::File {
                            name: "file".into(),
                            open: Box::new(move || std::fs::File::open(opened)),
                            size: file.size,
                        },
                    )
                    .await;
                let _ = std::fs::remove_file(&scratch);
                match result {
                    Ok(()) => add_wire(self.manager, self.release, |w| w.pack_files += 1),
                    Err(e) => self.refused(&file.path, "pack slices", &e),
                }
                missing.remove(slice.path.as_str());
            }
        }
        batches.push(batch);
        let mut result = Ok(());
        while !batches.is_empty() {
            let now: Vec<_> = batches
                .drain(..batches.len().min(BATCHES_AT_ONCE))
                .map(|batch| self.verify_batch(batch))
                .collect();
            for done in futures_util::future::join_all(now).await {
                result = result.and(done);
            }
        }
        result
    }

    /// [`Self::verify`] of whole files, one `add` per batch: each file is a
    /// top-level part named by its index, and each is accepted only if the
    /// CID Kubo returns for its name is its manifest's. A file Kubo gave no
    /// line for is refused (plain blocks).
    async fn verify_batch(&self, batch: Vec<(&Entry, &[u8])>) -> Result<(), WireError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Files that are one raw block: hashed here against their CID, then
        // stored as those blocks in one `dag/import` (a CAR); the others
        // through `add`, which verifies them by the CID it computes.
        let (raw, other): (Vec<_>, Vec<_>) = batch.into_iter().partition(|(file, _)| {
            file.size <= MAX_RAW_BLOCK && one_raw_block(&file.cid).is_some()
        });
        let started = std::time::Instant::now();
        let put = self.put_raw_blocks(&raw).await;
        let parts: Vec<AddPart> = other
            .iter()
            .enumerate()
            .map(|(i, (_, bytes))| AddPart::Bytes {
                name: i.to_string(),
                data: bytes.to_vec(),
            })
            .collect();
        let added = if parts.is_empty() {
            Ok(Vec::new())
        } else {
            self.kubo
                .add(parts, AddOptions { pin: false }, |_| {})
                .await
        };
        self.timing.add(&self.timing.verified, started);
        let mut added: HashMap<String, String> = added?
            .into_iter()
            .filter_map(|l| Some((l.name, l.hash?)))
            .collect();
        let got = put?
            .into_iter()
            .chain((0..other.len()).map(|i| added.remove(&i.to_string()).unwrap_or_default()));
        let mut verified = 0;
        for ((file, _), cid) in raw.iter().chain(&other).zip(got) {
            if cid == file.cid {
                accept_verified(&file.path);
                verified += 1;
            } else {
                let e = WireError::Mismatch {
                    path: file.path.clone(),
                    got: cid,
                    expected: file.cid.clone(),
                };
                self.refused(&file.path, "pack slice", &e);
            }
        }
        add_wire(self.manager, self.release, |w| w.pack_files += verified);
        Ok(())
    }

    /// Hashes each file (one raw block) and compares the digest with its
    /// CID's; those that match are stored in one `dag/import`. Returns per
    /// file its own CID when its bytes match it, else what they hash to.
    async fn put_raw_blocks(&self, raw: &[(&Entry, &[u8])]) -> Result<Vec<String>, WireError> {
        let mut got = Vec::with_capacity(raw.len());
        let mut blocks = Vec::with_capacity(raw.len());
        // Hashing and copying a batch (up to BATCH_BYTES) is CPU work: off
        // the runtime's workers, which also answer lazy reads, as decoding
        // is.
        let car = tokio::task::block_in_place(|| {
            for (file, bytes) in raw {
                let cid = one_raw_block(&file.cid).expect("partitioned on it");
                if crate::unixfs::is_block_of(&cid, bytes) {
                    blocks.push((cid, *bytes));
                    got.push(file.cid.clone());
                } else {
                    got.push("bytes of another SHA-256 digest".to_string());
                }
            }
            crate::car::v1(&blocks)
        });
        if let Some(car) = car {
            let stored = self.kubo.dag_import(car).await?;
            if stored != blocks.len() as u64 {
                return Err(WireError::Local(format!(
                    "Kubo imported {stored} of {} verified blocks",
                    blocks.len()
                )));
            }
        }
        Ok(got)
    }

    /// Adds the decoded bytes with the release's import profile and accepts
    /// them only if Kubo gives the manifest's CID.
    async fn verify(&self, file: &Entry, part: AddPart) -> Result<(), WireError> {
        let lines = self
            .kubo
            .add(vec![part], AddOptions { pin: false }, |_| {})
            .await?;
        let got = lines
            .last()
            .and_then(|l| l.hash.clone())
            .unwrap_or_default();
        if got != file.cid {
            return Err(WireError::Mismatch {
                path: file.path.clone(),
                got,
                expected: file.cid.clone(),
            });
        }
        accept_verified(&file.path);
        Ok(())
    }
}

/// Most files, and bytes, verified by one `add` (bounded so that one call
/// stays short and its parts are not all held twice).
const BATCH_FILES: usize = 512;
const BATCH_BYTES: usize = 8 << 20;

/// The largest block Kubo imports (a raw file above it, which the release
/// import profile never makes, goes through `add`).
const MAX_RAW_BLOCK: u64 = 1 << 20;

/// Batches of one piece verified at once (Kubo stores the blocks of
/// several calls in parallel); bounds the copies of decoded bytes in
/// flight to this times [`BATCH_BYTES`].
const BATCHES_AT_ONCE: usize = 4;

/// `dag/stat` calls of single files at once.
const CHECKS_AT_ONCE: usize = 32;

/// Files whose CIDs one `dag/stat` checks at most, and their bytes.
const GROUP_FILES: usize = 64;
const GROUP_BYTES: u64 = 4 << 20;

/// `files` (sorted by path) in groups of at most [`GROUP_FILES`] files and
/// [`GROUP_BYTES`] bytes (a larger file is a group of its own).
fn groups<'a, 'b>(files: &'b [(&'a str, &'a Entry)]) -> Vec<&'b [(&'a str, &'a Entry)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (_, file)) in files.iter().enumerate() {
        if i > start && (i - start >= GROUP_FILES || bytes + file.size > GROUP_BYTES) {
            out.push(&files[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += file.size;
    }
    if start < files.len() {
        out.push(&files[start..]);
    }
    out
}

/// About how many blocks `size` bytes take as plain blocks under the
/// release import profile (buzhash chunks of 256 KiB on average, and a
/// root above two chunks or more).
fn blocks(size: u64) -> u64 {
    let chunks = size.div_ceil(256 << 10).max(1);
    if chunks > 1 {
        chunks + 1
    } else {
        1
    }
}

/// The hook for whoever keeps fully fetched files locally: `path` (relative
/// to `deploy/`) arrived as verified bytes and its blocks are in Kubo.
/// `cid` parsed, when it names one raw block hashed with sha2-256 (CIDv1,
/// codec raw, 32-byte digest): a file whose bytes are that block, with no
/// DAG node above them.
fn one_raw_block(cid: &str) -> Option<cid::Cid> {
    cid::Cid::try_from(cid).ok().filter(|c| {
        c.version() == cid::Version::V1
            && c.codec() == crate::unixfs::RAW
            && c.hash().code() == crate::unixfs::SHA2_256
            && c.hash().size() == 32
    })
}

fn accept_verified(path: &str) {
    tracing::debug!(%path, "verified from an encoding");
}

fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o644,
            size,
            target: None,
            cid: "bafkreiabc".into(),
        }
    }

    #[test]
    fn small_files_are_checked_in_groups_and_large_ones_alone() {
        let small: Vec<Entry> = (0..130).map(|i| file(&format!("f{i:03}"), 4096)).collect();
        let large = file("z", 64 << 20);
        let mut all: Vec<(&str, &Entry)> = small.iter().map(|e| (e.path.as_str(), e)).collect();
        all.push(("z", &large));
        let sizes: Vec<usize> = groups(&all).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, vec![64, 64, 2, 1]);
        assert!(groups(&[]).is_empty());
    }

    #[test]
    fn blocks_follow_the_chunker() {
        assert_eq!(blocks(1), 1);
        assert_eq!(blocks(256 << 10), 1);
        assert_eq!(blocks((256 << 10) + 1), 3);
        assert_eq!(blocks(32 << 20), 129);
    }

    #[test]
    fn only_sha256_raw_blocks_are_imported_as_blocks() {
        // A raw block (`block put --cid-codec=raw`), a UnixFS file node
        // (dag-pb), an identity CID (the bytes inline), a CIDv0 and garbage.
        assert!(
            one_raw_block("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e").is_some()
        );
        for other in [
            "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            "bafkqablimvwgy3y",
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
            "bafkreinot-a-cid",
        ] {
            assert!(one_raw_block(other).is_none(), "{other}");
        }
    }
}
