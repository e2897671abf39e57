//! Updates, rollback, pins and retention of installed apps.
//!
//! An update fetches the new release into a deployment of its own (own
//! deploy directory, own mount, own MFS copy and pin) while the current one
//! stays mounted and in use; only then is `active` switched, atomically, so
//! a running instance keeps its tree and the next start gets the new one. A
//! rollback switches back to a retained deployment without touching the
//! network, and holds the release it left so automatic updates do not
//! re-apply it. Retention keeps the current release, the newest
//! `retention.keep_previous` others, user-pinned ones and a held one.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::apps::LiveApp;
use crate::fetch;
use crate::index::StoreIndex;
use crate::install::{
    self, deploy_release, fetch_expected_manifest, mount, now, read_cached_manifest, sync_info,
    Expected, InstallError,
};
use crate::jobs::{Detail, Job};
use crate::kubo::Client;
use crate::local_files::Refused;
use crate::manager::Manager;
use crate::permissions;
use crate::release::Manifest;
use crate::source::{self, SourceError};
use crate::store::{Available, Deployment, Held, InstalledApp, PermissionsHeld, Phase};
use flatipfs_format::metadata::widened;

/// How an update goes.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// A given version (`update-to-version`), else the newest.
    pub version: Option<String>,
    /// Fetch it completely, do not switch.
    pub download_only: bool,
    /// Only switch to a release already downloaded; no network.
    pub cached_only: bool,
    /// Go ahead even if the release grants the app new permissions
    /// (authorized as `update-permissions`).
    pub allow_new_permissions: bool,
}

/// A release to move to.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    release: String,
    version: String,
    sequence: u64,
}

/// Whether an update from `current` (index sequence) to `target` may go
/// ahead; the reason for people when not. `explicit`: a version was asked
/// for (authorized as `update-to-version`). `held`: the sequence of a
/// release rolled back from, which automatic updates must not re-apply.
pub fn decide(
    current: u64,
    target: u64,
    explicit: bool,
    automatic: bool,
    held: Option<u64>,
) -> Result<(), String> {
    if !explicit && target < current {
        return Err(format!(
            "the remote offers an older release (sequence {target}) than the installed one (sequence {current}); going back needs `--version` (polkit action update-to-version) or `flatipfsctl rollback`"
        ));
    }
    if !explicit && target == current {
        return Err("the newest release is installed already".into());
    }
    if automatic && held.is_some_and(|h| target <= h) {
        return Err("that release was rolled back from; waiting for a newer one".into());
    }
    Ok(())
}

fn nothing(message: String) -> InstallError {
    InstallError::NothingToDo(message)
}

fn record(manager: &Manager, id: &str) -> Result<InstalledApp, InstallError> {
    match manager.store().load()?.apps.get(id) {
        Some(r) if r.phase == Phase::Ready => Ok(r.clone()),
        _ => Err(InstallError::NotInstalled(id.to_string())),
    }
}

/// Changes the record of `id` durably and brings its live app in step.
async fn change<T>(
    manager: &Manager,
    id: &str,
    edit: impl FnOnce(&mut InstalledApp) -> T,
) -> Result<T, InstallError> {
    let lock = manager.state_lock();
    let _guard = lock.lock().await;
    let store = manager.store();
    let mut state = store.load()?;
    let record = state
        .apps
        .get_mut(id)
        .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
    let out = edit(record);
    let record = record.clone();
    store.save(&state)?;
    if let Some(app) = manager.apps.get(id) {
        sync_info(manager, &app, &record);
    }
    Ok(out)
}

/// Marks the app `updating` while alive; its state is recomputed on drop.
struct Updating {
    manager: Arc<Manager>,
    id: String,
}

impl Updating {
    fn begin(manager: &Arc<Manager>, id: &str) -> Updating {
        if let Some(app) = manager.apps.get(id) {
            app.update(|i| i.state = "updating".into());
        }
        Updating {
            manager: manager.clone(),
            id: id.to_string(),
        }
    }
}

