//! Installing and uninstalling apps, and bringing them back at start-up.
//!
//! An install is ordered so that a daemon killed at any instant comes back
//! with the app either installed or absent, never half of it:
//!
//! 1. the app is recorded as `installing` (durable);
//! 2. its deploy directory is written (temporary name, then renamed), the
//!    release is copied into MFS, its manifest cached, `files/` mounted and
//!    `active` switched;
//! 3. the app is recorded as `ready` (durable): from here on it is
//!    installed, and every start mounts it again and resumes its fetch;
//! 4. the release is fetched in the background until it is complete.
//!
//! A start that finds an `installing` record removes what step 2 left
//! ([`restore`]). Uninstalling first forgets the app durably, then deletes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::process::Command;
use tracing::{info, warn};

use crate::apps::{AppInfo, DeploymentInfo, LiveApp};
use crate::fetch;
use crate::fuse::MountError;
use crate::index::StoreIndex;
use crate::installation::InstallationError;
use crate::jobs::{Detail, Job};
use crate::kubo::{Client, KuboError};
use crate::local_files::{self, Refused};
use crate::manager::Manager;
use crate::permissions;
use crate::release::{Kind, Manifest, ManifestLimits};
use crate::source::{self, Source, SourceError};
use crate::store::{Deployment, InstalledApp, Phase, StoreError};

/// Why an install or uninstall failed; each maps to one D-Bus error.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("no remote named {0:?}; add it with `flatipfsctl remote add {0} /ipns/…`")]
    NoSuchRemote(String),
    #[error("{0} is installed already; update it with `flatipfsctl update {0}`")]
    AlreadyInstalled(String),
    #[error("{0} is not installed")]
    NotInstalled(String),
    #[error(
        "{id} is busy with job {job}; wait for it or cancel it with `flatipfsctl cancel {job}`"
    )]
    Busy { id: String, job: u64 },
    #[error("the runtime {runtime} that {app} needs is not installed{}", match remote { Some(r) => format!(" and remote {r:?} does not have it"), None => "; install it first".to_string() })]
    RuntimeMissing {
        app: String,
        runtime: String,
        remote: Option<String>,
    },
    #[error("{runtime} is needed by {}; uninstall those first", apps.join(", "))]
    RuntimeInUse { runtime: String, apps: Vec<String> },
    #[error("{0}")]
    NothingToDo(String),
    #[error("the release does not match what was asked for: {0}")]
    Mismatch(String),
    #[error("{what} is refused: {source}")]
    Metadata {
        what: String,
        #[source]
        source: flatipfs_format::metadata::MetadataError,
    },
    #[error("{id} {version} needs new permissions: {}; ask again with `flatipfsctl update --allow-new-permissions {id}` (polkit action update-permissions)", changes.join("; "))]
    PermissionsChanged {
        id: String,
        version: String,
        changes: Vec<String>,
    },
    #[error(transparent)]
    Kubo(#[from] KuboError),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    #[error(transparent)]
    Installation(#[from] InstallationError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{id} was installed from the publisher {} of remote {remote:?}, which now names /ipns/{now}; updates come only from the publisher an app was installed from: to trust the new one, reinstall it (`flatipfsctl uninstall {id}`, then `flatipfsctl install {remote} {id}`)", match installed_from { Some(name) => format!("/ipns/{name}"), None => "(unknown)".to_string() })]
    Untrusted {
        id: String,
        remote: String,
        installed_from: Option<String>,
        now: String,
    },
    #[error("{0}")]
    Internal(String),
}

/// The current IPNS name of `record`'s remote `remote`, if it is still the
/// publisher the app was installed from; `Untrusted` if the remote now
/// names another key (or the original one is unknown).
pub(crate) fn trusted_remote_ipns(
    record: &InstalledApp,
    remote: &str,
    remotes: &std::collections::BTreeMap<String, crate::store::Remote>,
) -> Result<String, InstallError> {
    let now = remotes
        .get(remote)
        .map(|r| r.ipns.clone())
        .ok_or_else(|| InstallError::NoSuchRemote(remote.to_string()))?;
    if record.remote_ipns.as_deref() != Some(now.as_str()) {
        return Err(InstallError::Untrusted {
            id: record.id.clone(),
            remote: remote.to_string(),
            installed_from: record.remote_ipns.clone(),
            now,
        });
    }
    Ok(now)
}

/// A release chosen for installation, its manifest fetched and validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub manifest: Arc<Manifest>,
    pub release: String,
    /// The index sequence it was published at (0 for a fixed release).
    pub sequence: u64,
    pub remote: Option<String>,
    /// The remote's IPNS name when it was resolved.
    pub remote_ipns: Option<String>,
    pub source: String,
    /// The remote's index, to find the runtime in.
    pub index: Option<Arc<StoreIndex>>,
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn limits(manager: &Manager) -> ManifestLimits {
    manager.config().limits.manifest()
}

/// `ID/ARCH/BRANCH` of a manifest.
fn triple(m: &Manifest) -> String {
    format!("{}/{}/{}", m.id, m.arch, m.branch)
}

/// Where the manifest of `release` is kept on local disk (mounting at
/// start-up needs no network).
pub(crate) fn cached_manifest(manager: &Manager, release: &str) -> PathBuf {
    manager
        .config()
        .state_directory
        .join("releases")
        .join(format!("{release}.json"))
}

/// Next to the cached manifest of `release`: present once the manifest was
/// checked against the release's `deploy/` tree (`verify`).
pub(crate) fn verified_marker(manager: &Manager, release: &str) -> PathBuf {
    cached_manifest(manager, release).with_extension("verified")
}

/// Fails unless `id` is not installed (nor being installed).
pub fn ensure_not_installed(manager: &Manager, id: &str) -> Result<(), InstallError> {
    if manager.store().load()?.apps.contains_key(id) {
        return Err(InstallError::AlreadyInstalled(id.to_string()));
    }
    Ok(())
}

/// What a manifest must say it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected<'a> {
    pub id: &'a str,
    pub kind: Kind,
    pub arch: &'a str,
    pub branch: &'a str,
}

