//! The background fetch of an installed release.
//!
//! While an app runs from its lazy mount, this makes the whole release
//! local: first the startup set (`startup`: its blocks, then the kernel's
//! page cache; the rest waits for it only while its ranges keep
//! arriving), then the files the release's encodings can produce
//! (`decode`: deltas, pack), then a recursive `pin/add` with progress for
//! the rest (plain blocks). A fetch whose block count does not grow for
//! `fetch.stall_timeout` is cancelled and retried with exponential backoff;
//! so is any failure, including Kubo being down. It ends when `files/stat
//! --with-local` says every block is present, and the deployment is then
//! recorded as complete.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::apps::LiveApp;
use crate::kubo::KuboError;
use crate::manager::Manager;
use crate::release::Manifest;
use crate::startup::StartupPrefetch;

/// The MFS directory holding an app's releases.
pub fn mfs_app_dir(id: &str) -> String {
    format!("/flatpak-apps/{id}")
}

/// The MFS path of one release (keeps partial content safe from GC).
pub fn mfs_path(id: &str, release: &str) -> String {
    format!("/flatpak-apps/{id}/{release}")
}

/// How the names of the pins the installer makes begin (the publisher's
/// begin with `flatipfs ` and are never touched by the installer).
pub const PIN_PREFIX: &str = "flatipfs-install ";

/// The name of the pin of an installed release.
pub fn pin_name(id: &str, version: &str) -> String {
    format!("{PIN_PREFIX}{id} {version}")
}

/// Bytes of a release fetched and in all, for whoever waits on a fetch.
pub type Progress = watch::Sender<(u64, u64)>;

/// Fetches `release` of `app` until it is complete or `cancel` fires;
/// returns whether it completed. Progress goes to the app (when `release`
/// is its current one) and to `progress`.
pub async fn run(
    manager: Arc<Manager>,
    app: Arc<LiveApp>,
    manifest: Arc<Manifest>,
    release: String,
    cancel: CancellationToken,
    progress: Option<Progress>,
    mut early: Option<StartupPrefetch>,
) -> bool {
    let id = manifest.id.clone();
    let mut delay = manager.config().fetch.retry_delay;
    loop {
        let attempt = attempt(
            &manager,
            &app,
            &manifest,
            &release,
            progress.as_ref(),
            &cancel,
            &mut early,
        );
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = cancel.cancelled() => return false,
        };
        match outcome {
            Ok(()) => break,
            Err(e) => {
                let config = manager.config();
                warn!(app = %id, %release, "background fetch: {e}; retrying in {delay:?}");
                renew_peering(&manager).await;
                if app.snapshot().release == release {
                    app.update(|i| i.status = format!("fetch paused: {e}; retrying in {delay:?}"));
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return false,
                }
                delay = (delay * 2).min(config.fetch.retry_max_delay);
            }
        }
    }
    match crate::install::mark_complete(&manager, &id, &release).await {
        Ok(()) => {
            info!(app = %id, %release, "release fully local");
            if let Some(progress) = &progress {
                progress.send_modify(|(done, total)| *done = *total);
            }
            // Before the app shows `installed`: an install waits for this
            // step before it returns (`LiveApp::wait_settled`).
            if let Some(done) =
                crate::local_store::spawn(manager.clone(), manifest.clone(), release.clone())
            {
                app.settling(&release, done);
            }
            app.update(|i| {
                if i.release == release {
                    i.fetched = i.total;
                    if i.state == "degraded" {
                        i.state = "installed".into();
                    }
                    i.status = "fully fetched".into();
                }
            });
            true
        }
        Err(e) => {
            warn!(app = %id, "cannot record the finished fetch: {e}");
            false
        }
    }
}

