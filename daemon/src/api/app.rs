//! App objects (`org.flatipfs.Manager1.App` at
//! `/org/flatipfs/Manager1/app/<escaped id>`).
//!
//! [`forward_apps`] exports one object per installed app as apps appear,
//! mirrors every [`AppInfo`] change as `PropertiesChanged`, and removes the
//! object when the app goes away. Methods validate, authorize and hand the
//! work to `install`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flatipfs_dbus::polkit::Action;
use flatipfs_dbus::{app_path, Error, ErrorKind};
use tokio::sync::{broadcast, watch};
use tracing::warn;
use zbus::interface;
use zbus::message::Header;
use zbus::object_server::InterfaceRef;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use super::{authorize, install_error, job::job_path, options, spawn_job};
use crate::apps::{AppEvent, AppInfo};
use crate::install::{self, InstallError};
use crate::jobs::{Detail, Job};
use crate::manager::Manager;
use crate::policy::Gate;
use crate::recording::{self, RecordError};
use crate::update::{self, UpdateOptions};
use crate::updates::Policy;

/// One installed app on the bus.
pub struct AppObject {
    manager: Arc<Manager>,
    gate: Gate,
    info: AppInfo,
    /// Which export of this path the object is (an app can be removed and
    /// installed again while an old watcher still runs).
    generation: u64,
}

#[interface(name = "org.flatipfs.Manager1.App")]
impl AppObject {
    /// Removes the app, as a job: exports removed, `files/` unmounted
    /// (lazily while in use), deploy directories deleted, its releases
    /// unpinned and removed from MFS. Polkit action `uninstall`. No options.
    async fn uninstall(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<OwnedObjectPath, Error> {
        options::reject_unknown(&options, &[])?;
        let id = self.info.id.clone();
        let uid = authorize(
            &self.gate,
            &header,
            Action::Uninstall,
            &HashMap::from([("app", id.as_str())]),
        )
        .await?;
        install::check_uninstall(&self.manager, &id).map_err(|e| install_error(&e))?;
        let manager = self.manager.clone();
        self.run_job(connection, "uninstall", uid, move |job| async move {
            install::uninstall(&manager, &job.app_id(), &job).await
        })
        .await
    }

    /// Updates the app as a job: to `version` (polkit action
    /// `update-to-version`, also to an older release) or, with `""`, to
    /// the newest release of its remote (action `update`). Options:
    /// `download-only` (b): fetch completely, do not switch;
    /// `cached-only` (b): only switch to an already downloaded release;
    /// `allow-new-permissions` (b): go ahead even if the release grants the
    /// app new permissions (polkit action `update-permissions`, checked
    /// before anything else). Without it such a release fails the job with
    /// `PermissionsChanged` and is held (`PendingPermissions`).
    async fn update(
        &self,
        version: String,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<OwnedObjectPath, Error> {
        options::reject_unknown(
            &options,
            &["download-only", "cached-only", "allow-new-permissions"],
        )?;
        let download_only = options::boolean(&options, "download-only")?;
        let cached_only = options::boolean(&options, "cached-only")?;
        let allow_new_permissions = options::boolean(&options, "allow-new-permissions")?;
        if download_only && cached_only {
            return Err(Error::new(
                ErrorKind::InvalidArgs,
                "\"download-only\" and \"cached-only\" exclude each other",
            ));
        }
        if version.len() > 128 || version.chars().any(char::is_control) {
            return Err(Error::new(
                ErrorKind::InvalidArgs,
                format!("invalid version {version:?}"),
            ));
        }
        let id = self.info.id.clone();
        let action = if version.is_empty() {
            Action::Update
        } else {
            Action::UpdateToVersion
        };
        let details = HashMap::from([("app", id.as_str()), ("version", version.as_str())]);
        let mut uid = authorize(&self.gate, &header, action, &details).await?;
        if allow_new_permissions {
            uid = authorize(&self.gate, &header, Action::UpdatePermissions, &details).await?;
        }
        let request = UpdateOptions {
            version: (!version.is_empty()).then_some(version),
            download_only,
            cached_only,
            allow_new_permissions,
        };
        let manager = self.manager.clone();
        self.run_job(connection, "update", uid, move |job| async move {
            update::update(&manager, &job.app_id(), request, job, false).await
        })
        .await
    }

    /// Switches back to the newest retained release older than the current
    /// one, as a job, without the network; the release left is held (not
    /// re-applied by automatic updates until a newer one is published).
    /// Polkit action `rollback`. No options.
    async fn rollback(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<OwnedObjectPath, Error> {
        options::reject_unknown(&options, &[])?;
        let id = self.info.id.clone();
        let uid = authorize(
            &self.gate,
            &header,
            Action::Rollback,
            &HashMap::from([("app", id.as_str())]),
        )
        .await?;
        let manager = self.manager.clone();
        self.run_job(connection, "rollback", uid, move |job| async move {
            update::rollback(&manager, &job.app_id(), &job).await
        })
        .await
    }

    /// Keeps release `version` whatever the retention says. Polkit action
    /// `manage-pins`.
    async fn pin(&self, version: String, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        self.set_pinned(version, true, header).await
    }

    /// Lets retention remove release `version` again. Polkit action
    /// `manage-pins`.
    async fn unpin(
        &self,
        version: String,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.set_pinned(version, false, header).await
    }

    /// Sets this app's automatic update policy: `none`, `check`,
    /// `download`, `apply`, or `""` to follow the daemon's. Polkit action
    /// `configure`.
    async fn set_update_policy(
        &self,
        policy: String,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let parsed = match policy.as_str() {
            "" => None,
            p => Some(Policy::parse(p).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgs,
                    format!("unknown policy {p:?}: use none, check, download, apply or \"\""),
                )
            })?),
        };
        let id = self.info.id.clone();
        authorize(
            &self.gate,
            &header,
            Action::Configure,
            &HashMap::from([("app", id.as_str()), ("policy", policy.as_str())]),
        )
        .await?;
        update::set_update_policy(&self.manager, &id, parsed)
            .await
            .map_err(|e| install_error(&e))
    }