/// Fetches and validates the manifest of `release`, and checks that it is
/// the release of what was expected (an index entry, an installed app).
pub(crate) async fn fetch_expected_manifest(
    manager: &Manager,
    kubo: &Client,
    release: &str,
    expected: Expected<'_>,
) -> Result<Manifest, InstallError> {
    let timeout = manager.config().fetch.document_timeout;
    let manifest = source::fetch_manifest(kubo, release, limits(manager), timeout).await?;
    if manifest.id != expected.id
        || manifest.kind != expected.kind
        || manifest.arch != expected.arch
        || manifest.branch != expected.branch
    {
        return Err(InstallError::Mismatch(format!(
            "expected {} {}/{}/{}, the manifest of /ipfs/{release} is {} {}",
            expected.kind.as_str(),
            expected.id,
            expected.arch,
            expected.branch,
            manifest.kind.as_str(),
            triple(&manifest)
        )));
    }
    Ok(manifest)
}

/// Fetches the manifest of a fixed release (before its job exists: the
/// app's object path depends on the id inside).
pub async fn plan_release(manager: &Manager, release: &str) -> Result<Plan, InstallError> {
    let (kubo, _) = manager.kubo()?;
    let timeout = manager
        .config()
        .fetch
        .document_timeout
        .min(Duration::from_secs(20));
    let manifest = source::fetch_manifest(&kubo, release, limits(manager), timeout).await?;
    Ok(Plan {
        manifest: Arc::new(manifest),
        release: release.to_string(),
        sequence: 0,
        remote: None,
        remote_ipns: None,
        source: Source::Release(release.to_string()).describe(),
        index: None,
    })
}

/// Resolves `id` in `remote`'s store index and fetches its manifest.
pub async fn plan_remote(
    manager: &Manager,
    remote: &str,
    id: &str,
    job: &Job,
) -> Result<Plan, InstallError> {
    let ipns = manager
        .store()
        .load()?
        .remotes
        .get(remote)
        .map(|r| r.ipns.clone())
        .ok_or_else(|| InstallError::NoSuchRemote(remote.to_string()))?;
    let (kubo, _) = manager.kubo()?;
    job.set_status(&format!("resolving remote {remote}"));
    let started = Instant::now();
    let index = crate::freshness::fetch_index(manager, &kubo, remote, &ipns).await?;
    let resolved = started.elapsed();
    let entry = source::index_entry(&index, remote, id)?;
    job.set_status(&format!("fetching the manifest of {id} {}", entry.version));
    let expected = Expected {
        id,
        kind: entry.kind,
        arch: &entry.arch,
        branch: &entry.branch,
    };
    let manifest = fetch_expected_manifest(manager, &kubo, &entry.release, expected).await?;
    // Where the time of `install --no-wait` goes (scripts/bench-startup.sh).
    info!(
        "install timing {id}: index {:.2} s, manifest {:.2} s",
        resolved.as_secs_f64(),
        (started.elapsed() - resolved).as_secs_f64()
    );
    Ok(Plan {
        manifest: Arc::new(manifest),
        release: entry.release,
        sequence: entry.sequence,
        remote: Some(remote.to_string()),
        remote_ipns: Some(ipns),
        source: Source::Remote {
            remote: remote.to_string(),
            id: id.to_string(),
        }
        .describe(),
        index: Some(Arc::new(index)),
    })
}