impl Drop for Updating {
    fn drop(&mut self) {
        if let (Some(app), Ok(state)) =
            (self.manager.apps.get(&self.id), self.manager.store().load())
        {
            if let Some(record) = state.apps.get(&self.id) {
                app.update(|i| i.state.clear());
                sync_info(&self.manager, &app, record);
            }
        }
    }
}

/// Updates `id` (a job's work). `automatic`: started by the scheduler.
pub async fn update(
    manager: &Arc<Manager>,
    id: &str,
    options: UpdateOptions,
    job: Arc<Job>,
    automatic: bool,
) -> Result<BTreeMap<String, Detail>, InstallError> {
    let current_record = record(manager, id)?;
    let app = manager
        .apps
        .get(id)
        .ok_or_else(|| InstallError::NotInstalled(id.to_string()))?;
    let _updating = Updating::begin(manager, id);
    let from = current_record
        .current()
        .map(|d| (d.version.clone(), d.sequence))
        .unwrap_or_default();
    let explicit = options.version.is_some();
    let (target, index) = if options.cached_only {
        (
            cached_target(&current_record, options.version.as_deref())?,
            None,
        )
    } else {
        job.set_status(&format!("checking for a newer release of {id}"));
        let (target, index) =
            remote_target(manager, &current_record, options.version.as_deref()).await?;
        let held = current_record.held.as_ref().map(|h| h.sequence);
        decide(from.1, target.sequence, explicit, automatic, held)
            .map_err(|why| nothing(format!("{id} {}: {why}", from.0)))?;
        (target, Some(index))
    };
    if target.release == current_record.current {
        return Err(nothing(format!(
            "{id} {} is installed already",
            target.version
        )));
    }
    let local = current_record
        .deployments
        .iter()
        .find(|d| d.release == target.release)
        .cloned();
    // The release's manifest and metadata are checked before any deploy
    // work: what it is, and what it grants beyond the current release.
    let (manifest, metadata) = match &local {
        Some(d) => {
            let manifest = read_cached_manifest(manager, &d.release)?;
            let bytes = permissions::read_deployed(manager, &current_record, &d.release)?;
            let metadata = permissions::check(&manifest, &bytes)?;
            (manifest, metadata)
        }
        None => {
            job.set_status(&format!("fetching the manifest of {id} {}", target.version));
            let (kubo, _) = manager.kubo()?;
            let expected = Expected {
                id: &current_record.id,
                kind: current_record.kind,
                arch: &current_record.arch,
                branch: &current_record.branch,
            };
            let manifest =
                fetch_expected_manifest(manager, &kubo, &target.release, expected).await?;
            let metadata = permissions::fetch_checked(manager, &kubo, &manifest).await?;
            (manifest, metadata)
        }
    };
    let installed = permissions::installed(manager, &current_record)?;
    let mut changes = permissions::describe(&widened(&installed, &metadata.permissions));
    // A release that needs another runtime: what that runtime grants the
    // app's sandbox counts too.
    let runtime_plan = (manifest.runtime != current_record.runtime).then(|| install::Plan {
        manifest: Arc::new(manifest.clone()),
        release: target.release.clone(),
        sequence: target.sequence,
        remote: current_record.remote.clone(),
        remote_ipns: current_record.remote_ipns.clone(),
        source: current_record.source.clone(),
        index,
    });
    if let Some(plan) = &runtime_plan {
        changes.extend(runtime_widening(manager, &current_record, plan, &job).await?);
    }
    if !changes.is_empty() && !options.allow_new_permissions {
        hold_for_permissions(manager, id, &target, &changes).await?;
        info!(app = %id, version = %target.version, changes = %changes.join("; "), "update held: it needs new permissions");
        return Err(InstallError::PermissionsChanged {
            id: id.to_string(),
            version: target.version.clone(),
            changes,
        });
    }
    let mut details: BTreeMap<String, Detail> = [
        ("AppId".to_string(), Detail::Text(id.to_string())),
        ("From".into(), Detail::Text(from.0.clone())),
        ("To".into(), Detail::Text(target.version.clone())),
        ("Release".into(), Detail::Text(target.release.clone())),
        ("NewPermissions".into(), Detail::Text(changes.join("\n"))),
    ]
    .into_iter()
    .collect();
    // Another runtime: installed first, from the same remote (the old one
    // stays: other apps may use it). A cancelled update keeps the new
    // runtime: it is complete and the next try needs it.
    if let Some(plan) = &runtime_plan {
        let runtime = install::ensure_runtime(manager, plan, &job, &mut Vec::new()).await?;
        details.insert("RuntimeInstalled".into(), Detail::Text(runtime));
    }
    // Files of the release's export/ refused when it is laid out (a
    // release downloaded by an earlier job was reported by that job).
    let mut refused = Vec::new();
    if !local.as_ref().is_some_and(|d| d.complete) {
        job.set_status(&format!("fetching {id} {}", target.version));
        refused = download(manager, &app, &manifest, &target, local.is_some(), &job).await?;
    }
    // How the release's bytes came: deltas, pack, plain blocks (`decode`).
    let wire = crate::decode::load_wire(manager, &target.release);
    for (key, value) in [
        ("DeltaBytes", wire.delta),
        ("PackBytes", wire.pack),
        ("PlainBytes", wire.plain),
        ("DeltaFiles", wire.delta_files),
        ("PackFiles", wire.pack_files),
        ("RefusedDecodings", wire.refused),
    ] {
        details.insert(key.into(), Detail::Number(value));
    }
    details.insert(
        "RefusedExports".into(),
        Detail::Text(
            refused
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    );
    if options.download_only {
        details.insert("Applied".into(), Detail::Number(0));
        info!(app = %id, version = %target.version, "downloaded; not applied");
        return Ok(details);
    }
    job.set_status(&format!("switching {id} to {}", target.version));
    switch(manager, id, &manifest, &target.release, None).await?;
    info!(app = %id, from = %from.0, to = %target.version, "updated");
    details.insert("Applied".into(), Detail::Number(1));
    let removed = apply_retention(manager, id).await?;
    details.insert("Removed".into(), Detail::Text(removed.join(", ")));
    Ok(details)
}

/// The release a cached-only update moves to: the newest complete one
/// newer than the current (or the version asked for).
fn cached_target(record: &InstalledApp, version: Option<&str>) -> Result<Target, InstallError> {
    let current = record.current().map_or(0, |d| d.sequence);
    record
        .deployments
        .iter()
        .filter(|d| d.complete && d.release != record.current)
        .filter(|d| match version {
            Some(v) => d.version == v,
            None => d.sequence > current,
        })
        .max_by_key(|d| (d.sequence, d.deployed))
        .map(|d| Target {
            release: d.release.clone(),
            version: d.version.clone(),
            sequence: d.sequence,
        })
        .ok_or_else(|| {
            nothing(format!(
                "no newer release of {} is downloaded; run `flatipfsctl update --download-only {}` first",
                record.id, record.id
            ))
        })
}

/// The release the remote's index offers (or the version asked for, from
/// the index's history or what is kept here). Records what a check found.
async fn remote_target(
    manager: &Manager,
    record: &InstalledApp,
    version: Option<&str>,
) -> Result<(Target, Arc<StoreIndex>), InstallError> {
    let Some(remote) = record.remote.clone() else {
        return Err(nothing(format!(
            "{} was installed from a fixed release ({}); there is no remote to update it from",
            record.id, record.source
        )));
    };
    let remotes = manager.store().load()?.remotes;
    let ipns = crate::install::trusted_remote_ipns(record, &remote, &remotes)?;
    let (kubo, _) = manager.kubo()?;
    let index = crate::freshness::fetch_index(manager, &kubo, &remote, &ipns).await?;
    let entry = source::index_entry(&index, &remote, &record.id)?;
    note_check(
        manager,
        &record.id,
        &entry.release,
        &entry.version,
        entry.sequence,
    )
    .await?;
    let index = Arc::new(index);
    let Some(version) = version else {
        return Ok((
            Target {
                release: entry.release,
                version: entry.version,
                sequence: entry.sequence,
            },
            index,
        ));
    };
    let mut known: Vec<Target> = vec![Target {
        release: entry.release.clone(),
        version: entry.version.clone(),
        sequence: entry.sequence,
    }];
    known.extend(entry.history.iter().map(|p| Target {
        release: p.release.clone(),
        version: p.version.clone(),
        sequence: p.sequence,
    }));
    known.extend(record.deployments.iter().map(|d| Target {
        release: d.release.clone(),
        version: d.version.clone(),
        sequence: d.sequence,
    }));
    let listed: Vec<String> = known.iter().map(|t| t.version.clone()).collect();
    known
        .into_iter()
        .find(|t| t.version == version && crate::release::valid_cid_v1(&t.release))
        .map(|t| (t, index))
        .ok_or_else(|| {
            InstallError::Source(SourceError::NotInIndex {
                remote,
                id: format!("{} version {version}", record.id),
                known: listed,
            })
        })
}

/// What moving `record` to the runtime `plan`'s release names grants its
/// sandbox beyond its current runtime (for people, each prefixed with the
/// runtime). The new runtime's metadata comes from an installation that
/// has it, else from the remote (checked like an install's).
async fn runtime_widening(
    manager: &Manager,
    record: &InstalledApp,
    plan: &install::Plan,
    job: &Job,
) -> Result<Vec<String>, InstallError> {
    let Some(new) = plan.manifest.runtime.as_deref() else {
        return Ok(Vec::new());
    };
    let old = match record.runtime.as_deref() {
        Some(old) => permissions::runtime_permissions(manager, old)
            .await?
            .unwrap_or_default(),
        None => Default::default(),
    };
    let granted = match permissions::runtime_permissions(manager, new).await? {
        Some(p) => p,
        None => {
            let runtime = install::plan_runtime(manager, plan, new, job).await?;
            let (kubo, _) = manager.kubo()?;
            permissions::fetch_checked(manager, &kubo, &runtime.manifest)
                .await?
                .permissions
        }
    };
    Ok(widened(&old, &granted)
        .into_iter()
        .map(|c| format!("runtime {new}: {}", c.description))
        .collect())
}

/// Records that `target` is held because it grants `id` new permissions
/// (`flatipfsctl info` shows it; automatic updates skip it).
async fn hold_for_permissions(
    manager: &Manager,
    id: &str,
    target: &Target,
    changes: &[String],
) -> Result<(), InstallError> {
    let held = PermissionsHeld {
        release: target.release.clone(),
        version: target.version.clone(),
        sequence: target.sequence,
        changes: changes.to_vec(),
    };
    change(manager, id, |r| r.permissions_held = Some(held)).await
}

/// Records the newest release a check found for `id` (when newer than the
/// current one), and the time of the check.
async fn note_check(
    manager: &Manager,
    id: &str,
    release: &str,
    version: &str,
    sequence: u64,
) -> Result<bool, InstallError> {
    change(manager, id, |r| {
        let current = r.current().map_or(0, |d| d.sequence);
        r.last_checked = now();
        // A hold for permissions is about one release: another one offered
        // is judged when an update tries it.
        if r.permissions_held
            .as_ref()
            .is_some_and(|h| h.release != release)
        {
            r.permissions_held = None;
        }
        if sequence > current && release != r.current {
            r.available = Some(Available {
                release: release.to_string(),
                version: version.to_string(),
                sequence,
            });
            true
        } else {
            r.available = None;
            false
        }
    })
    .await
}

/// Removes a deployment an update added when the update is cancelled.
struct UndoDeployment {
    manager: Arc<Manager>,
    id: String,
    release: String,
    armed: bool,
}

impl Drop for UndoDeployment {
    fn drop(&mut self) {
        if self.armed {
            let (manager, id, release) =
                (self.manager.clone(), self.id.clone(), self.release.clone());
            tokio::spawn(async move {
                if let Err(e) = drop_deployment(&manager, &id, &release).await {
                    warn!(app = %id, %release, "cannot remove the cancelled download: {e}");
                }
            });
        }
    }
}

/// Adds `target` as a deployment of the app (deploy directory, MFS copy,
/// cached manifest, mount; recorded only once all of it exists) unless it
/// is there, and fetches it completely, reporting bytes on `job`. Returns
/// the files of its `export/` that were refused when it was laid out.
async fn download(
    manager: &Arc<Manager>,
    app: &Arc<LiveApp>,
    manifest: &Manifest,
    target: &Target,
    present: bool,
    job: &Job,
) -> Result<Vec<Refused>, InstallError> {
    let (kubo, _) = manager.kubo()?;
    let mut undo = UndoDeployment {
        manager: manager.clone(),
        id: manifest.id.clone(),
        release: target.release.clone(),
        armed: !present,
    };
    let refused = if present {
        Vec::new()
    } else {
        add_deployment(manager, app, &kubo, manifest, target).await?
    };
    let (progress, mut seen) = watch::channel((0u64, 0u64));
    let token = app.begin_fetch(&target.release);
    let fetching = fetch::run(
        manager.clone(),
        app.clone(),
        Arc::new(manifest.clone()),
        target.release.clone(),
        token,
        Some(progress),
        None,
    );
    tokio::pin!(fetching);
    let complete = loop {
        tokio::select! {
            done = &mut fetching => break done,
            Ok(()) = seen.changed() => {
                let (done, total) = *seen.borrow_and_update();
                job.set_bytes(done, total);
            }
        }
    };
    if !complete {
        return Err(InstallError::Internal(format!(
            "the download of {} {} stopped",
            manifest.id, target.version
        )));
    }
    // Its files/ switches to its tree once they are local files: not
    // under a `flatpak run` that follows the update (`wait_settled`).
    job.set_status("keeping the files local");
    app.wait_settled(&target.release).await;
    undo.armed = false;
    Ok(refused)
}

/// Lays out `target` next to the current deployment; returns the refused
/// exports (logged already).
async fn add_deployment(
    manager: &Manager,
    app: &LiveApp,
    kubo: &Client,
    manifest: &Manifest,
    target: &Target,
) -> Result<Vec<Refused>, InstallError> {
    let (_, refused) = deploy_release(manager, app, kubo, manifest, &target.release, None).await?;
    if !refused.is_empty() {
        info!(app = %manifest.id, version = %target.version, "{} export(s) refused", refused.len());
    }
    let deployment = Deployment {
        release: target.release.clone(),
        version: target.version.clone(),
        sequence: target.sequence,
        total_bytes: manifest.totals.dag_bytes,
        complete: false,
        deployed: now(),
        pinned: false,
    };
    change(manager, &manifest.id, move |r| {
        r.deployments.retain(|d| d.release != deployment.release);
        r.deployments.push(deployment);
    })
    .await?;
    Ok(refused)
}

/// Makes `release` the app's active release (atomically, under the
/// installation lock), then records it.
async fn switch(
    manager: &Manager,
    id: &str,
    manifest: &Manifest,
    release: &str,
    held: Option<Held>,
) -> Result<(), InstallError> {
    // A kept release is not mounted until needed (a download-only update
    // or a rollback target): mounted before `active` points at it.
    if let Some(app) = manager.apps.get(id) {
        if !app.is_mounted(release) {
            let files = manager
                .config()
                .installation()
                .deploy_dir(manifest, release)
                .join("files");
            mount(manager, &app, manifest, release, &files).await?;
        }
    }
    manager
        .config()
        .installation()
        .activate(manifest, release)?;
    change(manager, id, |r| {
        let target = r
            .deployments
            .iter()
            .find(|d| d.release == release)
            .map_or(0, |d| d.sequence);
        r.current = release.to_string();
        r.held = held;
        r.runtime = manifest.runtime.clone();
        if r.available.as_ref().is_some_and(|a| a.sequence <= target) {
            r.available = None;
        }
        if r.permissions_held
            .as_ref()
            .is_some_and(|h| h.release == release || h.sequence <= target)
        {
            r.permissions_held = None;
        }
    })
    .await
}

/// Switches `id` back to the newest retained release older than the current
/// one, with no network at all; the release left is held.
pub async fn rollback(
    manager: &Arc<Manager>,
    id: &str,
    job: &Job,
) -> Result<BTreeMap<String, Detail>, InstallError> {
    let record = record(manager, id)?;
    let current = record
        .current()
        .cloned()
        .ok_or_else(|| InstallError::Internal(format!("{id} has no current deployment")))?;
    let target = record
        .deployments
        .iter()
        .filter(|d| d.complete && d.release != record.current && d.sequence <= current.sequence)
        .max_by_key(|d| (d.sequence, d.deployed))
        .cloned()
        .ok_or_else(|| {
            nothing(format!(
                "no earlier release of {id} is kept on this machine (see `flatipfsctl pins`)"
            ))
        })?;
    job.set_status(&format!("rolling {id} back to {}", target.version));
    let manifest = read_cached_manifest(manager, &target.release)?;
    let held = Held {
        release: current.release.clone(),
        sequence: current.sequence,
    };
    switch(manager, id, &manifest, &target.release, Some(held)).await?;
    info!(app = %id, from = %current.version, to = %target.version, "rolled back");
    Ok([
        ("AppId".to_string(), Detail::Text(id.to_string())),
        ("From".into(), Detail::Text(current.version)),
        ("To".into(), Detail::Text(target.version)),
        ("Release".into(), Detail::Text(target.release)),
    ]
    .into_iter()
    .collect())
}

/// Keeps `version` of `id` whatever the retention says (`pinned`), or
/// stops doing so.
pub async fn set_pinned(
    manager: &Manager,
    id: &str,
    version: &str,
    pinned: bool,
) -> Result<(), InstallError> {
    record(manager, id)?;
    let found = change(manager, id, |r| {
        let mut found = false;
        for d in r.deployments.iter_mut().filter(|d| d.version == version) {
            d.pinned = pinned;
            found = true;
        }
        found
    })
    .await?;
    if !found {
        return Err(InstallError::Source(SourceError::NotInIndex {
            remote: "this machine".into(),
            id: format!("{id} version {version}"),
            known: record(manager, id)?
                .deployments
                .iter()
                .map(|d| d.version.clone())
                .collect(),
        }));
    }
    Ok(())
}

/// Removes the deployments of `id` beyond retention; returns their versions.
pub async fn apply_retention(manager: &Manager, id: &str) -> Result<Vec<String>, InstallError> {
    let record = record(manager, id)?;
    let keep = manager.config().retention.keep_previous;
    let mut others: Vec<&Deployment> = record
        .deployments
        .iter()
        .filter(|d| {
            d.release != record.current
                && !d.pinned
                && record.held.as_ref().is_none_or(|h| h.release != d.release)
        })
        .collect();
    others.sort_by_key(|d| std::cmp::Reverse((d.sequence, d.deployed)));
    let mut removed = Vec::new();
    for d in others.into_iter().skip(keep) {
        drop_deployment(manager, id, &d.release).await?;
        removed.push(d.version.clone());
    }
    Ok(removed)
}

/// Forgets one (non-current) deployment durably, then unmounts it lazily,
/// deletes its deploy directory, and unpins it and removes it from MFS
/// (best effort: leftovers are removed at the next start or vacuum).
async fn drop_deployment(manager: &Manager, id: &str, release: &str) -> Result<(), InstallError> {
    let record = change(manager, id, |r| {
        if r.current != release {
            r.deployments.retain(|d| d.release != release);
        }
        r.clone()
    })
    .await?;
    if record.current == release {
        return Ok(());
    }
    if let Some(app) = manager.apps.get(id) {
        app.stop_fetch(release);
        app.unmount(manager.apps.pool().as_deref(), release);
    }
    crate::trees::remove(&manager.config().state_directory, release);
    let keep: Vec<String> = record
        .deployments
        .iter()
        .map(|d| d.release.clone())
        .collect();
    manager.config().installation().prune_ref(
        record.kind,
        id,
        &record.arch,
        &record.branch,
        &keep,
    )?;
    let _ = std::fs::remove_file(install::cached_manifest(manager, release));
    let _ = std::fs::remove_file(install::verified_marker(manager, release));
    let _ = std::fs::remove_file(crate::local_store::marker(manager, release));
    let _ = std::fs::remove_file(crate::decode::wire_path(manager, release));
    if let Ok((kubo, _)) = manager.kubo() {
        let ours = kubo.pins_named(fetch::PIN_PREFIX).await.unwrap_or_default();
        if ours.iter().any(|(cid, _)| cid == release) {
            if let Err(e) = kubo.pin_rm(release).await {
                warn!(app = %id, %release, "cannot unpin: {e}");
            }
        }
        if let Err(e) = kubo.files_rm(&fetch::mfs_path(id, release)).await {
            warn!(app = %id, %release, "cannot remove from MFS: {e}");
        }
    }
    info!(app = %id, %release, "removed a release beyond retention");
    Ok(())
}

/// Checks the remotes of `only` (every app with a remote when `None`) and
/// records what they offer; returns the ids with a newer release that an
/// automatic update may apply (held releases excluded). A remote that
/// cannot be resolved means "no update", never an error for the others.
pub async fn refresh(
    manager: &Manager,
    only: Option<&[String]>,
) -> Result<Vec<String>, InstallError> {
    let state = manager.store().load()?;
    let (kubo, _) = manager.kubo()?;
    let mut by_remote: BTreeMap<String, Vec<InstalledApp>> = BTreeMap::new();
    for record in state.apps.values() {
        if record.phase != Phase::Ready || only.is_some_and(|o| !o.contains(&record.id)) {
            continue;
        }
        if let Some(remote) = &record.remote {
            // Never offered updates from a publisher it was not installed from.
            if let Err(e @ InstallError::Untrusted { .. }) =
                crate::install::trusted_remote_ipns(record, remote, &state.remotes)
            {
                warn!(app = %record.id, "check: {e}");
                continue;
            }
            by_remote
                .entry(remote.clone())
                .or_default()
                .push(record.clone());
        }
    }
    let mut found = Vec::new();
    for (remote, records) in by_remote {
        let Some(ipns) = state.remotes.get(&remote).map(|r| r.ipns.clone()) else {
            continue;
        };
        let index = match crate::freshness::fetch_index(manager, &kubo, &remote, &ipns).await {
            Ok(index) => index,
            Err(e) => {
                warn!(%remote, "check: {e}; no update from it this time");
                continue;
            }
        };
        for record in records {
            let Ok(entry) = source::index_entry(&index, &remote, &record.id) else {
                continue;
            };
            let newer = note_check(
                manager,
                &record.id,
                &entry.release,
                &entry.version,
                entry.sequence,
            )
            .await?;
            let held = record
                .held
                .as_ref()
                .is_some_and(|h| entry.sequence <= h.sequence);
            // Held for its permissions: an administrator must ask for it.
            let needs_permissions = record
                .permissions_held
                .as_ref()
                .is_some_and(|h| h.release == entry.release);
            if newer && !held && !needs_permissions {
                found.push(record.id.clone());
            }
        }
    }
    Ok(found)
}

/// Sets (or, with `None`, clears) the automatic update policy of `id`.
pub async fn set_update_policy(
    manager: &Manager,
    id: &str,
    policy: Option<crate::updates::Policy>,
) -> Result<(), InstallError> {
    record(manager, id)?;
    change(manager, id, |r| r.update_policy = policy).await?;
    manager.scheduler.wake.notify_one();
    Ok(())
}

/// Makes the scheduler check now and act as the policies say.
pub fn trigger_automatic(manager: &Manager) {
    manager
        .scheduler
        .force
        .store(true, std::sync::atomic::Ordering::SeqCst);
    manager.scheduler.wake.notify_one();
}

/// Sets (or, with `None`, clears) the daemon's automatic update policy
/// (overriding the configuration file's).
pub async fn set_automatic_policy(
    manager: &Manager,
    policy: Option<crate::updates::Policy>,
) -> Result<(), InstallError> {
    {
        let lock = manager.state_lock();
        let _guard = lock.lock().await;
        let store = manager.store();
        let mut state = store.load()?;
        state.automatic_update_policy = policy;
        store.save(&state)?;
    }
    manager.scheduler.wake.notify_one();
    Ok(())
}

/// Updates every app that has a remote (runtimes first), one after the
/// other; returns who was updated, who was up to date, who failed.
pub async fn update_all(
    manager: &Arc<Manager>,
    options: UpdateOptions,
    job: Arc<Job>,
) -> Result<BTreeMap<String, Detail>, InstallError> {
    let state = manager.store().load()?;
    let mut ids: Vec<&InstalledApp> = state
        .apps
        .values()
        .filter(|a| a.phase == Phase::Ready && a.remote.is_some())
        .collect();
    ids.sort_by_key(|a| (a.kind != crate::release::Kind::Runtime, a.id.clone()));
    let (mut updated, mut current, mut failed, mut held) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for record in ids {
        let id = record.id.clone();
        let _claim = match manager.apps.claim(&id, job.id()) {
            Ok(claim) => claim,
            Err(holder) => {
                failed.push(format!("{id}: busy with job {holder}"));
                continue;
            }
        };
        match update(manager, &id, options.clone(), job.clone(), false).await {
            Ok(d) => updated.push(format!(
                "{id} {}",
                match d.get("To") {
                    Some(Detail::Text(t)) => t.clone(),
                    _ => String::new(),
                }
            )),
            Err(InstallError::NothingToDo(_)) => current.push(id),
            Err(InstallError::PermissionsChanged {
                version, changes, ..
            }) => held.push(format!("{id} {version} ({})", changes.join("; "))),
            Err(e) => failed.push(format!("{id}: {e}")),
        }
    }
    let text = |v: Vec<String>| Detail::Text(v.join(", "));
    Ok([
        ("Updated".to_string(), text(updated)),
        ("UpToDate".into(), text(current)),
        ("Failed".into(), text(failed)),
        ("HeldForPermissions".into(), text(held)),
    ]
    .into_iter()
    .collect())
}

/// Records the time of an automatic check (durable).
pub async fn record_automatic_check(manager: &Manager, time: u64) -> Result<(), InstallError> {
    let lock = manager.state_lock();
    let _guard = lock.lock().await;
    let store = manager.store();
    let mut state = store.load()?;
    state.last_automatic_check = time;
    store.save(&state)?;
    Ok(())
}

/// Removes what retention does not keep, for every app, then whatever no
/// record keeps in Kubo, then runs Kubo's garbage collection unless other
/// jobs are running (`only_job` is the vacuum itself).
pub async fn vacuum(
    manager: &Arc<Manager>,
    job: &Job,
) -> Result<BTreeMap<String, Detail>, InstallError> {
    let state = manager.store().load()?;
    let mut removed = Vec::new();
    for id in state.apps.keys() {
        if manager.apps.holder(id).is_some() {
            continue;
        }
        job.set_status(&format!("applying retention to {id}"));
        for version in apply_retention(manager, id).await? {
            removed.push(format!("{id} {version}"));
        }
    }
    job.set_status("removing local files no release keeps");
    if let Err(e) = crate::local_store::prune(manager) {
        warn!("cannot prune local files: {e}");
    }
    job.set_status("removing pins and MFS copies no app keeps");
    install::reconcile_kubo(manager).await;
    let idle = manager
        .jobs
        .live()
        .iter()
        .all(|&j| j == job.id() || manager.jobs.finished(j));
    let gc = if idle {
        job.set_status("collecting garbage");
        let (kubo, _) = manager.kubo()?;
        kubo.repo_gc().await?;
        1
    } else {
        0
    };
    Ok([
        ("Removed".to_string(), Detail::Text(removed.join(", "))),
        ("GarbageCollected".into(), Detail::Number(gc)),
    ]
    .into_iter()
    .collect())
}

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn updates_only_go_forward_unless_a_version_is_asked_for() {
        assert!(decide(3, 5, false, false, None).is_ok());
        assert!(decide(5, 5, false, false, None)
            .unwrap_err()
            .contains("newest"));
        assert!(decide(5, 3, false, false, None)
            .unwrap_err()
            .contains("update-to-version"));
        assert!(decide(5, 3, true, false, None).is_ok());
    }

    #[test]
    fn a_held_release_is_not_reapplied_automatically() {
        // Rolled back from sequence 5 to 3: the scheduler leaves 5 alone...
        assert!(decide(3, 5, false, true, Some(5)).is_err());
        // ...but applies 6, and a person may update to 5 at any time.
        assert!(decide(3, 6, false, true, Some(5)).is_ok());
        assert!(decide(3, 5, false, false, Some(5)).is_ok());
    }
}