    /// Starts recording the app's startup set: its current release is
    /// mounted afresh on top of its `files/` (nothing of it in the kernel's
    /// cache), and every byte range the processes started from now on read
    /// through it is noted, in first-access order. The caller then runs the
    /// app and calls `StopRecording`. Option `seconds` (u, default 60, at
    /// most 600): the daemon stops the recording by itself after that long.
    /// `NotInstalled`, `Busy` (a recording of the app runs already),
    /// `MountFailed`. Polkit action `record-startup`.
    async fn start_recording(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        options::reject_unknown(&options, &["seconds"])?;
        let seconds = match options.get("seconds") {
            None => 60,
            Some(v) => u32::try_from(v).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidArgs,
                    "option \"seconds\" must be a u32 (u)",
                )
            })?,
        };
        let limit = std::time::Duration::from_secs(seconds.into());
        if limit.is_zero() || limit > recording::MAX_DURATION {
            return Err(Error::new(
                ErrorKind::InvalidArgs,
                format!(
                    "option \"seconds\" must be between 1 and {}",
                    recording::MAX_DURATION.as_secs()
                ),
            ));
        }
        let id = self.info.id.clone();
        authorize(
            &self.gate,
            &header,
            Action::RecordStartup,
            &HashMap::from([("app", id.as_str())]),
        )
        .await?;
        recording::start(&self.manager, &id, limit)
            .await
            .map_err(|e| record_error(&e))
    }

    /// Stops the app's recording and returns its startup set: (path relative
    /// to `deploy/`, offset, length) in first-access order, the ranges
    /// `Publish` takes as option `startup-ranges`; and whether reads were left
    /// out to stay within the bounds clients accept. `NotFound` if no
    /// recording of the app runs. Polkit action `record-startup`.
    async fn stop_recording(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(Vec<(String, u64, u64)>, bool), Error> {
        let id = self.info.id.clone();
        authorize(
            &self.gate,
            &header,
            Action::RecordStartup,
            &HashMap::from([("app", id.as_str())]),
        )
        .await?;
        let recording = recording::stop(&self.manager, &id).map_err(|e| record_error(&e))?;
        Ok((
            recording
                .ranges
                .into_iter()
                .map(|r| (r.path, r.offset, r.length))
                .collect(),
            recording.truncated,
        ))
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> String {
        self.info.id.clone()
    }
    /// `app` or `runtime`.
    #[zbus(property(emits_changed_signal = "const"))]
    fn kind(&self) -> String {
        self.info.kind.clone()
    }
    /// A name for people (the id until AppStream data is read).
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.info.id.clone()
    }
    /// The Flatpak ref: `app/ID/ARCH/BRANCH` or `runtime/…`.
    #[zbus(property(emits_changed_signal = "const"), name = "Ref")]
    fn reference(&self) -> String {
        self.info.reference.clone()
    }
    /// The remote it came from; empty for a fixed `/ipfs/` release.
    #[zbus(property)]
    fn remote(&self) -> String {
        self.info.remote.clone()
    }
    /// What the install was asked for.
    #[zbus(property)]
    fn source(&self) -> String {
        self.info.source.clone()
    }
    /// `installing`, `degraded`, `installed` or `uninstalling`.
    #[zbus(property)]
    fn state(&self) -> String {
        self.info.state.clone()
    }
    /// What the background work is doing, for people.
    #[zbus(property)]
    fn status(&self) -> String {
        self.info.status.clone()
    }
    #[zbus(property)]
    fn current_version(&self) -> String {
        self.info.version.clone()
    }
    /// The release root CID in use.
    #[zbus(property)]
    fn current_cid(&self) -> String {
        self.info.release.clone()
    }
    /// The runtime it needs (`ID/ARCH/BRANCH`); empty for runtimes.
    #[zbus(property)]
    fn runtime(&self) -> String {
        self.info.runtime.clone()
    }
    /// Bytes of the current release present locally.
    #[zbus(property)]
    fn fetched_bytes(&self) -> u64 {
        self.info.fetched
    }
    /// Bytes of the current release.
    #[zbus(property)]
    fn total_bytes(&self) -> u64 {
        self.info.total
    }
    /// Where the release's `files/` is mounted.
    #[zbus(property)]
    fn mount_point(&self) -> String {
        self.info.mount_point.clone()
    }
    /// The newest release a check found, when newer than the current one;
    /// empty otherwise.
    #[zbus(property)]
    fn available_version(&self) -> String {
        self.info.available.clone()
    }
    /// This app's automatic update policy; empty: the daemon's.
    #[zbus(property)]
    fn update_policy(&self) -> String {
        self.info.update_policy.clone()
    }
    /// When its remote was last checked (seconds since the epoch; 0: never).
    #[zbus(property)]
    fn last_checked(&self) -> u64 {
        self.info.last_checked
    }
    /// Every release kept on this machine: `Version` (s), `Release` (s),
    /// `Sequence` (t), `Current` (b), `Pinned` (b), `Complete` (b),
    /// `Held` (b), `Deployed` (t).
    #[zbus(property)]
    fn deployments(&self) -> Vec<HashMap<String, OwnedValue>> {
        self.info
            .deployments
            .iter()
            .map(|d| {
                let mut m: HashMap<String, OwnedValue> = HashMap::new();
                let s = |v: &str| OwnedValue::try_from(Value::from(v)).expect("plain");
                m.insert("Version".into(), s(&d.version));
                m.insert("Release".into(), s(&d.release));
                m.insert("Sequence".into(), OwnedValue::from(d.sequence));
                m.insert("Current".into(), OwnedValue::from(d.current));
                m.insert("Pinned".into(), OwnedValue::from(d.pinned));
                m.insert("Complete".into(), OwnedValue::from(d.complete));
                m.insert("Held".into(), OwnedValue::from(d.held));
                m.insert("Deployed".into(), OwnedValue::from(d.deployed));
                m
            })
            .collect()
    }
    /// What the held update (the release `AvailableVersion` names, held
    /// because of this; `Status` says so) would grant beyond the current
    /// release, one change per item for people; empty when no update is
    /// held for its permissions.
    #[zbus(property)]
    fn pending_permissions(&self) -> Vec<String> {
        self.info.pending_permissions.clone()
    }
    /// The job changing the app now; `/` when none.
    #[zbus(property)]
    fn active_job(&self) -> OwnedObjectPath {
        match self.info.active_job {
            0 => OwnedObjectPath::try_from("/").expect("valid"),
            id => job_path(id),
        }
    }
}

