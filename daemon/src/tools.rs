//! Diagnosis tools run as `flatipfsd <tool>` instead of the daemon.
//!
//! `mount-release` serves one release's `files/` with the same filesystem
//! the installer uses, so the filesystem can be inspected, measured and
//! tested against a real Kubo node on its own.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::fuse::ReleaseFs;
use crate::kubo::Client;
use crate::release::{Manifest, ManifestLimits, MANIFEST_NAME};

/// The largest manifest accepted (a manifest is one JSON line per entry).
const MAX_MANIFEST: u64 = 64 << 20;

/// Fetches and validates the manifest of `release`, mounts its `files/` on
/// `mountpoint`, and serves until SIGTERM or SIGINT; then unmounts.
pub async fn mount_release(
    api: &str,
    read_timeout: Duration,
    release: &str,
    mountpoint: &Path,
) -> Result<()> {
    anyhow::ensure!(
        crate::release::valid_cid_v1(release),
        "{release:?} is not a CIDv1"
    );
    let kubo = Client::new(api, Duration::from_secs(60))?;
    let bytes = kubo
        .cat(&format!("/ipfs/{release}/{MANIFEST_NAME}"), MAX_MANIFEST)
        .await
        .context("cannot fetch the manifest")?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).context("the manifest cannot be read")?;
    let defaults = crate::config::LimitsConfig::default();
    manifest
        .validate(ManifestLimits {
            max_entries: defaults.max_entries,
            max_file_size: defaults.max_file_size,
        })
        .context("the manifest is refused")?;
    let session = ReleaseFs::new(&manifest, kubo, read_timeout)?.mount(mountpoint)?;
    eprintln!(
        "serving {} {} ({release}) on {}",
        manifest.id,
        manifest.version,
        mountpoint.display()
    );
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tokio::task::spawn_blocking(move || session.umount_and_join())
        .await?
        .context("cannot unmount")?;
    Ok(())
}
