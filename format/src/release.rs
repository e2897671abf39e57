//! The release format: the manifest and its validation.
//!
//! A release root is a UnixFS directory holding `deploy/` (the app's Flatpak
//! deploy directory: `metadata`, `export/`, `files/`) and `manifest`, a JSON
//! document described here (`docs/release-format.md`). The manifest is
//! authoritative for what a mount shows; [`Manifest::validate`] rejects
//! anything unsafe before it is used.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

pub use crate::encodings::{EncodingError, EncodingLimits, Encodings};

/// The manifest schema of a release without encodings (still written for
/// those, so older clients read them).
pub const SCHEMA: u32 = 1;
/// The manifest schema of a release with encodings (`encodings`); this
/// daemon reads both.
pub const SCHEMA_ENCODINGS: u32 = 2;
/// The name of the manifest in a release root.
pub const MANIFEST_NAME: &str = "manifest";
/// The name of the deploy tree in a release root.
pub const DEPLOY_NAME: &str = "deploy";

/// What a release holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    App,
    Runtime,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Runtime => "runtime",
        }
    }
}

/// The type of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    #[serde(rename = "dir")]
    Directory,
    File,
    Symlink,
}

/// How the content was imported into IPFS; a client re-adding a file with
/// the same profile must get the same CID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportProfile {
    pub kubo_version: String,
    pub chunker: String,
    pub cid_version: u32,
    pub hash: String,
    pub raw_leaves: bool,
    /// Blocks up to this size are inlined into identity CIDs.
    pub inline_limit: u32,
}

/// One entry of `deploy/`, path relative to `deploy/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    pub mode: u32,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub cid: String,
}

/// Totals over `deploy/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Sum of file sizes.
    pub bytes: u64,
    pub files: u64,
    pub entries: u64,
    /// Blocks of the `deploy/` DAG.
    pub blocks: u64,
    /// Bytes of the `deploy/` DAG's blocks.
    pub dag_bytes: u64,
}

/// A byte range an app reads at start-up, in first-access order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartupRange {
    pub path: String,
    pub cid: String,
    pub offset: u64,
    pub length: u64,
}

/// The manifest of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub id: String,
    pub kind: Kind,
    pub arch: String,
    pub branch: String,
    pub version: String,
    /// For apps: the runtime ref (`org.test.Platform/x86_64/master`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Seconds since the Unix epoch.
    pub published: u64,
    pub import: ImportProfile,
    /// CID of `deploy/`.
    pub deploy: String,
    pub entries: Vec<Entry>,
    pub totals: Totals,
    #[serde(default)]
    pub startup_set: Vec<StartupRange>,
    /// Schema 2 only: the pack and deltas (`encodings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encodings: Option<Encodings>,
}

/// Limits a manifest must respect.
#[derive(Debug, Clone, Copy)]
pub struct ManifestLimits {
    pub max_entries: usize,
    pub max_file_size: u64,
    /// Most ranges of a startup set.
    pub max_startup_ranges: usize,
    /// Most bytes a startup set's ranges cover, summed.
    pub max_startup_bytes: u64,
}

/// Default of [`ManifestLimits::max_entries`].
pub const DEFAULT_MAX_ENTRIES: usize = 200_000;
/// Default of [`ManifestLimits::max_file_size`] (4 GiB).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 << 30;
/// Default of [`ManifestLimits::max_startup_ranges`].
pub const DEFAULT_MAX_STARTUP_RANGES: usize = 10_000;
/// Default of [`ManifestLimits::max_startup_bytes`] (1 GiB).
pub const DEFAULT_MAX_STARTUP_BYTES: u64 = 1 << 30;

impl Default for ManifestLimits {
    fn default() -> Self {
        ManifestLimits {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_startup_ranges: DEFAULT_MAX_STARTUP_RANGES,
            max_startup_bytes: DEFAULT_MAX_STARTUP_BYTES,
        }
    }
}

