//! The encodings a schema 2 manifest may name: a compressed *pack* of the
//! release and per-file *deltas* against files of earlier releases, and the
//! structural checks they must pass before a client fetches any of them.
//!
//! Encodings are ordinary IPFS files referenced by CID from the manifest
//! (not linked from the release root, so pinning a release never fetches
//! them). They only save bytes: a client decodes one, adds the result with
//! the manifest's import profile and keeps it only if the CID it gets is the
//! manifest's. So nothing here is trusted for content; these checks bound
//! what a client may be asked to fetch and decode (counts, sizes, what each
//! encoding claims to produce) and make sure each claim names a file of the
//! manifest.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::release::{valid_cid_v1, Entry};

/// The only codec: zstd frames (a pack piece is one frame; a delta is one
/// frame made with the base file as its reference prefix, `--patch-from`).
pub const CODEC_ZSTD: &str = "zstd";

/// What a schema 2 manifest says about its encodings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encodings {
    /// Always [`CODEC_ZSTD`].
    pub codec: String,
    /// log2 of the largest window any frame needs; a client refuses frames
    /// asking for more than its own limit whatever this says.
    pub window_log: u32,
    /// The pack: pieces, each an independent zstd frame.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pack: Vec<PackPiece>,
    /// Deltas from files of earlier releases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<Delta>,
    /// The directory nodes of `deploy/` in one CAR file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directories: Option<DirectoryCar>,
}

/// The dag-pb node of `deploy/` and of each of its directories, as one CAR
/// v1 file (a UnixFS file): a client checks the manifest against the tree
/// (the binding check) from this one download instead of one network round
/// trip per directory. Nothing in it is trusted: a client keeps only blocks
/// whose CID is one of the manifest's directories and whose bytes hash to
/// it, and the binding check walks the tree as it would without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryCar {
    /// CIDv1 of the CAR file.
    pub cid: String,
    /// Bytes of the CAR file.
    pub size: u64,
}

/// Bytes a directory CAR may take per entry of its manifest (a link of at
/// most a 255-byte name and a CID, and each node's share of framing), plus
/// [`DIRECTORY_CAR_SLACK`].
pub const DIRECTORY_CAR_PER_ENTRY: u64 = 1024;
/// Bytes a directory CAR may take beyond its entries' share.
pub const DIRECTORY_CAR_SLACK: u64 = 64 << 10;

/// One piece of the pack: a zstd frame whose output is the concatenation
/// of `slices` (several whole small files, or one part of a large file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackPiece {
    /// CIDv1 of the encoded piece (a UnixFS file).
    pub cid: String,
    /// Bytes of the encoded piece.
    pub size: u64,
    pub slices: Vec<Slice>,
}

/// Part of a file of the release: `length` bytes from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    pub path: String,
    pub offset: u64,
    pub length: u64,
}

/// A zstd patch producing file `path` of this release from `base_path`
/// (CID `base_cid`) of the release `base_release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delta {
    pub path: String,
    /// Release root CID of the earlier release.
    pub base_release: String,
    /// Path of the base file in that release (differs on a rename).
    pub base_path: String,
    /// CID of the base file.
    pub base_cid: String,
    /// Size of the base file.
    pub base_size: u64,
    /// CIDv1 of the patch (a UnixFS file).
    pub cid: String,
    /// Bytes of the patch.
    pub size: u64,
}

/// Bounds on the encodings a manifest may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodingLimits {
    /// Largest `window_log` named.
    pub max_window_log: u32,
    /// Most pack pieces.
    pub max_pieces: usize,
    /// Most slices over all pieces.
    pub max_slices: usize,
    /// Most bytes one piece decodes to.
    pub max_piece_output: u64,
    /// Most deltas.
    pub max_deltas: usize,
    /// Largest file a delta may produce or start from.
    pub max_delta_file: u64,
    /// An encoding may be at most this many times the bytes it produces
    /// (plus [`ENCODING_SLACK`] for frame headers).
    pub max_ratio: u64,
}

/// Bytes an encoding may exceed `max_ratio` times its output by.
pub const ENCODING_SLACK: u64 = 1024;
/// Default [`EncodingLimits::max_window_log`]: 256 MiB windows (a delta of
/// a browser's 180 MB library needs its base within reach).
pub const DEFAULT_MAX_WINDOW_LOG: u32 = 28;
/// The smallest window zstd knows.
pub const MIN_WINDOW_LOG: u32 = 10;
/// The largest window zstd knows on 64-bit machines.
pub const MAX_WINDOW_LOG: u32 = 31;

