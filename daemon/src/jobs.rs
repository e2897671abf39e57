//! Jobs: long operations with progress, one object each on the bus.
//!
//! A job is created (and exported) before the method that started it
//! returns, is single-use, lives on when its caller disconnects, and stays
//! readable for a grace period after it finishes. Numbers are never reused.
//! This module knows nothing of D-Bus: the `api` layer watches [`JobInfo`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flatipfs_dbus::ErrorKind;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A value in a job's `Details`.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Text(String),
    Number(u64),
}

/// Everything a client can see of a job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobInfo {
    pub id: u64,
    /// `publish`, later `install`, `update`, ...
    pub kind: String,
    /// The app concerned, when known.
    pub app: String,
    /// uid of the caller that started it.
    pub initiator: u32,
    /// `running` or `finished`.
    pub state: String,
    /// What it is doing now, for people.
    pub status: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Empty while running; then `success`, `failed` or `cancelled`.
    pub result: String,
    pub error_name: String,
    pub error_message: String,
    /// What it produced (keys documented per job type).
    pub details: BTreeMap<String, Detail>,
}

impl JobInfo {
    /// Fraction done, 0.0 to 1.0.
    pub fn progress(&self) -> f64 {
        match (self.state.as_str(), self.bytes_total) {
            ("finished", _) => 1.0,
            (_, 0) => 0.0,
            (_, total) => (self.bytes_done as f64 / total as f64).min(1.0),
        }
    }
}

/// A running job, as its worker sees it.
pub struct Job {
    info: watch::Sender<JobInfo>,
    cancel: CancellationToken,
}

impl Job {
    pub fn id(&self) -> u64 {
        self.info.borrow().id
    }

    /// The app the job concerns.
    pub fn app_id(&self) -> String {
        self.info.borrow().app.clone()
    }

    pub fn initiator(&self) -> u32 {
        self.info.borrow().initiator
    }

    /// Follows every change.
    pub fn watch(&self) -> watch::Receiver<JobInfo> {
        self.info.subscribe()
    }

    /// Fires when the job is cancelled.
    pub fn cancelled(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Asks the worker to stop.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    pub fn set_status(&self, status: &str) {
        self.info.send_modify(|i| i.status = status.to_string());
    }

    pub fn set_app(&self, app: &str) {
        self.info.send_modify(|i| i.app = app.to_string());
    }

    pub fn set_bytes(&self, done: u64, total: u64) {
        self.info.send_if_modified(|i| {
            let changed = i.bytes_done != done || i.bytes_total != total;
            i.bytes_done = done;
            i.bytes_total = total;
            changed
        });
    }

    /// Ends the job with success and its details.
    pub fn succeed(&self, details: BTreeMap<String, Detail>) {
        self.info.send_modify(|i| {
            i.state = "finished".into();
            i.status = "done".into();
            i.result = "success".into();
            i.details = details;
        });
    }

    /// Ends the job with an error (or as cancelled).
    pub fn fail(&self, kind: ErrorKind, message: &str) {
        self.info.send_modify(|i| {
            i.state = "finished".into();
            i.status = "failed".into();
            i.result = if kind == ErrorKind::Cancelled {
                "cancelled"
            } else {
                "failed"
            }
            .into();
            i.error_name = kind.dbus_name().into();
            i.error_message = message.into();
        });
    }
}

/// Runs a job's `work` to its end: its own result; `Cancelled` once
/// `cancel` fires (the work is dropped first, so its undo guards have run);
/// `Internal` if it panicked, so that no job stays `running` forever.
pub async fn run_to_end<T, F>(work: F, cancel: CancellationToken) -> Result<T, flatipfs_dbus::Error>
where
    F: std::future::Future<Output = Result<T, flatipfs_dbus::Error>> + Send + 'static,
    T: Send + 'static,
{
    use flatipfs_dbus::Error;
    let mut task = tokio::spawn(work);
    tokio::select! {
        joined = &mut task => match joined {
            Ok(result) => result,
            Err(e) => {
                let reason = match e.try_into_panic() {
                    Ok(payload) => panic_text(payload.as_ref()),
                    Err(e) => e.to_string(),
                };
                tracing::error!("a job's worker failed: {reason}");
                Err(Error::new(ErrorKind::Internal, format!("the job's worker failed: {reason}")))
            }
        },
        _ = cancel.cancelled() => {
            task.abort();
            // Returns once the work is dropped.
            let _ = task.await;
            Err(Error::new(ErrorKind::Cancelled, "cancelled"))
        }
    }
}

/// The message of a panic, if it has one.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

/// The daemon's jobs.
#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    /// Jobs running or still in their grace period, by id.
    live: std::sync::Mutex<BTreeMap<u64, Arc<Job>>>,
}