/// Emits `PropertiesChanged` for every property that differs.
async fn emit_changes(iface: &InterfaceRef<AppObject>, old: &AppInfo, new: &AppInfo) {
    let object = iface.get().await;
    let e = iface.signal_emitter();
    let mut results = Vec::new();
    if old.remote != new.remote {
        results.push(object.remote_changed(e).await);
    }
    if old.source != new.source {
        results.push(object.source_changed(e).await);
    }
    if old.state != new.state {
        results.push(object.state_changed(e).await);
    }
    if old.status != new.status {
        results.push(object.status_changed(e).await);
    }
    if old.version != new.version {
        results.push(object.current_version_changed(e).await);
    }
    if old.release != new.release {
        results.push(object.current_cid_changed(e).await);
    }
    if old.runtime != new.runtime {
        results.push(object.runtime_changed(e).await);
    }
    if old.fetched != new.fetched {
        results.push(object.fetched_bytes_changed(e).await);
    }
    if old.total != new.total {
        results.push(object.total_bytes_changed(e).await);
    }
    if old.mount_point != new.mount_point {
        results.push(object.mount_point_changed(e).await);
    }
    if old.active_job != new.active_job {
        results.push(object.active_job_changed(e).await);
    }
    if old.available != new.available {
        results.push(object.available_version_changed(e).await);
    }
    if old.update_policy != new.update_policy {
        results.push(object.update_policy_changed(e).await);
    }
    if old.last_checked != new.last_checked {
        results.push(object.last_checked_changed(e).await);
    }
    if old.deployments != new.deployments {
        results.push(object.deployments_changed(e).await);
    }
    if old.pending_permissions != new.pending_permissions {
        results.push(object.pending_permissions_changed(e).await);
    }
    for r in results {
        if let Err(e) = r {
            warn!("cannot emit an app's PropertiesChanged: {e}");
        }
    }
}

