//! A release's sandbox permissions: its `metadata` fetched (bounded),
//! checked against its manifest, and compared with the installed release's
//! before an update is allowed to go ahead.
//!
//! The parsing, the checks and the comparison are `flatipfs_format::metadata`
//! (pure); this module reads the bytes — from Kubo by the manifest's CID for
//! a release not yet deployed, from the deploy directory for one that is —
//! and turns the answers into [`InstallError`]s. It runs before any deploy
//! work (`install::install`, `update::update`).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use flatipfs_format::metadata::{self, Metadata, MetadataError, PermissionChange, Permissions};
use tracing::warn;

use crate::install::InstallError;
use crate::kubo::{Client, KuboError};
use crate::manager::Manager;
use crate::release::{EntryKind, Kind, Manifest};
use crate::source::SourceError;
use crate::store::{InstalledApp, Phase};
use tokio::process::Command;

fn invalid(manifest: &Manifest, source: MetadataError) -> InstallError {
    InstallError::Metadata {
        what: format!("the metadata of {} {}", manifest.id, manifest.version),
        source,
    }
}

/// Fetches the `metadata` of the release `manifest` describes from Kubo
/// (by the CID its manifest gives), refusing anything over `limit`
/// (`limits.max_metadata_size`, never above [`metadata::MAX_SIZE`]) before
/// reading it, and reading no more than its manifest says.
pub async fn fetch(
    kubo: &Client,
    manifest: &Manifest,
    timeout: Duration,
    limit: u64,
) -> Result<Vec<u8>, InstallError> {
    let entry = manifest
        .entries
        .iter()
        .find(|e| e.path == "metadata" && e.kind == EntryKind::File)
        .ok_or_else(|| {
            InstallError::Source(SourceError::Invalid {
                what: format!("release of {} {}", manifest.id, manifest.version),
                reason: "it has no metadata file".into(),
            })
        })?;
    let limit = limit.min(metadata::MAX_SIZE as u64);
    if entry.size > limit {
        return Err(InstallError::Source(SourceError::Invalid {
            what: format!("the metadata of {} {}", manifest.id, manifest.version),
            reason: format!(
                "it is {} bytes, over the limit of {limit} bytes (limits.max_metadata_size)",
                entry.size
            ),
        }));
    }
    let path = format!("/ipfs/{}", entry.cid);
    let read = kubo.cat_bounded(&path, entry.size);
    let data = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| KuboError::Stalled {
            what: format!("fetching the metadata of {}", manifest.id),
            after: timeout,
        })??;
    if data.len() as u64 != entry.size {
        return Err(InstallError::Mismatch(format!(
            "the metadata of {} is {} bytes, its manifest says {}",
            manifest.id,
            data.len(),
            entry.size
        )));
    }
    Ok(data)
}

/// Parses `bytes` as the metadata of `manifest`'s release and checks that
/// it is: `name=` the manifest's id, `runtime=` the manifest's runtime.
pub fn check(manifest: &Manifest, bytes: &[u8]) -> Result<Metadata, InstallError> {
    let parsed = metadata::parse(bytes).map_err(|e| invalid(manifest, e))?;
    parsed.check(manifest).map_err(|e| invalid(manifest, e))?;
    Ok(parsed)
}

/// Fetches and checks the metadata of a release not deployed yet.
pub async fn fetch_checked(
    manager: &Manager,
    kubo: &Client,
    manifest: &Manifest,
) -> Result<Metadata, InstallError> {
    let config = manager.config();
    let bytes = fetch(
        kubo,
        manifest,
        config.fetch.document_timeout,
        config.limits.max_metadata_size,
    )
    .await?;
    check(manifest, &bytes)
}

/// Reads the `metadata` of a deployed release of `record` from its deploy
/// directory (not following a symlink, bounded).
pub fn read_deployed(
    manager: &Manager,
    record: &InstalledApp,
    release: &str,
) -> Result<Vec<u8>, InstallError> {
    let path = manager
        .config()
        .installation()
        .deploy_dir_of(
            record.kind,
            &record.id,
            &record.arch,
            &record.branch,
            release,
        )
        .join("metadata");
    let internal =
        |e: std::io::Error| InstallError::Internal(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(internal)?;
    let mut bytes = Vec::new();
    file.take(metadata::MAX_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(internal)?;
    Ok(bytes)
}

/// What the release `record` runs now grants. An installed metadata that
/// does not parse (deployed before these checks existed) counts as granting
/// nothing, so that everything a new release grants is shown.
pub fn installed(manager: &Manager, record: &InstalledApp) -> Result<Permissions, InstallError> {
    let bytes = read_deployed(manager, record, &record.current)?;
    match metadata::parse(&bytes) {
        Ok(m) => Ok(m.permissions),
        Err(e) => {
            warn!(app = %record.id, "the installed metadata does not parse ({e}); comparing with no permissions");
            Ok(Permissions::default())
        }
    }
}

/// What the runtime `runtime` (`ID/ARCH/BRANCH`) grants the apps that run
/// on it, read from an installation that has it: this daemon's (its deploy
/// directory) or another one Flatpak knows (`flatpak info
/// --show-metadata`). `None`: no installation has it.
pub async fn runtime_permissions(
    manager: &Manager,
    runtime: &str,
) -> Result<Option<Permissions>, InstallError> {
    let state = manager.store().load()?;
    if let Some(record) = state
        .apps
        .values()
        .find(|a| a.kind == Kind::Runtime && a.phase == Phase::Ready && a.triple() == runtime)
    {
        return installed(manager, record).map(Some);
    }
    let config = manager.config();
    let show = Command::new("flatpak")
        .args(["info", "--show-metadata", &format!("runtime/{runtime}")])
        .env(
            "FLATPAK_CONFIG_DIR",
            &config.installation.flatpak_config_dir,
        )
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(FLATPAK_TIMEOUT, show)
        .await
        .map_err(|_| InstallError::Internal(format!("`flatpak info {runtime}` timed out")))?
        .map_err(crate::installation::InstallationError::Spawn)?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(Some(match metadata::parse(&output.stdout) {
        Ok(m) => m.permissions,
        Err(e) => {
            warn!(%runtime, "its metadata does not parse ({e}); comparing with no permissions");
            Permissions::default()
        }
    }))
}

/// How long `flatpak info` may take.
const FLATPAK_TIMEOUT: Duration = Duration::from_secs(30);

/// For people: one line per change.
pub fn describe(changes: &[PermissionChange]) -> Vec<String> {
    changes.iter().map(|c| c.description.clone()).collect()
}
