//! The daemon's configuration file (`/etc/flatipfs/flatipfsd.toml`).
//!
//! Owns the schema, its defaults and the loading rules: an unknown key, a
//! value of the wrong type or a syntax error is an error naming the file, the
//! line and the key; a missing file at the default path means "all defaults".
//! `docs/config.md` documents every key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the daemon looks for its configuration unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/flatipfs/flatipfsd.toml";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the daemon keeps its state (the embedded Kubo repo among it).
    pub state_directory: PathBuf,
    /// `tracing` filter directives, e.g. `info` or `flatipfsd=debug`.
    /// `RUST_LOG` overrides it.
    pub log_level: String,
    /// How to reach Kubo.
    pub kubo: KuboConfig,
    /// Limits on what is published or installed.
    pub limits: LimitsConfig,
    /// Jobs.
    pub jobs: JobsConfig,
    /// The Flatpak installation apps are laid out in.
    pub installation: InstallationConfig,
    /// Fetching releases from the network.
    pub fetch: FetchConfig,
    /// Automatic updates.
    pub updates: UpdatesConfig,
    /// Releases kept on this machine.
    pub retention: RetentionConfig,
    /// The encodings made when publishing.
    pub publish: PublishConfig,
    /// The IPNS records of the remotes this daemon publishes.
    pub publishing: PublishingConfig,
    /// Remotes this daemon mirrors.
    pub mirror: MirrorConfig,
}

/// The `[mirror]` table: how the remotes this daemon mirrors are followed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorConfig {
    /// Time between two syncs of every mirrored remote.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Past releases of each app kept besides the current one (a mirror
    /// added with its own `--history` keeps that many instead).
    pub history: usize,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            interval: Duration::from_secs(10 * 60),
            history: 1,
        }
    }
}

/// The `[publish]` table: the encodings a publication makes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Make a compressed pack of each release.
    pub pack: bool,
    /// Make deltas from earlier releases.
    pub deltas: bool,
    /// From how many earlier releases (newest first).
    pub delta_releases: usize,
    /// zstd level, 1 to 22.
    pub level: i32,
    /// log2 of the largest window a frame may use (10 to 27).
    pub window_log: u32,
    /// Bytes a pack piece decodes to (64 KiB to 64 MiB).
    pub piece_size: u64,
}

impl Default for PublishConfig {
    fn default() -> Self {
        let d = crate::encode::EncodeOptions::default();
        PublishConfig {
            pack: d.pack,
            deltas: d.deltas,
            delta_releases: d.delta_releases,
            level: d.level,
            window_log: d.window_log,
            piece_size: d.piece_size,
        }
    }
}

impl PublishConfig {
    /// The options `encode::make` takes, clamped to what clients accept.
    pub fn encode_options(&self) -> crate::encode::EncodeOptions {
        use flatipfs_format::encodings::{DEFAULT_MAX_WINDOW_LOG, MIN_WINDOW_LOG};
        crate::encode::EncodeOptions {
            pack: self.pack,
            deltas: self.deltas,
            delta_releases: self.delta_releases.min(crate::index::HISTORY),
            level: self.level.clamp(1, 22),
            window_log: self
                .window_log
                .clamp(MIN_WINDOW_LOG, DEFAULT_MAX_WINDOW_LOG),
            piece_size: self.piece_size.clamp(64 << 10, 64 << 20),
        }
    }
}

/// The `[publishing]` table: how the store index records of the remotes
/// this daemon publishes are kept alive.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishingConfig {
    /// Each remote's record is signed and published again this often.
    #[serde(with = "humantime_serde")]
    pub republish_interval: Duration,
    /// How long a record stays valid (its end of life) by default.
    #[serde(with = "humantime_serde")]
    pub record_lifetime: Duration,
    /// How long resolvers may cache a record by default.
    #[serde(with = "humantime_serde")]
    pub record_ttl: Duration,
    /// Per remote (by name): `record_lifetime`, `record_ttl`.
    pub remote: std::collections::BTreeMap<String, RemoteRecordConfig>,
}

/// `[publishing.remote.NAME]`: one remote's record settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteRecordConfig {
    #[serde(with = "humantime_serde")]
    pub record_lifetime: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub record_ttl: Option<Duration>,
}