impl AppObject {
    /// Claims the app for a new job of `kind` and runs `work` as that job.
    async fn run_job<F, Fut>(
        &self,
        connection: &zbus::Connection,
        kind: &str,
        uid: u32,
        work: F,
    ) -> Result<OwnedObjectPath, Error>
    where
        F: FnOnce(Arc<Job>) -> Fut + Send + 'static,
        Fut: std::future::Future<
                Output = Result<std::collections::BTreeMap<String, Detail>, InstallError>,
            > + Send
            + 'static,
    {
        let id = self.info.id.clone();
        let job = self.manager.jobs.create(kind, &id, uid);
        let claim = match self.manager.apps.claim(&id, job.id()) {
            Ok(claim) => claim,
            Err(holder) => {
                self.manager.jobs.forget(job.id());
                return Err(install_error(&InstallError::Busy { id, job: holder }));
            }
        };
        let worker_job = job.clone();
        let work = async move {
            let _claim = claim;
            work(worker_job).await.map_err(|e| install_error(&e))
        };
        spawn_job(connection, &self.manager, self.gate.clone(), job, work).await
    }

    async fn set_pinned(
        &self,
        version: String,
        pinned: bool,
        header: Header<'_>,
    ) -> Result<(), Error> {
        let id = self.info.id.clone();
        authorize(
            &self.gate,
            &header,
            Action::ManagePins,
            &HashMap::from([("app", id.as_str()), ("version", version.as_str())]),
        )
        .await?;
        update::set_pinned(&self.manager, &id, &version, pinned)
            .await
            .map_err(|e| install_error(&e))
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(0);

async fn export(
    connection: &zbus::Connection,
    manager: &Arc<Manager>,
    gate: &Gate,
    id: String,
    mut changes: watch::Receiver<AppInfo>,
) {
    let path = app_path(&id);
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    let server = connection.object_server();
    let _ = server.remove::<AppObject, _>(path.as_str()).await;
    let object = AppObject {
        manager: manager.clone(),
        gate: gate.clone(),
        info: changes.borrow_and_update().clone(),
        generation,
    };
    if let Err(e) = server.at(path.as_str(), object).await {
        warn!(app = %id, "cannot export the app object: {e}");
        return;
    }
    let connection = connection.clone();
    tokio::spawn(async move {
        let server = connection.object_server();
        while changes.changed().await.is_ok() {
            let new = changes.borrow_and_update().clone();
            let Ok(iface) = server.interface::<_, AppObject>(path.as_str()).await else {
                return;
            };
            let old = {
                let mut object = iface.get_mut().await;
                if object.generation != generation {
                    return;
                }
                std::mem::replace(&mut object.info, new.clone())
            };
            emit_changes(&iface, &old, &new).await;
        }
    });
}

/// Keeps one app object per installed app on the bus.
pub async fn forward_apps(connection: zbus::Connection, manager: Arc<Manager>, gate: Gate) {
    let mut events = manager.apps.subscribe();
    for app in manager.apps.list() {
        let id = app.snapshot().id;
        export(&connection, &manager, &gate, id, app.info.subscribe()).await;
    }
    loop {
        match events.recv().await {
            Ok(AppEvent::Added(id, changes)) => {
                export(&connection, &manager, &gate, id, changes).await;
            }
            Ok(AppEvent::Removed(id)) => {
                if manager.apps.get(&id).is_none() {
                    let path = app_path(&id);
                    let _ = connection
                        .object_server()
                        .remove::<AppObject, _>(path.as_str())
                        .await;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!("missed {n} app events; re-exporting every app");
                for app in manager.apps.list() {
                    let id = app.snapshot().id;
                    export(&connection, &manager, &gate, id, app.info.subscribe()).await;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Whether the object of app `id` is on the bus now.
pub(crate) async fn is_exported(connection: &zbus::Connection, id: &str) -> bool {
    connection
        .object_server()
        .interface::<_, AppObject>(app_path(id).as_str())
        .await
        .is_ok()
}

/// The D-Bus error of an install failure.
pub(crate) fn map_install_error(e: &InstallError) -> Error {
    use crate::source::SourceError;
    use crate::verify::VerifyError;
    let kind = match e {
        InstallError::Source(SourceError::BadSource(_)) => ErrorKind::InvalidArgs,
        InstallError::Source(SourceError::ResolveFailed { .. }) => ErrorKind::ResolveFailed,
        InstallError::Source(SourceError::Stale { .. }) => ErrorKind::StaleIndex,
        InstallError::Source(SourceError::Fetch { .. }) | InstallError::Kubo(_) => {
            ErrorKind::FetchFailed
        }
        InstallError::Source(SourceError::Invalid { .. })
        | InstallError::Mismatch(_)
        | InstallError::Metadata { .. }
        | InstallError::Verify(VerifyError::Mismatch { .. }) => ErrorKind::VerificationFailed,
        InstallError::PermissionsChanged { .. } => ErrorKind::PermissionsChanged,
        InstallError::Verify(VerifyError::Kubo { .. }) => ErrorKind::FetchFailed,
        InstallError::Source(SourceError::NotInIndex { .. })
        | InstallError::NoSuchRemote(_)
        | InstallError::RuntimeMissing { .. } => ErrorKind::NotFound,
        InstallError::AlreadyInstalled(_) => ErrorKind::AlreadyInstalled,
        InstallError::NothingToDo(_) => ErrorKind::NothingToDo,
        InstallError::NotInstalled(_) => ErrorKind::NotInstalled,
        InstallError::Busy { .. } | InstallError::RuntimeInUse { .. } => ErrorKind::Busy,
        InstallError::Mount(_) => ErrorKind::MountFailed,
        InstallError::Untrusted { .. } => ErrorKind::Untrusted,
        InstallError::Installation(_) | InstallError::Store(_) | InstallError::Internal(_) => {
            ErrorKind::Internal
        }
    };
    Error::new(kind, e.to_string())
}

/// The D-Bus error for a recording failure.
fn record_error(e: &RecordError) -> Error {
    let kind = match e {
        RecordError::NotInstalled(_) | RecordError::NotMounted(_) => ErrorKind::NotInstalled,
        RecordError::Busy(_) => ErrorKind::Busy,
        RecordError::NotRecording(_) => ErrorKind::NotFound,
        RecordError::Install(e) => return install_error(e),
        RecordError::Mount(_) => ErrorKind::MountFailed,
        RecordError::Kubo(_) => ErrorKind::FetchFailed,
    };
    Error::new(kind, e.to_string())
}