/// One try: locality check, startup set, encodings, pin, locality check.
async fn attempt(
    manager: &Manager,
    app: &LiveApp,
    manifest: &Manifest,
    release: &str,
    progress: Option<&Progress>,
    cancel: &CancellationToken,
    early: &mut Option<StartupPrefetch>,
) -> Result<(), KuboError> {
    let (kubo, _) = manager.kubo()?;
    let config = manager.config();
    let path = mfs_path(&manifest.id, release);
    let started = Instant::now();
    let locality = kubo.files_locality(&path).await?;
    let checked = started.elapsed();
    let base = locality.size_local.min(locality.cumulative_size);
    let total = locality.cumulative_size;
    let current = || app.snapshot().release == release;
    let report = |fetched: u64| {
        if current() {
            app.update(|i| {
                i.total = total;
                i.fetched = i.fetched.max(fetched).min(total);
            });
        }
        if let Some(progress) = progress {
            progress.send_modify(|(done, all)| {
                *all = total;
                *done = (*done).max(fetched).min(total);
            });
        }
    };
    let status = |text: &str| {
        if current() {
            app.update(|i| i.status = text.to_string());
        }
    };
    report(base);
    if locality.local {
        return Ok(());
    }
    // The startup set first (the install may have started it already):
    // the rest waits while its ranges keep arriving.
    let startup = Instant::now();
    let mut prefetch = early.take().or_else(|| {
        StartupPrefetch::start(kubo.clone(), manifest, config.fetch.prefetch_concurrency)
    });
    if let Some(prefetch) = &mut prefetch {
        status("fetching the startup set");
        // Through the mount only while it serves this release.
        let files = current().then(|| std::path::PathBuf::from(app.snapshot().mount_point));
        prefetch.wait(&manifest.id, release, files.as_deref()).await;
    }
    let startup = startup.elapsed();
    info!("fetching the rest of {} {release}", manifest.id);
    let decoding = Instant::now();
    if manifest.encodings.is_some() {
        status("fetching through deltas and the pack");
        crate::decode::run(manager, &kubo, manifest, release, cancel).await;
    }
    let decoding = decoding.elapsed();
    status("fetching");
    if kubo.is_pinned(release).await? {
        // Pinned by this node's publisher: local already, and its pin is
        // not the installer's to take over (or to remove later).
        return Ok(());
    }
    let name = pin_name(&manifest.id, &manifest.version);
    // What is still missing comes as plain blocks.
    let before_walk = kubo.files_locality(&path).await?;
    let walk = Instant::now();
    kubo.pin_add_progress(release, &name, config.fetch.stall_timeout, |_, bytes| {
        report(bytes)
    })
    .await?;
    let walk = walk.elapsed();
    let last_check = Instant::now();
    let locality = kubo.files_locality(&path).await?;
    let checks = checked + last_check.elapsed();
    let plain = before_walk
        .cumulative_size
        .saturating_sub(before_walk.size_local.min(before_walk.cumulative_size));
    crate::decode::add_wire(manager, release, |w| w.plain += plain);
    let wire = crate::decode::load_wire(manager, release);
    info!(
        "fetch bytes {} {release}: delta {} ({} files), pack {} ({} files), plain blocks {}, refused decodings {}",
        manifest.id, wire.delta, wire.delta_files, wire.pack, wire.pack_files, wire.plain, wire.refused
    );
    // Where the time went (scripts/bench-fetch.sh reads this line).
    info!(
        "fetch timing {}: startup set {:.2} s, decoding {:.2} s, pin walk {:.2} s, locality checks {:.2} s, whole attempt {:.2} s",
        manifest.id,
        startup.as_secs_f64(),
        decoding.as_secs_f64(),
        walk.as_secs_f64(),
        checks.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if !locality.local {
        return Err(KuboError::Garbled {
            api: String::new(),
            command: "files/stat".into(),
            message: format!("{path} is pinned but not every block is local"),
        });
    }
    Ok(())
}

/// After a failed attempt: the connections to the remotes' peers are made
/// anew ([`crate::peering::renew`]).
async fn renew_peering(manager: &Manager) {
    let Ok((kubo, _)) = manager.kubo() else {
        return;
    };
    let peers: Vec<_> = match manager.store().load() {
        Ok(state) => state.remotes.into_values().flat_map(|r| r.peers).collect(),
        Err(_) => return,
    };
    crate::peering::renew(&kubo, &peers).await;
}