impl Default for EncodingLimits {
    fn default() -> Self {
        EncodingLimits {
            max_window_log: DEFAULT_MAX_WINDOW_LOG,
            max_pieces: 100_000,
            max_slices: 400_000,
            max_piece_output: 64 << 20,
            max_deltas: 200_000,
            max_delta_file: 1 << DEFAULT_MAX_WINDOW_LOG,
            max_ratio: 2,
        }
    }
}

/// Why a manifest's encodings are refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodingError {
    #[error("unknown codec {0:?} (this daemon reads \"zstd\")")]
    Codec(String),
    #[error("window_log {0} is outside {MIN_WINDOW_LOG}..={1}")]
    WindowLog(u32, u32),
    #[error("{what}: {count}, over the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("pack piece {index}: {what}")]
    BadPiece { index: usize, what: String },
    #[error("delta {index} ({path:?}): {what}")]
    BadDelta {
        index: usize,
        path: String,
        what: String,
    },
    #[error("the pack covers {path:?} only partly or out of order")]
    PartialCoverage { path: String },
    #[error("directory CAR: {0}")]
    BadDirectoryCar(String),
}

/// Whether `encoded` bytes are an acceptable size for producing `output`.
pub fn within_ratio(encoded: u64, output: u64, max_ratio: u64) -> bool {
    encoded
        <= output
            .saturating_mul(max_ratio)
            .saturating_add(ENCODING_SLACK)
}

impl Encodings {
    /// Checks the encodings against the manifest's files (path → entry)
    /// and its number of entries.
    pub fn validate(
        &self,
        files: &HashMap<&str, &Entry>,
        entries: usize,
        limits: EncodingLimits,
    ) -> Result<(), EncodingError> {
        if let Some(car) = &self.directories {
            let bad = |what: String| EncodingError::BadDirectoryCar(what);
            if !valid_cid_v1(&car.cid) {
                return Err(bad("invalid CID".into()));
            }
            let limit = (entries as u64)
                .saturating_mul(DIRECTORY_CAR_PER_ENTRY)
                .saturating_add(DIRECTORY_CAR_SLACK);
            if car.size == 0 || car.size > limit {
                return Err(bad(format!(
                    "{} bytes for {entries} entries (at most {limit})",
                    car.size
                )));
            }
        }
        if self.codec != CODEC_ZSTD {
            return Err(EncodingError::Codec(self.codec.clone()));
        }
        if !(MIN_WINDOW_LOG..=limits.max_window_log.min(MAX_WINDOW_LOG)).contains(&self.window_log)
        {
            return Err(EncodingError::WindowLog(
                self.window_log,
                limits.max_window_log,
            ));
        }
        let too_many = |what, count, limit| EncodingError::TooMany { what, count, limit };
        if self.pack.len() > limits.max_pieces {
            return Err(too_many("pack pieces", self.pack.len(), limits.max_pieces));
        }
        let slices: usize = self.pack.iter().map(|p| p.slices.len()).sum();
        if slices > limits.max_slices {
            return Err(too_many("pack slices", slices, limits.max_slices));
        }
        if self.deltas.len() > limits.max_deltas {
            return Err(too_many("deltas", self.deltas.len(), limits.max_deltas));
        }
        self.validate_pack(files, limits)?;
        self.validate_deltas(files, limits)
    }

    /// Every slice lies within a file of the manifest; each file the pack
    /// covers is covered whole, in order, exactly once; pieces are bounded
    /// in output and in size relative to their output.
    fn validate_pack(
        &self,
        files: &HashMap<&str, &Entry>,
        limits: EncodingLimits,
    ) -> Result<(), EncodingError> {
        // Next expected offset of each file the pack has started.
        let mut next: HashMap<&str, u64> = HashMap::new();
        for (index, piece) in self.pack.iter().enumerate() {
            let bad = |what: &str| EncodingError::BadPiece {
                index,
                what: what.into(),
            };
            if !valid_cid_v1(&piece.cid) {
                return Err(bad("invalid CID"));
            }
            if piece.slices.is_empty() {
                return Err(bad("no slices"));
            }
            let mut output: u64 = 0;
            for slice in &piece.slices {
                let Some(file) = files.get(slice.path.as_str()) else {
                    return Err(bad(&format!(
                        "{:?} is not a file of the manifest",
                        slice.path
                    )));
                };
                if slice.length == 0 {
                    return Err(bad(&format!("empty slice of {:?}", slice.path)));
                }
                match slice.offset.checked_add(slice.length) {
                    Some(end) if end <= file.size => {}
                    _ => return Err(bad(&format!("slice beyond the end of {:?}", slice.path))),
                }
                let expected = next.entry(file.path.as_str()).or_insert(0);
                if *expected != slice.offset {
                    return Err(EncodingError::PartialCoverage {
                        path: slice.path.clone(),
                    });
                }
                *expected += slice.length;
                output = output
                    .checked_add(slice.length)
                    .filter(|o| *o <= limits.max_piece_output)
                    .ok_or_else(|| {
                        bad(&format!(
                            "decodes to more than {} bytes",
                            limits.max_piece_output
                        ))
                    })?;
            }
            if !within_ratio(piece.size, output, limits.max_ratio) {
                return Err(bad(&format!(
                    "{} bytes to produce {output}: over {} times",
                    piece.size, limits.max_ratio
                )));
            }
        }
        for (path, covered) in next {
            if files.get(path).is_none_or(|f| f.size != covered) {
                return Err(EncodingError::PartialCoverage { path: path.into() });
            }
        }
        Ok(())
    }