/// Why a manifest is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("unsupported manifest schema {0} (this daemon reads {SCHEMA} and {SCHEMA_ENCODINGS})")]
    Schema(u32),
    #[error("encodings in a schema {0} manifest (only schema {SCHEMA_ENCODINGS} has them)")]
    EncodingsInSchema(u32),
    #[error("encodings: {0}")]
    Encodings(#[from] EncodingError),
    #[error("invalid app id {0:?}")]
    BadId(String),
    #[error("unsafe path {0:?} (absolute, empty, `.`/`..` component or NUL)")]
    UnsafePath(String),
    #[error("duplicate path {0:?}")]
    Duplicate(String),
    #[error("{0:?} has no parent directory in the manifest")]
    Orphan(String),
    #[error("{path:?}: {what}")]
    BadEntry { path: String, what: String },
    #[error("invalid CID {cid:?} for {path:?}: must be a CIDv1")]
    BadCid { path: String, cid: String },
    #[error("{0} entries, over the limit of {1}")]
    TooMany(usize, usize),
    #[error("invalid {field} {value:?}")]
    BadField { field: &'static str, value: String },
    #[error("{path:?} is {size} bytes, over the limit of {limit}")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("startup set range {index} ({path:?}): {what}")]
    BadStartupRange {
        index: usize,
        path: String,
        what: String,
    },
    #[error("the startup set has {0} ranges, over the limit of {1}")]
    TooManyRanges(usize, usize),
    #[error("the startup set covers more than {limit} bytes")]
    StartupTooLarge { limit: u64 },
}

/// Whether `id` is a valid Flatpak application id (`org.example.App`).
pub fn valid_app_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('.').collect();
    id.len() <= 255
        && parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.as_bytes()[0].is_ascii_digit()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Whether `path` is a safe relative path: not empty, not absolute, no
/// empty, `.` or `..` component, no NUL.
pub fn safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Whether `name` can be an arch or a branch: it becomes a directory name.
pub fn valid_ref_part(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether `runtime` is `ID/ARCH/BRANCH`.
pub fn valid_runtime_ref(runtime: &str) -> bool {
    match runtime.split('/').collect::<Vec<_>>()[..] {
        [id, arch, branch] => valid_app_id(id) && valid_ref_part(arch) && valid_ref_part(branch),
        _ => false,
    }
}

/// The latest `published` accepted: 9999-12-31T23:59:59Z, in seconds since
/// the Unix epoch. Anything later is no real date, and would overflow the
/// signed and `SystemTime` conversions readers make of it.
pub const MAX_PUBLISHED: u64 = 253_402_300_799;

/// Whether `published` (seconds since the Unix epoch) is a sane date.
pub fn valid_published(published: u64) -> bool {
    published <= MAX_PUBLISHED
}

/// The mode an entry is served and published with, whatever the manifest
/// or the publisher's disk says: directories 0755, files 0755 when their
/// owner may execute them and 0644 otherwise, symlinks 0777. Never setuid,
/// setgid or sticky, never writable by group or others.
pub fn clamp_mode(kind: EntryKind, mode: u32) -> u32 {
    match kind {
        EntryKind::Directory => 0o755,
        EntryKind::File if mode & 0o100 != 0 => 0o755,
        EntryKind::File => 0o644,
        EntryKind::Symlink => 0o777,
    }
}

/// The longest version string accepted.
pub const MAX_VERSION_LEN: usize = 128;

/// Whether `version` can be shown and stored: 1 to [`MAX_VERSION_LEN`]
/// bytes, no control characters (no terminal escape sequences).
pub fn valid_version(version: &str) -> bool {
    !version.is_empty() && version.len() <= MAX_VERSION_LEN && displays_safely(version)
}

/// Whether `text` holds no control character (C0, DEL, C1: the bytes of
/// terminal escape sequences) and no bidirectional override, which would
/// make what a terminal shows differ from what it holds.
pub fn displays_safely(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
}

/// Whether `cid` parses as a CIDv1.
pub fn valid_cid_v1(cid: &str) -> bool {
    matches!(cid::Cid::try_from(cid), Ok(c) if c.version() == cid::Version::V1)
}

impl Manifest {
    /// Checks everything a client relies on; see the module docs.
    pub fn validate(&self, limits: ManifestLimits) -> Result<(), ManifestError> {
        if self.schema != SCHEMA && self.schema != SCHEMA_ENCODINGS {
            return Err(ManifestError::Schema(self.schema));
        }
        if self.schema == SCHEMA && self.encodings.is_some() {
            return Err(ManifestError::EncodingsInSchema(self.schema));
        }
        if !valid_app_id(&self.id) {
            return Err(ManifestError::BadId(self.id.clone()));
        }
        let field = |field: &'static str, value: &str| ManifestError::BadField {
            field,
            value: value.to_string(),
        };
        for (name, value) in [("arch", &self.arch), ("branch", &self.branch)] {
            if !valid_ref_part(value) {
                return Err(field(name, value));
            }
        }
        if !valid_version(&self.version) {
            return Err(field("version", &self.version));
        }
        if let Some(runtime) = &self.runtime {
            if !valid_runtime_ref(runtime) {
                return Err(field("runtime", runtime));
            }
        }
        if !valid_published(self.published) {
            return Err(field("published", &self.published.to_string()));
        }
        if self.entries.len() > limits.max_entries {
            return Err(ManifestError::TooMany(
                self.entries.len(),
                limits.max_entries,
            ));
        }
        if !valid_cid_v1(&self.deploy) {
            return Err(ManifestError::BadCid {
                path: DEPLOY_NAME.into(),
                cid: self.deploy.clone(),
            });
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut dirs: HashSet<&str> = HashSet::new();
        let mut files: HashMap<&str, &Entry> = HashMap::new();
        for entry in &self.entries {
            let path = entry.path.as_str();
            if !safe_relative_path(path) {
                return Err(ManifestError::UnsafePath(entry.path.clone()));
            }
            if !seen.insert(path) {
                return Err(ManifestError::Duplicate(entry.path.clone()));
            }
            if let Some((parent, _)) = path.rsplit_once('/') {
                if !dirs.contains(parent) {
                    return Err(ManifestError::Orphan(entry.path.clone()));
                }
            }
            if !valid_cid_v1(&entry.cid) {
                return Err(ManifestError::BadCid {
                    path: entry.path.clone(),
                    cid: entry.cid.clone(),
                });
            }
            let bad = |what: &str| ManifestError::BadEntry {
                path: entry.path.clone(),
                what: what.into(),
            };
            if entry.mode > 0o7777 {
                return Err(bad("mode has bits beyond 07777"));
            }
            match entry.kind {
                EntryKind::Directory => {
                    dirs.insert(path);
                }
                EntryKind::File if entry.size > limits.max_file_size => {
                    return Err(ManifestError::TooLarge {
                        path: entry.path.clone(),
                        size: entry.size,
                        limit: limits.max_file_size,
                    });
                }
                EntryKind::File => {
                    files.insert(path, entry);
                }
                EntryKind::Symlink => match &entry.target {
                    Some(t) if !t.is_empty() && !t.contains('\0') => {}
                    _ => return Err(bad("symlink without a valid target")),
                },
            }
            if entry.kind != EntryKind::Symlink && entry.target.is_some() {
                return Err(bad("only symlinks have a target"));
            }
        }
        self.validate_startup_set(&files, limits)?;
        if let Some(encodings) = &self.encodings {
            encodings.validate(&files, self.entries.len(), EncodingLimits::default())?;
        }
        Ok(())
    }

    /// Each range names a file of the manifest by its path and CID and lies
    /// within it; the set is bounded in ranges and in bytes.
    fn validate_startup_set(
        &self,
        files: &HashMap<&str, &Entry>,
        limits: ManifestLimits,
    ) -> Result<(), ManifestError> {
        if self.startup_set.len() > limits.max_startup_ranges {
            return Err(ManifestError::TooManyRanges(
                self.startup_set.len(),
                limits.max_startup_ranges,
            ));
        }
        let mut total: u64 = 0;
        for (index, range) in self.startup_set.iter().enumerate() {
            let bad = |what: &str| ManifestError::BadStartupRange {
                index,
                path: range.path.clone(),
                what: what.into(),
            };
            let Some(file) = files.get(range.path.as_str()) else {
                return Err(bad("not a file of the manifest"));
            };
            if range.cid != file.cid {
                return Err(bad("its CID is not the file's"));
            }
            if range.length == 0 {
                return Err(bad("empty range"));
            }
            match range.offset.checked_add(range.length) {
                Some(end) if end <= file.size => {}
                _ => return Err(bad("beyond the end of the file")),
            }
            total = total
                .checked_add(range.length)
                .filter(|t| *t <= limits.max_startup_bytes)
                .ok_or(ManifestError::StartupTooLarge {
                    limit: limits.max_startup_bytes,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    const LIMITS: ManifestLimits = ManifestLimits {
        max_entries: 100,
        max_file_size: 1000,
        max_startup_ranges: 10,
        max_startup_bytes: 2000,
    };

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: 0o644,
            size: 0,
            target: (kind == EntryKind::Symlink).then(|| "x".into()),
            cid: CID.into(),
        }
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        Manifest {
            schema: SCHEMA,
            id: "org.test.Hello".into(),
            kind: Kind::App,
            arch: "x86_64".into(),
            branch: "master".into(),
            version: "1".into(),
            runtime: Some("org.test.Platform/x86_64/master".into()),
            published: 0,
            import: ImportProfile {
                kubo_version: "0.43.1".into(),
                chunker: "buzhash".into(),
                cid_version: 1,
                hash: "sha2-256".into(),
                raw_leaves: true,
                inline_limit: 32,
            },
            deploy: CID.into(),
            entries,
            totals: Totals::default(),
            startup_set: vec![],
            encodings: None,
        }
    }

    #[test]
    fn a_good_manifest_passes_and_round_trips() {
        let m = manifest(vec![
            entry("files", EntryKind::Directory),
            entry("files/a", EntryKind::File),
            entry("files/l", EntryKind::Symlink),
        ]);
        m.validate(LIMITS).unwrap();
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
    }

    #[test]
    fn schema_2_carries_encodings_and_schema_1_may_not() {
        use crate::encodings::{PackPiece, Slice, CODEC_ZSTD};
        let mut file = entry("files/a", EntryKind::File);
        file.size = 100;
        let mut m = manifest(vec![entry("files", EntryKind::Directory), file]);
        let encodings = Encodings {
            codec: CODEC_ZSTD.into(),
            window_log: 20,
            pack: vec![PackPiece {
                cid: OTHER_CID.into(),
                size: 40,
                slices: vec![Slice {
                    path: "files/a".into(),
                    offset: 0,
                    length: 100,
                }],
            }],
            deltas: vec![],
            directories: None,
        };
        m.encodings = Some(encodings.clone());
        assert_eq!(m.validate(LIMITS), Err(ManifestError::EncodingsInSchema(1)));
        m.schema = SCHEMA_ENCODINGS;
        m.validate(LIMITS).unwrap();
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
        // A schema 1 manifest as written before schema 2 existed still reads.
        let mut old = m.clone();
        old.schema = SCHEMA;
        old.encodings = None;
        let text = serde_json::to_string(&old).unwrap();
        assert!(!text.contains("encodings"));
        serde_json::from_str::<Manifest>(&text)
            .unwrap()
            .validate(LIMITS)
            .unwrap();
        // The encodings are checked with the rest.
        let mut bad = encodings;
        bad.pack[0].slices[0].length = 50;
        m.encodings = Some(bad);
        assert!(matches!(
            m.validate(LIMITS),
            Err(ManifestError::Encodings(
                EncodingError::PartialCoverage { .. }
            ))
        ));
        m.schema = 3;
        assert_eq!(m.validate(LIMITS), Err(ManifestError::Schema(3)));
    }

    #[test]
    fn published_beyond_year_9999_is_refused() {
        let mut m = manifest(vec![]);
        m.published = MAX_PUBLISHED;
        m.validate(LIMITS).unwrap();
        for bad in [MAX_PUBLISHED + 1, 1 << 63, u64::MAX] {
            m.published = bad;
            assert_eq!(
                m.validate(LIMITS),
                Err(ManifestError::BadField {
                    field: "published",
                    value: bad.to_string()
                }),
                "{bad}"
            );
        }
        // What readers do with an accepted value cannot overflow.
        let time = std::time::UNIX_EPOCH
            .checked_add(std::time::Duration::from_secs(MAX_PUBLISHED))
            .unwrap();
        assert!(time > std::time::UNIX_EPOCH);
        assert!(i64::try_from(MAX_PUBLISHED).is_ok());
    }

    #[test]
    fn unsafe_and_duplicate_paths_are_refused() {
        for bad in [
            "/etc/passwd",
            "files/../../x",
            "",
            "files//a",
            "./a",
            "a\0b",
        ] {
            let m = manifest(vec![entry(bad, EntryKind::File)]);
            assert_eq!(
                m.validate(LIMITS),
                Err(ManifestError::UnsafePath(bad.into())),
                "{bad:?}"
            );
        }
        let m = manifest(vec![
            entry("a", EntryKind::File),
            entry("a", EntryKind::File),
        ]);
        assert_eq!(
            m.validate(LIMITS),
            Err(ManifestError::Duplicate("a".into()))
        );
        let m = manifest(vec![entry("nodir/a", EntryKind::File)]);
        assert_eq!(
            m.validate(LIMITS),
            Err(ManifestError::Orphan("nodir/a".into()))
        );
    }

    #[test]
    fn bad_cids_ids_and_sizes_are_refused() {
        let mut e = entry("a", EntryKind::File);
        e.cid = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG".into();
        assert!(matches!(
            manifest(vec![e]).validate(LIMITS),
            Err(ManifestError::BadCid { .. })
        ));
        let mut m = manifest(vec![]);
        m.id = "../evil".into();
        assert!(matches!(m.validate(LIMITS), Err(ManifestError::BadId(_))));
        let mut e = entry("a", EntryKind::File);
        e.size = 5000;
        assert!(matches!(
            manifest(vec![e]).validate(LIMITS),
            Err(ManifestError::TooLarge { .. })
        ));
        let m = manifest(vec![entry("a", EntryKind::File); 101]);
        assert!(matches!(
            m.validate(LIMITS),
            Err(ManifestError::TooMany(101, 100))
        ));
    }

    #[test]
    fn fields_that_become_paths_are_refused_unless_plain() {
        for (arch, branch, runtime) in [
            ("..", "master", None),
            ("x86_64", "../../etc", None),
            ("x86_64", "", None),
            ("x86_64", "master", Some("org.test.Platform/../master")),
            ("x86_64", "master", Some("org.test.Platform")),
        ] {
            let mut m = manifest(vec![entry("files", EntryKind::Directory)]);
            m.arch = arch.into();
            m.branch = branch.into();
            m.runtime = runtime.map(String::from);
            assert!(
                matches!(m.validate(LIMITS), Err(ManifestError::BadField { .. })),
                "{arch} {branch} {runtime:?}"
            );
        }
        let mut m = manifest(vec![entry("files", EntryKind::Directory)]);
        m.version = "1\n2".into();
        assert!(m.validate(LIMITS).is_err());
    }

    #[test]
    fn modes_are_clamped_to_plain_permissions() {
        use EntryKind::*;
        assert_eq!(clamp_mode(File, 0o6777), 0o755);
        assert_eq!(clamp_mode(File, 0o4755), 0o755);
        assert_eq!(clamp_mode(File, 0o2666), 0o644);
        assert_eq!(clamp_mode(File, 0o0646), 0o644);
        assert_eq!(clamp_mode(File, 0o0011), 0o644);
        assert_eq!(clamp_mode(File, 0o0100), 0o755);
        assert_eq!(clamp_mode(Directory, 0o1777), 0o755);
        assert_eq!(clamp_mode(Directory, 0o0700), 0o755);
        assert_eq!(clamp_mode(Symlink, 0o4777), 0o777);
        for kind in [File, Directory] {
            for mode in 0..=0o7777 {
                let clamped = clamp_mode(kind, mode);
                assert_eq!(clamped & 0o7022, 0, "{kind:?} {mode:o} -> {clamped:o}");
            }
        }
    }

    #[test]
    fn app_ids() {
        assert!(valid_app_id("org.test.Hello"));
        assert!(valid_app_id("org.gnome.Text_Editor-2"));
        assert!(!valid_app_id("org.test"));
        assert!(!valid_app_id("org..Hello"));
        assert!(!valid_app_id("org.1test.Hello"));
        assert!(!valid_app_id("org.test.Hello/x"));
    }

    const OTHER_CID: &str = "bafkreiaxnnnb7qz2focittuqq3ya25q7rcv3bqynnczfzako47346wosmu";

    /// A manifest with file `files/a` of 100 bytes and `startup_set`.
    fn with_startup_set(ranges: Vec<StartupRange>) -> Manifest {
        let mut file = entry("files/a", EntryKind::File);
        file.size = 100;
        let mut m = manifest(vec![entry("files", EntryKind::Directory), file]);
        m.startup_set = ranges;
        m
    }

    fn range(path: &str, cid: &str, offset: u64, length: u64) -> StartupRange {
        StartupRange {
            path: path.into(),
            cid: cid.into(),
            offset,
            length,
        }
    }

    fn bad_range(m: &Manifest) -> String {
        match m.validate(LIMITS) {
            Err(ManifestError::BadStartupRange { what, .. }) => what,
            other => panic!("expected a refused range, got {other:?}"),
        }
    }

    #[test]
    fn a_startup_set_within_its_files_passes() {
        let m = with_startup_set(vec![
            range("files/a", CID, 0, 100),
            range("files/a", CID, 99, 1),
        ]);
        m.validate(LIMITS).unwrap();
    }

    #[test]
    fn a_startup_range_must_name_a_file_of_the_manifest() {
        let m = with_startup_set(vec![range("files/missing", CID, 0, 1)]);
        assert_eq!(bad_range(&m), "not a file of the manifest");
        let m = with_startup_set(vec![range("files", CID, 0, 1)]);
        assert_eq!(bad_range(&m), "not a file of the manifest");
        let m = with_startup_set(vec![range("/etc/shadow", CID, 0, 1)]);
        assert_eq!(bad_range(&m), "not a file of the manifest");
    }

    #[test]
    fn a_startup_range_must_carry_its_files_cid() {
        let m = with_startup_set(vec![range("files/a", OTHER_CID, 0, 1)]);
        assert_eq!(bad_range(&m), "its CID is not the file's");
    }

    #[test]
    fn a_startup_range_must_lie_within_its_file() {
        let m = with_startup_set(vec![range("files/a", CID, 0, 101)]);
        assert_eq!(bad_range(&m), "beyond the end of the file");
        let m = with_startup_set(vec![range("files/a", CID, 100, 1)]);
        assert_eq!(bad_range(&m), "beyond the end of the file");
        let m = with_startup_set(vec![range("files/a", CID, u64::MAX, 2)]);
        assert_eq!(bad_range(&m), "beyond the end of the file");
        let m = with_startup_set(vec![range("files/a", CID, 5, 0)]);
        assert_eq!(bad_range(&m), "empty range");
    }

    #[test]
    fn a_startup_set_is_bounded_in_ranges_and_bytes() {
        let m = with_startup_set(vec![range("files/a", CID, 0, 1); 11]);
        assert_eq!(
            m.validate(LIMITS),
            Err(ManifestError::TooManyRanges(11, 10))
        );
        // 10 ranges of 100 bytes: 1000 bytes, within 2000, over 999.
        let m = with_startup_set(vec![range("files/a", CID, 0, 100); 10]);
        let limits = ManifestLimits {
            max_startup_bytes: 999,
            ..LIMITS
        };
        assert_eq!(
            m.validate(limits),
            Err(ManifestError::StartupTooLarge { limit: 999 })
        );
        m.validate(LIMITS).unwrap();
    }
}