impl Default for PublishingConfig {
    fn default() -> Self {
        PublishingConfig {
            republish_interval: Duration::from_secs(4 * 3600),
            record_lifetime: Duration::from_secs(48 * 3600),
            record_ttl: Duration::from_secs(60),
            remote: Default::default(),
        }
    }
}

impl PublishingConfig {
    /// `(lifetime, ttl)` of remote `name`'s record.
    pub fn record(&self, name: &str) -> (Duration, Duration) {
        let own = self.remote.get(name);
        (
            own.and_then(|r| r.record_lifetime)
                .unwrap_or(self.record_lifetime),
            own.and_then(|r| r.record_ttl).unwrap_or(self.record_ttl),
        )
    }
}

/// The `[updates]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdatesConfig {
    /// What the scheduler does: `none`, `check`, `download` or `apply`.
    pub policy: crate::updates::Policy,
    /// Time between two checks.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Up to this much is added at random to every wait.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
}

impl Default for UpdatesConfig {
    fn default() -> Self {
        UpdatesConfig {
            policy: crate::updates::Policy::Apply,
            interval: Duration::from_secs(6 * 3600),
            jitter: Duration::from_secs(30 * 60),
        }
    }
}

/// The `[retention]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Earlier releases of each app kept (pinned, mounted, ready for an
    /// offline rollback) besides the current one.
    pub keep_previous: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { keep_previous: 1 }
    }
}

/// The `[installation]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstallationConfig {
    /// The installation's id in `installations.d` (`flatpak --installation=ID`).
    pub id: String,
    /// Where it lives; unset: `<state_directory>/installation`.
    pub path: Option<PathBuf>,
    /// Flatpak's configuration directory, whose `installations.d` registers it.
    pub flatpak_config_dir: PathBuf,
}

impl Default for InstallationConfig {
    fn default() -> Self {
        InstallationConfig {
            id: "flatipfs".into(),
            path: None,
            flatpak_config_dir: PathBuf::from("/etc/flatpak"),
        }
    }
}

/// The `[fetch]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// A read through a mount that Kubo cannot serve in this time fails with EIO.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Longest wait for a store index name to resolve.
    #[serde(with = "humantime_serde")]
    pub resolve_timeout: Duration,
    /// Longest wait for a manifest or a store index document.
    #[serde(with = "humantime_serde")]
    pub document_timeout: Duration,
    /// A background fetch without progress for this long is cancelled and retried.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// First pause before a failed fetch is retried; doubled each time.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
    /// Longest pause between retries.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Startup-set ranges fetched at once.
    pub prefetch_concurrency: usize,
    /// Keep each fully fetched file once as a local file that reads pass
    /// through to and the embedded Kubo node serves its blocks from
    /// (`local_store`); off with an external Kubo API.
    pub local_files: bool,
    /// Use a release's encodings (deltas, pack) before plain blocks.
    pub encodings: bool,
    /// What one plain block costs beyond its bytes, in bytes of a large
    /// transfer: a pack piece is fetched when its size is below the plain
    /// bytes it replaces plus this per block (`decode`).
    pub plain_block_cost: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            read_timeout: Duration::from_secs(30),
            resolve_timeout: Duration::from_secs(60),
            document_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(120),
            retry_delay: Duration::from_secs(5),
            retry_max_delay: Duration::from_secs(300),
            prefetch_concurrency: 64,
            local_files: true,
            encodings: true,
            plain_block_cost: 64 << 10,
        }
    }
}

/// The `[limits]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest single file of a release, in bytes.
    pub max_file_size: u64,
    /// Most entries (files, directories, symlinks) of a release.
    pub max_entries: usize,
    /// Largest `metadata` file, in bytes.
    pub max_metadata_size: u64,
    /// Largest single file under `export/`, in bytes; a larger one is
    /// refused (not exported) without being read.
    pub max_export_file_size: u64,
    /// Most bytes of all exported files of a release together.
    pub max_exports_size: u64,
    /// Most files a release may export.
    pub max_export_files: usize,
    /// Most ranges of a release's startup set.
    pub max_startup_ranges: usize,
    /// Most bytes a release's startup set covers, summed over its ranges.
    pub max_startup_bytes: u64,
    /// log2 of the largest zstd window a pack piece or delta may ask for.
    pub max_window_log: u32,
    /// A pack piece or delta may weigh at most this many times the bytes it
    /// produces (plus 1 KiB).
    pub max_encoding_ratio: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_file_size: crate::release::DEFAULT_MAX_FILE_SIZE,
            max_entries: crate::release::DEFAULT_MAX_ENTRIES,
            max_metadata_size: 256 << 10,
            max_export_file_size: 4 << 20,
            max_exports_size: 32 << 20,
            max_export_files: 1000,
            max_startup_ranges: crate::release::DEFAULT_MAX_STARTUP_RANGES,
            max_startup_bytes: crate::release::DEFAULT_MAX_STARTUP_BYTES,
            max_window_log: flatipfs_format::encodings::DEFAULT_MAX_WINDOW_LOG,
            max_encoding_ratio: 2,
        }
    }
}

