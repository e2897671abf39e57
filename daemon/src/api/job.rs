//! Job objects (`org.flatipfs.Manager1.Job` at `/org/flatipfs/Manager1/job/<n>`).
//!
//! [`spawn_job`] exports the object before the starting method returns, runs
//! the work, mirrors [`JobInfo`] changes as `PropertiesChanged`, emits the
//! manager's `JobRemoved` when the job ends, and removes the object after the
//! grace period.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

use flatipfs_dbus::polkit::Action;
use flatipfs_dbus::{Error, ErrorKind, MANAGER_PATH};
use tracing::warn;
use zbus::interface;
use zbus::message::Header;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use super::{authorize, ManagerObject};
use crate::jobs::{Detail, Job, JobInfo};
use crate::manager::Manager;
use crate::policy::Gate;
use crate::publish::{Outcome, Progress};

/// The object path of job `id`.
pub fn job_path(id: u64) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{MANAGER_PATH}/job/{id}")).expect("a valid object path")
}

impl Progress for Job {
    fn status(&self, status: &str) {
        self.set_status(status);
    }

    fn bytes(&self, done: u64, total: u64) {
        self.set_bytes(done, total);
    }
}

/// The `Details` of a finished publish job.
pub fn publish_details(o: &Outcome) -> BTreeMap<String, Detail> {
    let mut d = BTreeMap::new();
    let text = |s: &str| Detail::Text(s.to_string());
    d.insert("AppId".into(), text(&o.id));
    d.insert("Version".into(), text(&o.version));
    d.insert("Release".into(), text(&o.release));
    d.insert("Deploy".into(), text(&o.deploy));
    d.insert("IndexName".into(), text(&o.ipns));
    d.insert("Sequence".into(), Detail::Number(o.sequence));
    d.insert(
        "Previous".into(),
        text(o.previous.as_deref().unwrap_or_default()),
    );
    d.insert("ReleaseBytes".into(), Detail::Number(o.release_bytes));
    d.insert("SharedBytes".into(), Detail::Number(o.shared_bytes));
    d.insert("NewBytes".into(), Detail::Number(o.new_bytes));
    let e = &o.encodings;
    d.insert("PackPieces".into(), Detail::Number(e.pack_pieces));
    d.insert("PackBytes".into(), Detail::Number(e.pack_bytes));
    d.insert("Deltas".into(), Detail::Number(e.deltas));
    d.insert("DeltaBytes".into(), Detail::Number(e.delta_bytes));
    d.insert(
        "DeltaTargetBytes".into(),
        Detail::Number(e.delta_target_bytes),
    );
    d.insert(
        "EncodeMilliseconds".into(),
        Detail::Number((e.seconds * 1000.0) as u64),
    );
    d.insert("Warnings".into(), text(&o.warnings.join("\n")));
    d
}

/// One job on the bus.
pub struct JobObject {
    job: Arc<Job>,
    info: JobInfo,
    gate: Gate,
}

#[interface(name = "org.flatipfs.Manager1.Job")]
impl JobObject {
    /// Asks the job to stop. The initiator may always cancel its own job;
    /// anyone else needs polkit action `cancel-other`.
    async fn cancel(&self, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        let caller = self.gate.uid_of(&header).await.map_err(|e| {
            Error::new(
                ErrorKind::AccessDenied,
                format!("cannot identify the caller: {e}"),
            )
        })?;
        if caller != self.job.initiator() {
            authorize(&self.gate, &header, Action::CancelOther, &HashMap::new()).await?;
        }
        if self.info.state == "finished" {
            return Err(Error::new(
                ErrorKind::NothingToDo,
                "the job has finished already",
            ));
        }
        self.job.cancel();
        Ok(())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> u64 {
        self.info.id
    }
    #[zbus(property(emits_changed_signal = "const"), name = "Type")]
    fn kind(&self) -> String {
        self.info.kind.clone()
    }
    #[zbus(property)]
    fn app(&self) -> String {
        self.info.app.clone()
    }
    #[zbus(property(emits_changed_signal = "const"))]
    fn initiator(&self) -> u32 {
        self.info.initiator
    }
    #[zbus(property)]
    fn state(&self) -> String {
        self.info.state.clone()
    }
    #[zbus(property)]
    fn status(&self) -> String {
        self.info.status.clone()
    }
    #[zbus(property)]
    fn progress(&self) -> f64 {
        self.info.progress()
    }
    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        self.info.bytes_done
    }
    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        self.info.bytes_total
    }
    #[zbus(property)]
    fn result(&self) -> String {
        self.info.result.clone()
    }
    #[zbus(property)]
    fn error_name(&self) -> String {
        self.info.error_name.clone()
    }
    #[zbus(property)]
    fn error_message(&self) -> String {
        self.info.error_message.clone()
    }
    /// What the job produced; keys per job type are in docs/dbus-api.md.
    #[zbus(property)]
    fn details(&self) -> HashMap<String, OwnedValue> {
        self.info
            .details
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Detail::Text(s) => Value::from(s.as_str()),
                    Detail::Number(n) => Value::from(*n),
                };
                (k.clone(), value.try_into().expect("plain values convert"))
            })
            .collect()
    }
}