    /// Every delta produces a file of the manifest from a named base, within
    /// the size bounds; at most one delta per file and base release.
    fn validate_deltas(
        &self,
        files: &HashMap<&str, &Entry>,
        limits: EncodingLimits,
    ) -> Result<(), EncodingError> {
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        for (index, delta) in self.deltas.iter().enumerate() {
            let bad = |what: &str| EncodingError::BadDelta {
                index,
                path: delta.path.clone(),
                what: what.into(),
            };
            let Some(file) = files.get(delta.path.as_str()) else {
                return Err(bad("not a file of the manifest"));
            };
            for (name, cid) in [
                ("cid", &delta.cid),
                ("base_release", &delta.base_release),
                ("base_cid", &delta.base_cid),
            ] {
                if !valid_cid_v1(cid) {
                    return Err(bad(&format!("invalid {name}")));
                }
            }
            if !crate::release::safe_relative_path(&delta.base_path) {
                return Err(bad("unsafe base_path"));
            }
            if delta.base_cid == file.cid {
                return Err(bad("the base is the file itself"));
            }
            if file.size > limits.max_delta_file || delta.base_size > limits.max_delta_file {
                return Err(bad(&format!(
                    "file or base over {} bytes",
                    limits.max_delta_file
                )));
            }
            if !within_ratio(delta.size, file.size, limits.max_ratio) {
                return Err(bad(&format!(
                    "{} bytes to produce {}: over {} times",
                    delta.size, file.size, limits.max_ratio
                )));
            }
            if !seen.insert((delta.path.as_str(), delta.base_release.as_str())) {
                return Err(bad("a second delta from the same release"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::EntryKind;

    const CID: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    const OTHER: &str = "bafkreiaxnnnb7qz2focittuqq3ya25q7rcv3bqynnczfzako47346wosmu";

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o644,
            size,
            target: None,
            cid: CID.into(),
        }
    }

    fn slice(path: &str, offset: u64, length: u64) -> Slice {
        Slice {
            path: path.into(),
            offset,
            length,
        }
    }

    fn piece(size: u64, slices: Vec<Slice>) -> PackPiece {
        PackPiece {
            cid: OTHER.into(),
            size,
            slices,
        }
    }

    fn delta(path: &str, size: u64) -> Delta {
        Delta {
            path: path.into(),
            base_release: OTHER.into(),
            base_path: path.into(),
            base_cid: OTHER.into(),
            base_size: 100,
            cid: OTHER.into(),
            size,
        }
    }

    fn check(encodings: &Encodings) -> Result<(), EncodingError> {
        let (a, b) = (file("a", 100), file("b", 50));
        let files: HashMap<&str, &Entry> = [("a", &a), ("b", &b)].into_iter().collect();
        encodings.validate(
            &files,
            3,
            EncodingLimits {
                max_piece_output: 120,
                max_delta_file: 1000,
                ..EncodingLimits::default()
            },
        )
    }

    fn encodings(pack: Vec<PackPiece>, deltas: Vec<Delta>) -> Encodings {
        Encodings {
            codec: CODEC_ZSTD.into(),
            window_log: 20,
            pack,
            deltas,
            directories: None,
        }
    }

    #[test]
    fn a_directory_car_is_bounded_by_the_manifests_entries() {
        let car = |cid: &str, size| {
            let mut e = encodings(Vec::new(), Vec::new());
            e.directories = Some(DirectoryCar {
                cid: cid.into(),
                size,
            });
            e
        };
        // 3 entries (`check`): 3 KiB and the slack.
        let limit = 3 * DIRECTORY_CAR_PER_ENTRY + DIRECTORY_CAR_SLACK;
        assert_eq!(check(&car(OTHER, limit)), Ok(()));
        assert!(matches!(
            check(&car(OTHER, limit + 1)),
            Err(EncodingError::BadDirectoryCar(_))
        ));
        assert!(matches!(
            check(&car(OTHER, 0)),
            Err(EncodingError::BadDirectoryCar(_))
        ));
        assert!(matches!(
            check(&car("QmNotAV1Cid", 100)),
            Err(EncodingError::BadDirectoryCar(_))
        ));
    }

    #[test]
    fn a_pack_covering_files_whole_and_in_order_passes() {
        let e = encodings(
            vec![
                piece(30, vec![slice("b", 0, 50), slice("a", 0, 60)]),
                piece(20, vec![slice("a", 60, 40)]),
            ],
            vec![delta("a", 10)],
        );
        check(&e).unwrap();
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Encodings>(&text).unwrap(), e);
    }

    #[test]
    fn a_pack_must_cover_each_file_whole_once_in_order() {
        for pack in [
            vec![piece(10, vec![slice("a", 0, 60)])],
            vec![piece(10, vec![slice("a", 40, 60)])],
            vec![piece(10, vec![slice("a", 60, 40), slice("a", 0, 60)])],
            vec![
                piece(10, vec![slice("b", 0, 50)]),
                piece(10, vec![slice("b", 0, 50)]),
            ],
        ] {
            assert!(
                matches!(
                    check(&encodings(pack.clone(), vec![])),
                    Err(EncodingError::PartialCoverage { .. })
                ),
                "{pack:?}"
            );
        }
    }

    #[test]
    fn slices_beyond_files_or_of_other_paths_are_refused() {
        for pack in [
            vec![piece(10, vec![slice("a", 0, 101)])],
            vec![piece(10, vec![slice("a", u64::MAX, 2)])],
            vec![piece(10, vec![slice("a", 0, 0)])],
            vec![piece(10, vec![slice("../etc/passwd", 0, 1)])],
            vec![piece(10, vec![])],
        ] {
            assert!(
                matches!(
                    check(&encodings(pack.clone(), vec![])),
                    Err(EncodingError::BadPiece { .. })
                ),
                "{pack:?}"
            );
        }
    }

    #[test]
    fn a_piece_is_bounded_in_output_and_size() {
        // 150 bytes of output, over the 120 allowed.
        let e = encodings(
            vec![piece(10, vec![slice("a", 0, 100), slice("b", 0, 50)])],
            vec![],
        );
        assert!(matches!(check(&e), Err(EncodingError::BadPiece { .. })));
        // 2 × 50 + 1024 bytes is the most a piece of 50 bytes may weigh.
        let e = encodings(vec![piece(1124, vec![slice("b", 0, 50)])], vec![]);
        check(&e).unwrap();
        let e = encodings(vec![piece(1125, vec![slice("b", 0, 50)])], vec![]);
        assert!(matches!(check(&e), Err(EncodingError::BadPiece { .. })));
    }

    #[test]
    fn deltas_are_bounded_and_name_files() {
        let refused = |d: Delta| {
            assert!(
                matches!(
                    check(&encodings(vec![], vec![d.clone()])),
                    Err(EncodingError::BadDelta { .. })
                ),
                "{d:?}"
            )
        };
        refused(delta("missing", 10));
        refused(delta("a", 1225));
        let mut d = delta("a", 10);
        d.base_cid = CID.into();
        refused(d);
        let mut d = delta("a", 10);
        d.base_size = 1001;
        refused(d);
        let mut d = delta("a", 10);
        d.base_path = "../x".into();
        refused(d);
        let mut d = delta("a", 10);
        d.base_release = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into();
        refused(d);
        let e = encodings(vec![], vec![delta("a", 10), delta("a", 10)]);
        assert!(matches!(check(&e), Err(EncodingError::BadDelta { .. })));
    }

    #[test]
    fn codec_and_window_are_checked() {
        let mut e = encodings(vec![], vec![]);
        e.codec = "xz".into();
        assert_eq!(check(&e), Err(EncodingError::Codec("xz".into())));
        for log in [0, 9, 29, 64] {
            let mut e = encodings(vec![], vec![]);
            e.window_log = log;
            assert!(
                matches!(check(&e), Err(EncodingError::WindowLog(..))),
                "{log}"
            );
        }
    }
}