impl LimitsConfig {
    /// The limits a release manifest is validated against.
    pub fn manifest(&self) -> crate::release::ManifestLimits {
        crate::release::ManifestLimits {
            max_entries: self.max_entries,
            max_file_size: self.max_file_size,
            max_startup_ranges: self.max_startup_ranges,
            max_startup_bytes: self.max_startup_bytes,
        }
    }
}

/// The `[jobs]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// How long a finished job stays readable on the bus.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            grace_period: Duration::from_secs(60),
        }
    }
}

/// The `[kubo]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KuboConfig {
    /// RPC API of an existing Kubo node (`/ip4/127.0.0.1/tcp/5001` or
    /// `http://127.0.0.1:5001`). Unset: the daemon runs its own node.
    pub api: Option<String>,
    /// The `ipfs` binary for the embedded node.
    pub binary: PathBuf,
    /// The unprivileged system user the embedded node runs as (it owns the
    /// node's repository and API socket).
    pub user: String,
    /// Profiles passed to `ipfs init` when the embedded node's repo is created.
    pub init_profiles: Vec<String>,
    /// How often the node's status is polled.
    #[serde(with = "humantime_serde")]
    pub status_interval: Duration,
    /// Deadline of a single short RPC call (version, peers).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Pause before the embedded node is restarted after it exited.
    #[serde(with = "humantime_serde")]
    pub restart_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_directory: PathBuf::from("/var/lib/flatipfs"),
            log_level: "info".into(),
            kubo: KuboConfig::default(),
            limits: LimitsConfig::default(),
            jobs: JobsConfig::default(),
            installation: InstallationConfig::default(),
            fetch: FetchConfig::default(),
            updates: UpdatesConfig::default(),
            retention: RetentionConfig::default(),
            publish: PublishConfig::default(),
            publishing: PublishingConfig::default(),
            mirror: MirrorConfig::default(),
        }
    }
}

impl Default for KuboConfig {
    fn default() -> Self {
        KuboConfig {
            api: None,
            binary: PathBuf::from("ipfs"),
            user: "flatipfs-kubo".into(),
            init_profiles: Vec::new(),
            status_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            restart_delay: Duration::from_secs(2),
        }
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists (or was asked for) but cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}:{line}: {what}{key}", key = key.as_deref().map(|k| format!(" (key `{k}`)")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: Option<String>,
        what: String,
    },
    /// The values parse but cannot work together.
    #[error("{path}: {what}")]
    Inconsistent { path: PathBuf, what: String },
}