impl Jobs {
    /// A new running job.
    pub fn create(&self, kind: &str, app: &str, initiator: u32) -> Arc<Job> {
        let job = self.new_job(kind, app, initiator);
        self.live
            .lock()
            .expect("not poisoned")
            .insert(job.id(), job.clone());
        job
    }

    fn new_job(&self, kind: &str, app: &str, initiator: u32) -> Arc<Job> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (info, _) = watch::channel(JobInfo {
            id,
            kind: kind.into(),
            app: app.into(),
            initiator,
            state: "running".into(),
            status: "starting".into(),
            ..Default::default()
        });
        Arc::new(Job {
            info,
            cancel: CancellationToken::new(),
        })
    }

    /// A new running job of `kind` for `initiator`, unless that initiator
    /// already has one of that kind running: then `Err` with its id.
    /// Checked and created under one lock, so two calls cannot both pass.
    pub fn create_one_per_initiator(
        &self,
        kind: &str,
        app: &str,
        initiator: u32,
    ) -> Result<Arc<Job>, u64> {
        let mut live = self.live.lock().expect("not poisoned");
        let running = live.values().find(|j| {
            let info = j.info.borrow();
            info.kind == kind && info.initiator == initiator && info.state == "running"
        });
        if let Some(job) = running {
            return Err(job.id());
        }
        let job = self.new_job(kind, app, initiator);
        live.insert(job.id(), job.clone());
        Ok(job)
    }

    /// Ids of the jobs running or in their grace period, oldest first.
    pub fn live(&self) -> Vec<u64> {
        self.live
            .lock()
            .expect("not poisoned")
            .keys()
            .copied()
            .collect()
    }

    /// Whether job `id` has finished (or is gone).
    pub fn finished(&self, id: u64) -> bool {
        self.live
            .lock()
            .expect("not poisoned")
            .get(&id)
            .is_none_or(|j| j.watch().borrow().state == "finished")
    }

    /// Forgets a job whose object is gone.
    pub fn forget(&self, id: u64) {
        self.live.lock().expect("not poisoned").remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_worker_ends_its_job_as_failed() {
        let work = async {
            let secs: u64 = u64::MAX;
            // What `UNIX_EPOCH + Duration` did with a hostile `published`.
            let _ = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            Ok::<(), flatipfs_dbus::Error>(())
        };
        let err = run_to_end(work, CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::Internal));
        assert!(err.to_string().contains("overflow"), "{err}");
    }

    #[tokio::test]
    async fn a_cancelled_worker_is_dropped_before_the_job_ends() {
        struct Guard(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let guard = Guard(dropped.clone());
        let cancel = CancellationToken::new();
        let work = async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<(), flatipfs_dbus::Error>(())
        };
        let trigger = cancel.clone();
        tokio::spawn(async move { trigger.cancel() });
        let err = run_to_end(work, cancel).await.unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::Cancelled));
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn one_running_job_of_a_kind_per_initiator() {
        let jobs = Jobs::default();
        let first = jobs.create_one_per_initiator("refresh", "", 1000).unwrap();
        assert_eq!(
            jobs.create_one_per_initiator("refresh", "", 1000).err(),
            Some(first.id())
        );
        // Other users, and other kinds, are not held up.
        jobs.create_one_per_initiator("refresh", "", 1001).unwrap();
        jobs.create_one_per_initiator("vacuum", "", 1000).unwrap();
        // Once it has finished (still in its grace period), the next may start.
        first.succeed(BTreeMap::new());
        jobs.create_one_per_initiator("refresh", "", 1000).unwrap();
    }

    #[test]
    fn ids_are_never_reused_and_progress_is_bounded() {
        let jobs = Jobs::default();
        let a = jobs.create("publish", "", 0);
        let b = jobs.create("publish", "", 0);
        assert_eq!((a.id(), b.id()), (1, 2));
        assert_eq!(jobs.live(), [1, 2]);
        jobs.forget(1);
        assert_eq!(jobs.live(), [2]);
        assert_eq!(jobs.create("publish", "", 0).id(), 3);
        a.set_bytes(50, 100);
        assert_eq!(a.watch().borrow().progress(), 0.5);
        a.set_bytes(150, 100);
        assert_eq!(a.watch().borrow().progress(), 1.0);
        a.fail(ErrorKind::Cancelled, "stopped");
        let info = a.watch().borrow().clone();
        assert_eq!(
            (info.result.as_str(), info.state.as_str()),
            ("cancelled", "finished")
        );
    }
}
