//! Diagnosis tools run as `flatipfsd <tool>` instead of the daemon.
//!
//! `mount-release` serves one release's `files/` with the same filesystem
//! the installer uses, so the filesystem can be inspected, measured and
//! tested against a real Kubo node on its own.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::fuse::Pool;
use crate::installation::Installation;
use crate::kubo::Client;
use crate::release::{Manifest, ManifestLimits, MANIFEST_NAME};

/// Where `mount-release` serves a release.
pub enum Target {
    /// Just `files/`, on this directory.
    Mountpoint(std::path::PathBuf),
    /// As the active deploy of its ref in this Flatpak installation.
    Installation(Installation),
}

/// The largest manifest accepted (a manifest is one JSON line per entry).
const MAX_MANIFEST: u64 = 64 << 20;

/// Fetches and validates the manifest of `release`, checks it against the
/// release's `deploy/` tree (`verify::release_tree`), mounts its `files/`
/// on `mountpoint`, and serves until SIGTERM or SIGINT; then unmounts.
pub async fn mount_release(
    api: &str,
    read_timeout: Duration,
    release: &str,
    target: Target,
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
    manifest
        .validate(ManifestLimits::default())
        .context("the manifest is refused")?;
    // The manifest must describe the release's own deploy/ tree, as for an
    // install: what the mount serves is bound to the release root.
    crate::verify::release_tree(
        &kubo,
        release,
        &manifest,
        Duration::from_secs(60),
        &Default::default(),
    )
    .await
    .context("the release is refused")?;
    let (mountpoint, installation) = match target {
        Target::Mountpoint(path) => (path, None),
        Target::Installation(installation) => {
            installation.register().await?;
            let local = crate::local_files::local_files(
                &kubo,
                &manifest,
                (&crate::config::LimitsConfig::default()).into(),
                Duration::from_secs(60),
            )
            .await?;
            let deploy = installation.write_deploy(&manifest, release, &local.files)?;
            (deploy.join("files"), Some(installation))
        }
    };
    // The daemon's FUSE pool, on a private directory of its own, with this
    // one release bound on the mount point.
    let private = tempfile::Builder::new()
        .prefix("flatipfs-mount-release-")
        .tempdir()?;
    let pool = Pool::start(&private.path().join("releases"), kubo, read_timeout, None)?;
    pool.attach(&manifest, &mountpoint)?;
    if let Some(installation) = &installation {
        installation.activate(&manifest, release)?;
    }
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
    nix::mount::umount2(&mountpoint, nix::mount::MntFlags::MNT_DETACH).context("cannot unmount")?;
    pool.stop();
    Ok(())
}