impl Config {
    /// Loads `path`. A missing file is only accepted when `missing_ok`
    /// (the default path on a fresh install); then all defaults apply.
    pub fn load(path: &Path, missing_ok: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default())
            }
            Err(source) => {
                return Err(ConfigError::Unreadable {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::parse(path, &text)
    }

    /// Parses the text of a configuration file named `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| invalid(path, text, &e))?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let inconsistent = |what: &str| ConfigError::Inconsistent {
            path: path.to_owned(),
            what: what.to_string(),
        };
        crate::logging::valid_filter(&self.log_level).map_err(|e| inconsistent(&e))?;
        if !self.state_directory.is_absolute() {
            return Err(inconsistent("state_directory must be an absolute path"));
        }
        for (name, value) in [
            ("kubo.status_interval", self.kubo.status_interval),
            ("kubo.request_timeout", self.kubo.request_timeout),
            ("fetch.read_timeout", self.fetch.read_timeout),
            ("fetch.resolve_timeout", self.fetch.resolve_timeout),
            ("fetch.document_timeout", self.fetch.document_timeout),
            ("fetch.stall_timeout", self.fetch.stall_timeout),
            ("fetch.retry_delay", self.fetch.retry_delay),
            ("updates.interval", self.updates.interval),
            (
                "publishing.republish_interval",
                self.publishing.republish_interval,
            ),
            ("publishing.record_ttl", self.publishing.record_ttl),
            ("mirror.interval", self.mirror.interval),
        ] {
            if value.is_zero() {
                return Err(inconsistent(&format!("{name} must be longer than 0s")));
            }
        }
        if self.kubo.api.is_none() {
            let socket = self.embedded_kubo_socket();
            let len = socket.as_os_str().len();
            if len > crate::kubo::MAX_SOCKET_PATH {
                return Err(inconsistent(&format!(
                    "state_directory is too long: the embedded Kubo node's API socket {} would be {len} bytes, the kernel takes at most {}",
                    socket.display(),
                    crate::kubo::MAX_SOCKET_PATH
                )));
            }
        }
        if self.mirror.history > crate::mirror::MAX_HISTORY {
            return Err(inconsistent(&format!(
                "mirror.history must be at most {}",
                crate::mirror::MAX_HISTORY
            )));
        }
        if self.kubo.user.is_empty() || self.kubo.user == "root" {
            return Err(inconsistent(
                "kubo.user must name an unprivileged system user, not root",
            ));
        }
        let interval = self.publishing.republish_interval;
        for name in std::iter::once("").chain(self.publishing.remote.keys().map(String::as_str)) {
            if !name.is_empty() && !crate::index::valid_remote_name(name) {
                return Err(inconsistent(&format!(
                    "publishing.remote.{name}: invalid remote name"
                )));
            }
            let (lifetime, ttl) = self.publishing.record(name);
            let key = if name.is_empty() {
                "publishing".to_string()
            } else {
                format!("publishing.remote.{name}")
            };
            // Two republications may fail before the record expires.
            if lifetime <= interval * 2 {
                return Err(inconsistent(&format!(
                    "{key}.record_lifetime ({}) must be longer than twice publishing.republish_interval ({})",
                    humantime_serde::re::humantime::format_duration(lifetime),
                    humantime_serde::re::humantime::format_duration(interval)
                )));
            }
            if ttl.is_zero() || ttl > lifetime {
                return Err(inconsistent(&format!(
                    "{key}.record_ttl must be longer than 0s and at most the record's lifetime"
                )));
            }
        }
        if self.fetch.prefetch_concurrency == 0 {
            return Err(inconsistent(
                "fetch.prefetch_concurrency must be at least 1",
            ));
        }
        if !crate::installation::valid_installation_id(&self.installation.id) {
            return Err(inconsistent(
                "installation.id must be 1 to 64 of a-z, A-Z, 0-9, '-', '_'",
            ));
        }
        for (name, path) in [
            ("installation.path", self.installation.path.as_deref()),
            (
                "installation.flatpak_config_dir",
                Some(self.installation.flatpak_config_dir.as_path()),
            ),
        ] {
            if path.is_some_and(|p| !p.is_absolute()) {
                return Err(inconsistent(&format!("{name} must be an absolute path")));
            }
        }
        Ok(())
    }

    /// The installation apps are laid out in.
    pub fn installation(&self) -> crate::installation::Installation {
        crate::installation::Installation {
            id: self.installation.id.clone(),
            path: self
                .installation
                .path
                .clone()
                .unwrap_or_else(|| self.state_directory.join("installation")),
            config_dir: self.installation.flatpak_config_dir.clone(),
        }
    }

    /// The embedded node's repository.
    pub fn embedded_kubo_repo(&self) -> PathBuf {
        self.state_directory.join("kubo")
    }

    /// The directory of the embedded node's API socket: owned by the Kubo
    /// user, mode 0700, so that only that user and root can reach it.
    pub fn embedded_kubo_socket_dir(&self) -> PathBuf {
        self.state_directory.join("kubo-api")
    }

    /// The embedded node's API socket.
    pub fn embedded_kubo_socket(&self) -> PathBuf {
        self.embedded_kubo_socket_dir().join("api.sock")
    }
}

/// Turns a TOML error into one naming the file, the line and the key.
fn invalid(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, key) = match e.span() {
        Some(span) => {
            let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let line_text = text.lines().nth(line_no - 1).unwrap_or_default();
            (line_no, key_on_line(line_text))
        }
        None => (0, None),
    };
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        key,
        what: e.message().trim().to_string(),
    }
}