/// Emits `PropertiesChanged` for every property that differs.
async fn emit_changes(
    iface: &zbus::object_server::InterfaceRef<JobObject>,
    old: &JobInfo,
    new: &JobInfo,
) {
    let object = iface.get().await;
    let e = iface.signal_emitter();
    let mut results = Vec::new();
    if old.app != new.app {
        results.push(object.app_changed(e).await);
    }
    if old.state != new.state {
        results.push(object.state_changed(e).await);
    }
    if old.status != new.status {
        results.push(object.status_changed(e).await);
    }
    if old.bytes_done != new.bytes_done
        || old.bytes_total != new.bytes_total
        || old.state != new.state
    {
        results.push(object.progress_changed(e).await);
        results.push(object.bytes_done_changed(e).await);
        results.push(object.bytes_total_changed(e).await);
    }
    if old.result != new.result {
        results.push(object.result_changed(e).await);
    }
    if old.error_name != new.error_name {
        results.push(object.error_name_changed(e).await);
    }
    if old.error_message != new.error_message {
        results.push(object.error_message_changed(e).await);
    }
    if old.details != new.details {
        results.push(object.details_changed(e).await);
    }
    for r in results {
        if let Err(e) = r {
            warn!("cannot emit a job's PropertiesChanged: {e}");
        }
    }
}

/// Exports `job`, runs `work` in the background and returns the job's path.
pub async fn spawn_job<F>(
    connection: &zbus::Connection,
    manager: &Arc<Manager>,
    gate: Gate,
    job: Arc<Job>,
    work: F,
) -> Result<OwnedObjectPath, Error>
where
    F: Future<Output = Result<BTreeMap<String, Detail>, Error>> + Send + 'static,
{
    let path = job_path(job.id());
    // Subscribed before the work starts, so that no change (not even an
    // immediate end) is missed.
    let mut changes = job.watch();
    let object = JobObject {
        job: job.clone(),
        info: changes.borrow_and_update().clone(),
        gate,
    };
    connection
        .object_server()
        .at(&path, object)
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot export the job: {e}")))?;
    let grace = manager.grace_period();
    let id = job.id();
    let manager = manager.clone();
    // The worker: runs the work and records how it ended.
    let worker_job = job.clone();
    tokio::spawn(async move {
        let cancelled = worker_job.cancelled();
        let result = crate::jobs::run_to_end(work, cancelled).await;
        match result {
            Ok(details) => worker_job.succeed(details),
            Err(e) => worker_job.fail(e.kind().unwrap_or(ErrorKind::Internal), &e.to_string()),
        }
    });
    // The bus side: mirrors every change as PropertiesChanged, then, once
    // the final state is on the bus, emits JobRemoved, waits out the grace
    // period and removes the object.
    let connection = connection.clone();
    let job_path = path.clone();
    tokio::spawn(async move {
        let server = connection.object_server();
        let Ok(iface) = server.interface::<_, JobObject>(&job_path).await else {
            return;
        };
        while changes.changed().await.is_ok() {
            let new = changes.borrow_and_update().clone();
            let old = std::mem::replace(&mut iface.get_mut().await.info, new.clone());
            emit_changes(&iface, &old, &new).await;
            if new.state == "finished" {
                if let Ok(manager) = server.interface::<_, ManagerObject>(MANAGER_PATH).await {
                    let removed = ManagerObject::job_removed(
                        manager.signal_emitter(),
                        new.id,
                        job_path.clone(),
                        &new.result,
                        &new.error_name,
                        &new.error_message,
                    );
                    if let Err(e) = removed.await {
                        warn!("cannot emit JobRemoved: {e}");
                    }
                }
                break;
            }
        }
        tokio::time::sleep(grace).await;
        let _ = server.remove::<JobObject, _>(&job_path).await;
        manager.jobs.forget(id);
    });
    Ok(path)
}