/// Installs the planned release: the runtime it needs first (from the same
/// remote, when no installation on the system has it), then the app, then
/// waits for the background fetch while reporting its bytes on `job`.
pub async fn install(
    manager: &Arc<Manager>,
    plan: Plan,
    job: Arc<Job>,
) -> Result<std::collections::BTreeMap<String, Detail>, InstallError> {
    let id = plan.manifest.id.clone();
    ensure_not_installed(manager, &id)?;
    // Cancelling the job (dropping this future) before it ends undoes what
    // it installed: the app, and the runtime it installed for the app.
    let mut undo = UndoOnDrop {
        manager: manager.clone(),
        ids: Vec::new(),
        armed: true,
    };
    job.set_status(&format!("checking the metadata of {id}"));
    let (kubo, _) = manager.kubo()?;
    let started = Instant::now();
    permissions::fetch_checked(manager, &kubo, &plan.manifest).await?;
    let metadata = started.elapsed();
    let runtime_installed = ensure_runtime(manager, &plan, &job, &mut undo.ids).await?;
    let runtime = started.elapsed() - metadata;
    job.set_status(&format!("installing {id} {}", plan.manifest.version));
    undo.ids.push(id.clone());
    let (app, refused) = deploy(manager, &plan).await?;
    info!(
        "install timing {id}: metadata {:.2} s, runtime {:.2} s, deploy {:.2} s",
        metadata.as_secs_f64(),
        runtime.as_secs_f64(),
        (started.elapsed() - metadata - runtime).as_secs_f64()
    );
    job.set_status("runnable; fetching the rest in the background");
    let mut info = app.info.subscribe();
    loop {
        let now = info.borrow_and_update().clone();
        job.set_bytes(now.fetched, now.total);
        if now.state == "installed" {
            break;
        }
        if info.changed().await.is_err() {
            return Err(InstallError::Internal(format!(
                "{id} was removed while it was being fetched"
            )));
        }
    }
    // Fetched; its files/ switches to its tree once they are local files:
    // a `flatpak run` right after this install returns must not start
    // during that switch.
    job.set_status("keeping the files local");
    app.wait_settled(&plan.release).await;
    undo.armed = false;
    let text = |s: &str| Detail::Text(s.to_string());
    let final_info = app.snapshot();
    let wire = crate::decode::load_wire(manager, &plan.release);
    Ok([
        ("DeltaBytes".to_string(), Detail::Number(wire.delta)),
        ("PackBytes".into(), Detail::Number(wire.pack)),
        ("PlainBytes".into(), Detail::Number(wire.plain)),
        ("DeltaFiles".into(), Detail::Number(wire.delta_files)),
        ("PackFiles".into(), Detail::Number(wire.pack_files)),
        ("RefusedDecodings".into(), Detail::Number(wire.refused)),
        ("AppId".to_string(), text(&id)),
        ("Version".into(), text(&plan.manifest.version)),
        ("Release".into(), text(&plan.release)),
        ("Ref".into(), text(&final_info.reference)),
        ("MountPoint".into(), text(&final_info.mount_point)),
        ("RuntimeInstalled".into(), text(&runtime_installed)),
        ("TotalBytes".into(), Detail::Number(final_info.total)),
        (
            "RefusedExports".into(),
            text(
                &refused
                    .iter()
                    .map(Refused::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ),
    ]
    .into_iter()
    .collect())
}

/// Installs the runtime `plan`'s release needs, from the same remote, unless
/// an installation on the system has it (its metadata checked first).
/// Returns the runtime installed (`ID/ARCH/BRANCH`), empty if none was. Its
/// id is pushed on `installed` before it is laid out, for the caller's undo.
pub(crate) async fn ensure_runtime(
    manager: &Arc<Manager>,
    plan: &Plan,
    job: &Job,
    installed: &mut Vec<String>,
) -> Result<String, InstallError> {
    let Some(runtime) = plan.manifest.runtime.clone() else {
        return Ok(String::new());
    };
    if runtime_present(manager, &runtime).await? {
        return Ok(String::new());
    }
    let runtime_plan = plan_runtime(manager, plan, &runtime, job).await?;
    let (kubo, _) = manager.kubo()?;
    permissions::fetch_checked(manager, &kubo, &runtime_plan.manifest).await?;
    let runtime_id = runtime_plan.manifest.id.clone();
    let _claim = manager
        .apps
        .claim(&runtime_id, job.id())
        .map_err(|holder| InstallError::Busy {
            id: runtime_id.clone(),
            job: holder,
        })?;
    job.set_status(&format!("installing the runtime {runtime}"));
    installed.push(runtime_id.clone());
    deploy(manager, &runtime_plan).await?;
    Ok(runtime)
}

/// Removes what an install job installed (the app, the runtime it
/// installed first) when the job does not end well: newest first, and a
/// runtime only while no other app needs it.
struct UndoOnDrop {
    manager: Arc<Manager>,
    /// Ids in the order they were installed.
    ids: Vec<String>,
    armed: bool,
}

impl Drop for UndoOnDrop {
    fn drop(&mut self) {
        if !self.armed || self.ids.is_empty() {
            return;
        }
        let manager = self.manager.clone();
        let ids = std::mem::take(&mut self.ids);
        info!(apps = ?ids, "install cancelled or failed; removing what it installed");
        tokio::spawn(async move {
            for id in ids.iter().rev() {
                match check_uninstall(&manager, id) {
                    Ok(()) => {}
                    Err(InstallError::NotInstalled(_)) => continue,
                    Err(e) => {
                        warn!(app = %id, "kept: {e}");
                        continue;
                    }
                }
                if let Err(e) = remove(&manager, id).await {
                    warn!(app = %id, "cannot remove the cancelled install: {e}");
                }
            }
        });
    }
}

/// Whether `runtime` (`ID/ARCH/BRANCH`) is installed in any installation
/// Flatpak knows, this daemon's included.
async fn runtime_present(manager: &Manager, runtime: &str) -> Result<bool, InstallError> {
    let state = manager.store().load()?;
    if state.apps.values().any(|a| {
        a.kind == Kind::Runtime
            && a.phase == Phase::Ready
            && format!("{}/{}/{}", a.id, a.arch, a.branch) == runtime
    }) {
        return Ok(true);
    }
    let config = manager.config();
    let mut command = Command::new("flatpak");
    command
        .args(["info", "--show-ref", &format!("runtime/{runtime}")])
        .env(
            "FLATPAK_CONFIG_DIR",
            &config.installation.flatpak_config_dir,
        );
    let output = crate::subprocess::output(&mut command, crate::installation::FLATPAK_TIMEOUT)
        .await
        .map_err(InstallationError::from)?;
    Ok(output.status.success())
}

/// The plan for the runtime `runtime` from the app's remote.
pub(crate) async fn plan_runtime(
    manager: &Manager,
    app: &Plan,
    runtime: &str,
    job: &Job,
) -> Result<Plan, InstallError> {
    let missing = || InstallError::RuntimeMissing {
        app: app.manifest.id.clone(),
        runtime: runtime.to_string(),
        remote: app.remote.clone(),
    };
    let (Some(remote), Some(index)) = (&app.remote, &app.index) else {
        return Err(missing());
    };
    let runtime_id = runtime.split('/').next().unwrap_or_default();
    let Some(entry) = index.apps.get(runtime_id) else {
        return Err(missing());
    };
    if entry.kind != Kind::Runtime
        || format!("{runtime_id}/{}/{}", entry.arch, entry.branch) != runtime
    {
        return Err(missing());
    }
    ensure_not_installed(manager, runtime_id)?;
    let (kubo, _) = manager.kubo()?;
    job.set_status(&format!("fetching the manifest of the runtime {runtime}"));
    let expected = Expected {
        id: runtime_id,
        kind: Kind::Runtime,
        arch: &entry.arch,
        branch: &entry.branch,
    };
    let manifest = fetch_expected_manifest(manager, &kubo, &entry.release, expected).await?;
    Ok(Plan {
        manifest: Arc::new(manifest),
        release: entry.release.clone(),
        sequence: entry.sequence,
        remote: app.remote.clone(),
        remote_ipns: app.remote_ipns.clone(),
        source: Source::Remote {
            remote: remote.clone(),
            id: runtime_id.to_string(),
        }
        .describe(),
        index: app.index.clone(),
    })
}

/// What clients see of a record.
pub(crate) fn app_info(manager: &Manager, record: &InstalledApp) -> AppInfo {
    let current = record.current();
    let complete = current.is_some_and(|d| d.complete);
    let total = current.map_or(0, |d| d.total_bytes);
    let mount_point = match record.phase {
        Phase::Installing => String::new(),
        Phase::Ready => manager
            .config()
            .installation()
            .deploy_dir_of(
                record.kind,
                &record.id,
                &record.arch,
                &record.branch,
                &record.current,
            )
            .join("files")
            .display()
            .to_string(),
    };
    AppInfo {
        id: record.id.clone(),
        kind: record.kind.as_str().to_string(),
        reference: format!("{}/{}", record.kind.as_str(), record.triple()),
        remote: record.remote.clone().unwrap_or_default(),
        source: record.source.clone(),
        state: match (record.phase, complete) {
            (Phase::Installing, _) => "installing",
            (Phase::Ready, true) => "installed",
            (Phase::Ready, false) => "degraded",
        }
        .to_string(),
        status: record
            .permissions_held
            .as_ref()
            .map(held_status)
            .unwrap_or_default(),
        version: current.map(|d| d.version.clone()).unwrap_or_default(),
        release: record.current.clone(),
        runtime: record.runtime.clone().unwrap_or_default(),
        fetched: if complete { total } else { 0 },
        total,
        mount_point,
        active_job: 0,
        available: record
            .available
            .as_ref()
            .map(|a| a.version.clone())
            .unwrap_or_default(),
        update_policy: record
            .update_policy
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        last_checked: record.last_checked,
        deployments: record
            .deployments
            .iter()
            .map(|d| DeploymentInfo {
                version: d.version.clone(),
                release: d.release.clone(),
                sequence: d.sequence,
                current: d.release == record.current,
                pinned: d.pinned,
                complete: d.complete,
                held: record.held.as_ref().is_some_and(|h| h.release == d.release),
                deployed: d.deployed,
            })
            .collect(),
        pending_permissions: record
            .permissions_held
            .as_ref()
            .map(|h| h.changes.clone())
            .unwrap_or_default(),
    }
}

/// How an app's status starts while an update is held for its permissions.
pub(crate) const HELD_STATUS: &str = "update held:";

/// The status of an app whose update is held for its permissions.
fn held_status(held: &crate::store::PermissionsHeld) -> String {
    format!(
        "{HELD_STATUS} {} needs new permissions ({}); apply it with `flatipfsctl update --allow-new-permissions`",
        held.version,
        held.changes.len()
    )
}

/// Brings the live app in step with its record (after an update, a
/// rollback, a check), keeping what only the running daemon knows: the
/// fetch progress of an unchanged release, the status and the active job.
pub(crate) fn sync_info(manager: &Manager, app: &LiveApp, record: &InstalledApp) {
    let fresh = app_info(manager, record);
    app.update(|info| {
        let same_release = info.release == fresh.release;
        let (fetched, total) = (info.fetched, info.total);
        let (status, job) = (std::mem::take(&mut info.status), info.active_job);
        let keep_state = info.state == "updating" || info.state == "uninstalling";
        let state = std::mem::take(&mut info.state);
        // A held update's status comes from the record; it goes with it.
        let status = if !fresh.status.is_empty() {
            fresh.status.clone()
        } else if status.starts_with(HELD_STATUS) {
            String::new()
        } else {
            status
        };
        *info = fresh;
        info.status = status;
        info.active_job = job;
        if keep_state {
            info.state = state;
        }
        if same_release && info.fetched < info.total {
            info.fetched = fetched.min(total.max(info.total));
            info.total = total.max(info.total);
        }
    });
}

/// Lays out, mounts and activates a planned release (steps 1 to 3 of the
/// module's order), then starts its background fetch. On failure, what was
/// done is undone before the error is returned.
async fn deploy(
    manager: &Arc<Manager>,
    plan: &Plan,
) -> Result<(Arc<LiveApp>, Vec<Refused>), InstallError> {
    let manifest = &plan.manifest;
    let id = manifest.id.clone();
    let record = InstalledApp {
        id: id.clone(),
        kind: manifest.kind,
        arch: manifest.arch.clone(),
        branch: manifest.branch.clone(),
        remote: plan.remote.clone(),
        remote_ipns: plan.remote_ipns.clone(),
        source: plan.source.clone(),
        phase: Phase::Installing,
        current: plan.release.clone(),
        deployments: vec![Deployment {
            release: plan.release.clone(),
            version: manifest.version.clone(),
            sequence: plan.sequence,
            total_bytes: manifest.totals.dag_bytes,
            complete: false,
            deployed: now(),
            pinned: false,
        }],
        runtime: manifest.runtime.clone(),
        installed: now(),
        held: None,
        update_policy: None,
        available: None,
        last_checked: 0,
        permissions_held: None,
    };
    {
        let lock = manager.state_lock();
        let _guard = lock.lock().await;
        let store = manager.store();
        let mut state = store.load()?;
        if state.apps.contains_key(&id) {
            return Err(InstallError::AlreadyInstalled(id));
        }
        state.apps.insert(id.clone(), record.clone());
        store.save(&state)?;
    }
    let app = manager.apps.add(app_info(manager, &record));
    // The directory CAR first (one small download the binding check then
    // reads instead of a round trip per directory; it would wait behind
    // the startup set's blocks), then the startup set alongside the
    // binding check and the layout (see `startup` for why that is safe);
    // a failed install drops it.
    let kubo = manager.kubo().ok().map(|(kubo, _)| kubo);
    let (known, car) = match &kubo {
        Some(kubo) => directory_blocks(manager, kubo, manifest, &plan.release).await,
        None => Default::default(),
    };
    let concurrency = manager.config().fetch.prefetch_concurrency;
    let mut startup = kubo
        .clone()
        .and_then(|kubo| crate::startup::StartupPrefetch::start(kubo, manifest, concurrency));
    match (car, &mut startup, kubo) {
        (Some(car), Some(startup), _) => startup.store_after(car),
        (Some(car), None, Some(kubo)) => {
            tokio::spawn(async move { crate::directory_car::store(&kubo, car).await });
        }
        _ => {}
    }
    let refused = match lay_out(manager, plan, &app, Some(known)).await {
        Ok(refused) => refused,
        Err(e) => {
            warn!(app = %id, "install failed: {e}; removing what was laid out");
            if let Err(undo) = remove(manager, &id).await {
                warn!(app = %id, "cannot undo the failed install: {undo}");
            }
            return Err(e);
        }
    };
    info!(app = %id, version = %manifest.version, release = %plan.release, "installed; fetching in the background");
    start_fetch(
        manager,
        &app,
        manifest.clone(),
        plan.release.clone(),
        startup,
    );
    Ok((app, refused))
}

/// Step 2 and 3 of an install; returns the refused exports.
async fn lay_out(
    manager: &Arc<Manager>,
    plan: &Plan,
    app: &LiveApp,
    known: Option<HashMap<cid::Cid, Vec<u8>>>,
) -> Result<Vec<Refused>, InstallError> {
    let manifest = &plan.manifest;
    let config = manager.config();
    let installation = config.installation();
    let (kubo, _) = manager.kubo()?;
    installation.register().await?;
    app.update(|i| i.status = "laying out the release".into());
    let (files, refused) =
        deploy_release(manager, app, &kubo, manifest, &plan.release, known).await?;
    installation.activate(manifest, &plan.release)?;
    {
        let lock = manager.state_lock();
        let _guard = lock.lock().await;
        let store = manager.store();
        let mut state = store.load()?;
        let record = state
            .apps
            .get_mut(&manifest.id)
            .ok_or_else(|| InstallError::Internal("the install record vanished".into()))?;
        record.phase = Phase::Ready;
        store.save(&state)?;
    }
    app.update(|i| {
        i.state = "degraded".into();
        i.status = "runnable; fetching in the background".into();
        i.mount_point = files.display().to_string();
    });
    Ok(refused)
}

/// The directory blocks of `release`'s directory CAR, when it has one and
/// still needs its binding check (`directory_car`), and the same as a CAR
/// to store; none when it fails: the CAR only saves round trips, the walk
/// fetches what it lacks.
pub(crate) async fn directory_blocks(
    manager: &Manager,
    kubo: &Client,
    manifest: &Manifest,
    release: &str,
) -> (HashMap<cid::Cid, Vec<u8>>, Option<Vec<u8>>) {
    let car = manifest
        .encodings
        .as_ref()
        .and_then(|e| e.directories.as_ref());
    let Some(car) = car.filter(|_| !verified_marker(manager, release).exists()) else {
        return Default::default();
    };
    let stall = manager.config().fetch.document_timeout;
    match crate::directory_car::import(kubo, manifest, car, stall).await {
        Ok(got) => {
            info!(
                "directory CAR of {} {release}: {} directory blocks kept, {} refused",
                manifest.id,
                got.blocks.len(),
                got.refused
            );
            (got.blocks, got.car)
        }
        Err(e) => {
            warn!(app = %manifest.id, %release, "directory CAR not used: {e}");
            Default::default()
        }
    }
}

/// Puts `release` on this machine next to whatever else of the app is
/// there: its deploy directory (local `metadata` and `export/`), its copy
/// in MFS (so nothing of it is garbage-collected while it is fetched), its
/// cached manifest and its `files/` mount. Returns the mount point and the
/// files of `export/` that were refused (logged already). What a crash
/// leaves of this is removed at the next start unless recorded.
pub(crate) async fn deploy_release(
    manager: &Manager,
    app: &LiveApp,
    kubo: &Client,
    manifest: &Manifest,
    release: &str,
    known: Option<HashMap<cid::Cid, Vec<u8>>>,
) -> Result<(PathBuf, Vec<Refused>), InstallError> {
    let config = manager.config();
    let started = Instant::now();
    // The entry CIDs must be the release's own before anything is laid
    // out or served by them; once per release.
    if !verified_marker(manager, release).exists() {
        app.update(|i| i.status = "checking the manifest against the release".into());
        let known = match known {
            Some(known) => known,
            None => {
                let (known, car) = directory_blocks(manager, kubo, manifest, release).await;
                if let Some(car) = car {
                    crate::directory_car::store(kubo, car).await;
                }
                known
            }
        };
        let timeout = config.fetch.document_timeout;
        crate::verify::release_tree(kubo, release, manifest, timeout, &known).await?;
    }
    let verified = started.elapsed();
    let local = local_files::local_files(
        kubo,
        manifest,
        (&config.limits).into(),
        config.fetch.document_timeout,
    )
    .await?;
    let fetched_local = started.elapsed();
    let deploy_dir = config
        .installation()
        .write_deploy(manifest, release, &local.files)?;
    let written = started.elapsed();
    let mfs = fetch::mfs_path(&manifest.id, release);
    kubo.files_mkdir(&fetch::mfs_app_dir(&manifest.id)).await?;
    kubo.files_rm(&mfs).await?;
    kubo.files_cp(&format!("/ipfs/{release}"), &mfs).await?;
    let copied = started.elapsed();
    write_cached_manifest(manager, release, manifest)?;
    write_verified_marker(manager, release, manifest)?;
    let cached = started.elapsed();
    let files = deploy_dir.join("files");
    if !app.is_mounted(release) {
        mount(manager, app, manifest, release, &files).await?;
    }
    info!(
        "deploy timing {}: binding check {:.2} s, local files {:.2} s, deploy written {:.2} s, MFS copy {:.2} s, manifest cached {:.2} s, mounted {:.2} s",
        manifest.id,
        verified.as_secs_f64(),
        (fetched_local - verified).as_secs_f64(),
        (written - fetched_local).as_secs_f64(),
        (copied - written).as_secs_f64(),
        (cached - copied).as_secs_f64(),
        (started.elapsed() - cached).as_secs_f64()
    );
    Ok((files, local.refused))
}

/// Mounts `files/` of `release` at `files` for `app`: from its local tree
/// (`trees`) if it has one, else through the FUSE pool.
pub(crate) async fn mount(
    manager: &Manager,
    app: &LiveApp,
    manifest: &Manifest,
    release: &str,
    files: &std::path::Path,
) -> Result<(), InstallError> {
    if let Some(tree) = crate::trees::complete(&manager.config().state_directory, release) {
        match crate::trees::bind(&tree, files) {
            Ok(()) => {
                app.add_tree_mount(release, files.to_owned(), tree);
                return Ok(());
            }
            Err(e) => {
                warn!(app = %manifest.id, %release, "cannot mount its local tree, mounting it through FUSE: {e}")
            }
        }
    }
    let pool = manager.pool()?;
    let slot = pool.attach(manifest, files)?;
    app.add_mount(release, files.to_owned(), slot);
    Ok(())
}

pub(crate) fn write_cached_manifest(
    manager: &Manager,
    release: &str,
    manifest: &Manifest,
) -> Result<(), InstallError> {
    let path = cached_manifest(manager, release);
    let internal =
        |e: std::io::Error| InstallError::Internal(format!("cannot write {}: {e}", path.display()));
    std::fs::create_dir_all(path.parent().expect("in a directory")).map_err(internal)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(manifest).expect("serializes")).map_err(internal)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(internal)?;
    crate::durable::rename(&tmp, &path).map_err(internal)
}

/// Records that the cached manifest of `release` was checked against its
/// tree (the marker holds the `deploy/` CID checked).
fn write_verified_marker(
    manager: &Manager,
    release: &str,
    manifest: &Manifest,
) -> Result<(), InstallError> {
    let path = verified_marker(manager, release);
    let internal =
        |e: std::io::Error| InstallError::Internal(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension("verified.tmp");
    std::fs::write(&tmp, format!("{}\n", manifest.deploy)).map_err(internal)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(internal)?;
    std::fs::rename(&tmp, &path).map_err(internal)
}

pub(crate) fn read_cached_manifest(
    manager: &Manager,
    release: &str,
) -> Result<Manifest, InstallError> {
    let path = cached_manifest(manager, release);
    let bytes = std::fs::read(&path)
        .map_err(|e| InstallError::Internal(format!("cannot read {}: {e}", path.display())))?;
    Ok(source::parse_manifest(
        &bytes,
        &path.display().to_string(),
        limits(manager),
    )?)
}

/// Starts (or restarts) the background fetch of `release`.
pub(crate) fn start_fetch(
    manager: &Arc<Manager>,
    app: &Arc<LiveApp>,
    manifest: Arc<Manifest>,
    release: String,
    startup: Option<crate::startup::StartupPrefetch>,
) {
    let cancel = app.begin_fetch(&release);
    let name = format!("the background fetch of {} {release}", manifest.id);
    let (shown, failed) = (app.clone(), release.clone());
    crate::supervised::spawn_logged_then(
        name,
        fetch::run(
            manager.clone(),
            app.clone(),
            manifest,
            release,
            cancel,
            None,
            startup,
        ),
        // The deployment stays incomplete: the next start resumes it.
        move |message| {
            shown.update(|i| {
                if i.release == failed {
                    i.status = format!(
                        "background fetch failed ({message}); restart flatipfsd to resume it"
                    );
                }
            })
        },
    );
}

/// Records `release` of `id` as complete (durable).
pub async fn mark_complete(manager: &Manager, id: &str, release: &str) -> Result<(), StoreError> {
    let lock = manager.state_lock();
    let _guard = lock.lock().await;
    let store = manager.store();
    let mut state = store.load()?;
    if let Some(record) = state.apps.get_mut(id) {
        if let Some(d) = record.deployments.iter_mut().find(|d| d.release == release) {
            d.complete = true;
            let record = record.clone();
            store.save(&state)?;
            if let Some(app) = manager.apps.get(id) {
                sync_info(manager, &app, &record);
            }
        }
    }
    Ok(())
}

/// Checks that `id` can be uninstalled now.
pub fn check_uninstall(manager: &Manager, id: &str) -> Result<(), InstallError> {
    let state = manager.store().load()?;
    let Some(record) = state.apps.get(id) else {
        return Err(InstallError::NotInstalled(id.to_string()));
    };
    if record.kind == Kind::Runtime {
        let triple = format!("{}/{}/{}", record.id, record.arch, record.branch);
        let users: Vec<String> = state
            .apps
            .values()
            .filter(|a| a.runtime.as_deref() == Some(triple.as_str()))
            .map(|a| a.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(InstallError::RuntimeInUse {
                runtime: triple,
                apps: users,
            });
        }
    }
    Ok(())
}

/// Uninstalls `id`: forgets it durably, detaches its mounts (lazily: a
/// running instance keeps its tree), deletes its deploys and exports, and
/// unpins and removes its releases from Kubo.
pub async fn uninstall(
    manager: &Arc<Manager>,
    id: &str,
    job: &Job,
) -> Result<std::collections::BTreeMap<String, Detail>, InstallError> {
    check_uninstall(manager, id)?;
    if let Some(app) = manager.apps.get(id) {
        app.update(|i| {
            i.state = "uninstalling".into();
            i.status = "removing".into();
        });
    }
    job.set_status(&format!("removing {id}"));
    let removed = remove(manager, id).await?;
    for release in &removed {
        let _ = std::fs::remove_file(crate::local_store::marker(manager, release));
    }
    if let Err(e) = crate::local_store::prune(manager) {
        warn!(app = %id, "cannot remove its local files: {e}");
    }
    job.set_status("unpinning");
    let (kubo, _) = manager.kubo()?;
    clean_kubo(&kubo, id, &removed).await?;
    info!(app = %id, "uninstalled");
    Ok([("AppId".to_string(), Detail::Text(id.to_string()))]
        .into_iter()
        .collect())
}

/// Forgets `id` durably, then removes its mounts and files. Returns the
/// releases it had, for Kubo to forget.
async fn remove(manager: &Arc<Manager>, id: &str) -> Result<Vec<String>, InstallError> {
    let record = {
        let lock = manager.state_lock();
        let _guard = lock.lock().await;
        let store = manager.store();
        let mut state = store.load()?;
        let record = state.apps.remove(id);
        store.save(&state)?;
        record
    };
    // The app's object goes last: a client that no longer sees the app
    // finds nothing of it left on disk.
    if let Some(app) = manager.apps.get(id) {
        app.stop_fetches();
        // A recording's mount is stacked on the app's: it goes first.
        manager.recordings.end(id);
        app.unmount_all(manager.apps.pool().as_deref());
    }
    let removed = remove_files(manager, record);
    manager.apps.remove(id);
    removed
}

/// Detaches the mounts of a forgotten app and deletes its files.
fn remove_files(
    manager: &Manager,
    record: Option<InstalledApp>,
) -> Result<Vec<String>, InstallError> {
    let Some(record) = record else {
        return Ok(Vec::new());
    };
    let installation = manager.config().installation();
    crate::mounts::detach_below(
        &installation
            .path
            .join(record.kind.as_str())
            .join(&record.id),
    );
    installation.prune_ref(record.kind, &record.id, &record.arch, &record.branch, &[])?;
    for d in &record.deployments {
        let _ = std::fs::remove_file(cached_manifest(manager, &d.release));
        let _ = std::fs::remove_file(verified_marker(manager, &d.release));
        let _ = std::fs::remove_file(crate::decode::wire_path(manager, &d.release));
    }
    Ok(record.deployments.into_iter().map(|d| d.release).collect())
}

/// Unpins `releases` of `id` and removes them from MFS.
async fn clean_kubo(kubo: &Client, id: &str, releases: &[String]) -> Result<(), KuboError> {
    let ours = kubo.pins_named(fetch::PIN_PREFIX).await?;
    for release in releases {
        if ours.iter().any(|(cid, _)| cid == release) {
            kubo.pin_rm(release).await?;
        }
    }
    kubo.files_rm(&fetch::mfs_app_dir(id)).await
}

/// Brings the installed apps back at start-up: detaches stale mounts,
/// removes installs a crash interrupted and anything no record claims,
/// mounts every installed app again and resumes unfinished fetches. Kubo
/// leftovers (pins, MFS copies) are removed once Kubo answers.
pub async fn restore(manager: Arc<Manager>) {
    if let Err(e) = restore_inner(&manager).await {
        warn!("cannot restore the installed apps: {e}");
    }
}

async fn restore_inner(manager: &Arc<Manager>) -> Result<(), InstallError> {
    let installation = manager.config().installation();
    crate::mounts::detach_below(&installation.path);
    let state = {
        let lock = manager.state_lock();
        let _guard = lock.lock().await;
        let store = manager.store();
        let mut state = store.load()?;
        let interrupted: Vec<String> = state
            .apps
            .values()
            .filter(|a| a.phase == Phase::Installing)
            .map(|a| a.id.clone())
            .collect();
        for id in &interrupted {
            info!(app = %id, "removing an install a restart interrupted");
            state.apps.remove(id);
        }
        // Records written before the publisher's name was kept trust the
        // remote's current name (none if the remote is gone).
        let remotes = state.remotes.clone();
        let mut filled = false;
        for record in state.apps.values_mut() {
            if let (Some(remote), None) = (&record.remote, &record.remote_ipns) {
                record.remote_ipns = remotes.get(remote).map(|r| r.ipns.clone());
                filled |= record.remote_ipns.is_some();
            }
        }
        if !interrupted.is_empty() || filled {
            store.save(&state)?;
        }
        state
    };
    let mut keep: HashMap<(Kind, String, String, String), Vec<String>> = HashMap::new();
    for a in state.apps.values() {
        keep.insert(
            (a.kind, a.id.clone(), a.arch.clone(), a.branch.clone()),
            a.deployments.iter().map(|d| d.release.clone()).collect(),
        );
    }
    for key in installation.refs() {
        let kept = keep.get(&key).cloned().unwrap_or_default();
        let (kind, id, arch, branch) = key;
        if let Err(e) = installation.prune_ref(kind, &id, &arch, &branch, &kept) {
            warn!(app = %id, "cannot remove leftovers: {e}");
        }
    }
    // Trees of releases no record keeps (a sandbox ran them at uninstall).
    let releases = keep.values().flatten().cloned().collect();
    crate::trees::prune(&manager.config().state_directory, &releases);
    // Runtimes first: an app that clients see again can run.
    let mut records: Vec<&InstalledApp> = state.apps.values().collect();
    records.sort_by_key(|r| (r.kind != Kind::Runtime, r.id.clone()));
    for record in records {
        if let Err(e) = bring_back(manager, record).await {
            warn!(app = %record.id, "cannot mount it again: {e}");
        }
    }
    let manager = manager.clone();
    tokio::spawn(async move { reconcile_kubo(&manager).await });
    Ok(())
}

/// Mounts every kept release of an installed app again, makes sure the
/// current one is active, shows the app to clients again (only then, so
/// that what they see is mounted) and resumes unfinished fetches.
async fn bring_back(manager: &Arc<Manager>, record: &InstalledApp) -> Result<(), InstallError> {
    let installation = manager.config().installation();
    let app = LiveApp::new(app_info(manager, record));
    let mut unfinished = Vec::new();
    let mounted: Result<(), InstallError> = async {
        for deployment in &record.deployments {
            let manifest = match read_cached_manifest(manager, &deployment.release) {
                Ok(m) => Arc::new(m),
                Err(e) if deployment.release != record.current => {
                    warn!(app = %record.id, version = %deployment.version, "cannot mount a kept release again: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !verified_marker(manager, &deployment.release).exists() {
                warn!(app = %record.id, version = %deployment.version, "installed by an older flatipfsd: its manifest was never checked against its deploy/ tree; update or reinstall it to check it");
            }
            // Only the current release is mounted: a kept one is mounted
            // when a rollback needs it (its deploy directory stays, with
            // an empty files/ that Flatpak never runs: it runs `active`).
            if deployment.release == record.current {
                let files = installation
                    .deploy_dir(&manifest, &deployment.release)
                    .join("files");
                mount(manager, &app, &manifest, &deployment.release, &files).await?;
                installation.activate(&manifest, &record.current)?;
                info!(app = %record.id, version = %manifest.version, "mounted again");
            }
            if !deployment.complete {
                unfinished.push((manifest, deployment.release.clone()));
            } else if !crate::local_store::marker(manager, &deployment.release).exists()
                || crate::trees::complete(
                    &manager.config().state_directory,
                    &deployment.release,
                )
                .is_none()
            {
                crate::local_store::spawn(
                    manager.clone(),
                    manifest,
                    deployment.release.clone(),
                );
            }
        }
        Ok(())
    }
    .await;
    // Shown even when it could not be mounted, so that it can be seen,
    // uninstalled or installed again; its status says what went wrong.
    if let Err(e) = &mounted {
        app.update(|i| i.status = format!("cannot be mounted: {e}"));
    }
    let app = manager.apps.insert(app);
    for (manifest, release) in unfinished {
        start_fetch(manager, &app, manifest, release, None);
    }
    mounted
}

/// Removes pins and MFS copies of releases no record keeps (left by an
/// uninstall while Kubo was down, or an install a crash interrupted).
/// Waits until Kubo answers.
pub async fn reconcile_kubo(manager: &Manager) {
    let kubo = loop {
        if let Ok((kubo, _)) = manager.kubo() {
            break kubo;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let Ok(state) = manager.store().load() else {
        return;
    };
    let kept: std::collections::HashSet<&str> = state
        .apps
        .values()
        .flat_map(|a| a.deployments.iter().map(|d| d.release.as_str()))
        .collect();
    match kubo.pins_named(fetch::PIN_PREFIX).await {
        Ok(pins) => {
            for (cid, name) in pins {
                if !kept.contains(cid.as_str()) {
                    info!(%cid, %name, "unpinning a release no app keeps");
                    if let Err(e) = kubo.pin_rm(&cid).await {
                        warn!(%cid, "cannot unpin: {e}");
                    }
                }
            }
        }
        Err(e) => warn!("cannot list pins: {e}"),
    }
    match kubo.files_ls("/flatpak-apps").await {
        Ok(ids) => {
            for id in ids {
                let Some(record) = state.apps.get(&id) else {
                    let _ = kubo.files_rm(&fetch::mfs_app_dir(&id)).await;
                    continue;
                };
                if let Ok(names) = kubo.files_ls(&fetch::mfs_app_dir(&id)).await {
                    for name in names {
                        if !record.deployments.iter().any(|d| d.release == name) {
                            let _ = kubo.files_rm(&fetch::mfs_path(&id, &name)).await;
                        }
                    }
                }
            }
        }
        Err(e) => warn!("cannot list /flatpak-apps: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Remote, State};

    const OLD: &str = "k51qzi5uqu5dlecrl0o05p1krwb4s4ymyvhneulogjz1hwixwmqqka0gic0wtm";
    const NEW: &str = "k51qzi5uqu5dgutdk6i1ynyzgkqngpha5xpgia3a5qqp4jsh0u4csozksxel3r";

    fn record(remote_ipns: Option<&str>) -> InstalledApp {
        let json = serde_json::json!({
            "id": "org.test.Hello", "kind": "app", "arch": "x86_64", "branch": "master",
            "remote": "main", "source": "main org.test.Hello", "phase": "ready",
            "current": "bafy", "deployments": [], "installed": 0,
            "remote_ipns": remote_ipns,
        });
        serde_json::from_value(json).unwrap()
    }

    fn remotes(ipns: &str) -> std::collections::BTreeMap<String, Remote> {
        [(
            "main".to_string(),
            Remote {
                ipns: ipns.into(),
                ..Default::default()
            },
        )]
        .into()
    }

    #[test]
    fn updates_come_only_from_the_publisher_an_app_was_installed_from() {
        let app = record(Some(OLD));
        assert_eq!(
            trusted_remote_ipns(&app, "main", &remotes(OLD)).unwrap(),
            OLD
        );
        let err = trusted_remote_ipns(&app, "main", &remotes(NEW)).unwrap_err();
        assert!(matches!(err, InstallError::Untrusted { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(OLD) && text.contains(NEW), "{text}");
        assert!(text.contains("reinstall"), "{text}");
        // Unknown (an old record whose remote was gone at start-up): refused.
        assert!(matches!(
            trusted_remote_ipns(&record(None), "main", &remotes(OLD)),
            Err(InstallError::Untrusted { .. })
        ));
        assert!(matches!(
            trusted_remote_ipns(&app, "other", &remotes(OLD)),
            Err(InstallError::NoSuchRemote(_))
        ));
    }

    #[test]
    fn state_files_without_the_publisher_name_still_load() {
        let mut json = serde_json::to_value(State::default()).unwrap();
        let mut app = serde_json::to_value(record(None)).unwrap();
        app.as_object_mut().unwrap().remove("remote_ipns");
        json["apps"]["org.test.Hello"] = app;
        let state: State = serde_json::from_value(json).unwrap();
        assert_eq!(state.apps["org.test.Hello"].remote_ipns, None);
    }
}