/// The key a `key = value` line sets, if the line has that shape.
fn key_on_line(line: &str) -> Option<String> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/flatipfs/flatipfsd.toml"), text)
    }

    /// The Debian package's commented `/etc/flatipfs/flatipfsd.toml` parses,
    /// sets only the bundled Kubo binary, and every value it shows commented
    /// out (`#key = value`) is the true default.
    #[test]
    fn the_packaged_default_file_shows_the_defaults() {
        let text = include_str!("../../packaging/debian/flatipfsd.toml");
        let mut expected = Config::default();
        expected.kubo.binary = PathBuf::from("/usr/libexec/flatipfs/ipfs");
        assert_eq!(parse(text).unwrap(), expected);
        let mut uncommented = 0;
        let all: String = text
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => {
                    uncommented += 1;
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        assert!(uncommented >= 25, "{uncommented}");
        assert_eq!(parse(&all).unwrap(), expected);
    }

    /// The package's `installations.d/flatipfs.conf` is what the daemon
    /// writes with the default configuration (so it never rewrites it).
    #[test]
    fn the_packaged_installation_entry_is_the_daemons() {
        assert_eq!(
            Config::default().installation().registration(),
            include_str!("../../packaging/debian/installations.d-flatipfs.conf")
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn durations_and_api_parse() {
        let c =
            parse("[kubo]\napi = \"/ip4/127.0.0.1/tcp/5001\"\nstatus_interval = \"2s\"\n").unwrap();
        assert_eq!(c.kubo.api.as_deref(), Some("/ip4/127.0.0.1/tcp/5001"));
        assert_eq!(c.kubo.status_interval, Duration::from_secs(2));
    }

    #[test]
    fn startup_set_limits_reach_the_manifest_checks() {
        let c = parse("[limits]\nmax_startup_ranges = 100\nmax_startup_bytes = 4096\n").unwrap();
        let limits = c.limits.manifest();
        assert_eq!(limits.max_startup_ranges, 100);
        assert_eq!(limits.max_startup_bytes, 4096);
        assert_eq!(limits.max_entries, LimitsConfig::default().max_entries);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = parse("log_level = \"info\"\n\n[kubo]\napi_adress = \"x\"\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("/etc/flatipfs/flatipfsd.toml:4:"),
            "{text}"
        );
        assert!(text.contains("api_adress"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse("[kubo]\nstatus_interval = 5\n").unwrap_err();
        let text = e.to_string();
        assert!(text.contains(":2:"), "{text}");
        assert!(text.contains("key `status_interval`"), "{text}");
    }

    #[test]
    fn mirror_settings_parse_and_are_bounded() {
        let config = parse("[mirror]\ninterval = \"5m\"\nhistory = 3\n").unwrap();
        assert_eq!(config.mirror.interval, Duration::from_secs(300));
        assert_eq!(config.mirror.history, 3);
        let err = parse("[mirror]\nhistory = 17\n").unwrap_err().to_string();
        assert!(err.contains("mirror.history"), "{err}");
        let err = parse("[mirror]\ninterval = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mirror.interval"), "{err}");
    }

    #[test]
    fn relative_state_directory_is_refused() {
        let e = parse("state_directory = \"var/lib\"\n").unwrap_err();
        assert!(e.to_string().contains("absolute"), "{e}");
    }

    #[test]
    fn embedded_socket_path_must_fit_and_kubo_user_is_not_root() {
        let deep = format!("state_directory = \"/{}\"\n", "d".repeat(100));
        let e = parse(&deep).unwrap_err();
        assert!(e.to_string().contains("API socket"), "{e}");
        // A configured node needs no socket under the state directory.
        parse(&format!(
            "{deep}[kubo]\napi = \"/ip4/127.0.0.1/tcp/5001\"\n"
        ))
        .unwrap();
        let e = parse("[kubo]\nuser = \"root\"\n").unwrap_err();
        assert!(e.to_string().contains("kubo.user"), "{e}");
        assert_eq!(Config::default().kubo.user, "flatipfs-kubo");
    }

    #[test]
    fn missing_file_is_defaults_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.toml");
        assert_eq!(Config::load(&path, true).unwrap(), Config::default());
        let e = Config::load(&path, false).unwrap_err();
        assert!(e.to_string().contains("none.toml"), "{e}");
    }
}
