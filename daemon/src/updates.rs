//! Automatic updates: the policy and the daemon's own scheduler.
//!
//! The scheduler checks every installed app's remote every
//! `updates.interval` plus a random jitter, and does what the effective
//! policy says (`none`, `check`, `download`, `apply`; per-app overrides win).
//! Waits are taken in short steps against the wall clock and the last check
//! time is durable, so a machine that slept or a daemon that was stopped
//! catches up with a check soon after it is back. Updates it starts are
//! ordinary jobs (started through a [`Launcher`] the D-Bus layer provides).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::install::now;
use crate::jobs::{Detail, Job};
use crate::manager::Manager;
use crate::update::{self, UpdateOptions};

/// What automatic updates do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Nothing.
    None,
    /// Find newer releases (`AvailableVersion`), change nothing.
    Check,
    /// Also fetch them completely, without switching.
    Download,
    /// Also switch to them: the next start of the app uses the new release.
    Apply,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Check => "check",
            Policy::Download => "download",
            Policy::Apply => "apply",
        }
    }

    pub fn parse(text: &str) -> Option<Policy> {
        match text {
            "none" => Some(Policy::None),
            "check" => Some(Policy::Check),
            "download" => Some(Policy::Download),
            "apply" => Some(Policy::Apply),
            _ => None,
        }
    }
}

/// What the manager object shows of the scheduler.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SchedulerInfo {
    pub policy: String,
    /// Seconds since the epoch; 0: never.
    pub last_check: u64,
    /// Seconds since the epoch; 0: no check planned (policy `none`).
    pub next_check: u64,
}

/// Starts a job's work on the bus (the D-Bus layer exports the job object).
pub type Launcher = Arc<
    dyn Fn(
            Arc<Job>,
            std::pin::Pin<
                Box<
                    dyn std::future::Future<
                            Output = Result<BTreeMap<String, Detail>, crate::install::InstallError>,
                        > + Send,
                >,
            >,
        ) + Send
        + Sync,
>;

/// The scheduler's handle: wake it when the policy changes.
#[derive(Default)]
pub struct Scheduler {
    pub wake: Notify,
    /// Set with a wake to check at once, whatever the schedule says.
    pub force: std::sync::atomic::AtomicBool,
    pub info: std::sync::OnceLock<watch::Sender<SchedulerInfo>>,
}

/// The policy in force: set over D-Bus, else from the configuration.
pub fn daemon_policy(manager: &Manager) -> Policy {
    manager
        .store()
        .load()
        .ok()
        .and_then(|s| s.automatic_update_policy)
        .unwrap_or(manager.config().updates.policy)
}

/// When the next check is due: an interval after the last one, or soon
/// (within the jitter) when that moment has passed (catch-up).
pub fn next_check(last: u64, now: u64, interval: Duration, jitter: u64) -> u64 {
    let due = last.saturating_add(interval.as_secs().max(1));
    due.max(now) + jitter
}

/// Runs the scheduler until the daemon stops.
pub async fn run(manager: Arc<Manager>, launcher: Launcher) {
    let info = manager
        .scheduler
        .info
        .get_or_init(|| watch::channel(SchedulerInfo::default()).0)
        .clone();
    loop {
        let config = manager.config();
        let policy = daemon_policy(&manager);
        let last = manager
            .store()
            .load()
            .map(|s| s.last_automatic_check)
            .unwrap_or(0);
        let any_app_policy = manager
            .store()
            .load()
            .map(|s| {
                s.apps
                    .values()
                    .any(|a| a.update_policy.is_some_and(|p| p != Policy::None))
            })
            .unwrap_or(false);
        let active = policy != Policy::None || any_app_policy;
        let jitter = match config.updates.jitter.as_secs() {
            0 => 0,
            j => fastrand::u64(0..=j),
        };
        let next = if active {
            next_check(last, now(), config.updates.interval, jitter)
        } else {
            0
        };
        info.send_if_modified(|i| {
            let new = SchedulerInfo {
                policy: policy.as_str().to_string(),
                last_check: last,
                next_check: next,
            };
            let changed = *i != new;
            *i = new;
            changed
        });
        // Wait in short steps against the wall clock (a suspended machine
        // does not advance tokio's clock), or until woken.
        loop {
            if active && now() >= next {
                break;
            }
            let step = if active {
                Duration::from_secs((next.saturating_sub(now())).clamp(1, 30))
            } else {
                Duration::from_secs(30)
            };
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = manager.scheduler.wake.notified() => break,
            }
            if !active {
                break;
            }
        }
        let forced = manager
            .scheduler
            .force
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        if !forced && (!active || now() < next) {
            continue;
        }
        check_all(&manager, &launcher).await;
    }
}

/// One automatic check of every app, and what the policies say to do.
pub async fn check_all(manager: &Arc<Manager>, launcher: &Launcher) {
    let daemon = daemon_policy(manager);
    info!(policy = daemon.as_str(), "automatic update check");
    let found = match update::refresh(manager, None).await {
        Ok(found) => found,
        Err(e) => {
            warn!("automatic update check failed: {e}");
            Vec::new()
        }
    };
    for problem in crate::catalog::refresh_all(manager, None).await {
        warn!("automatic check: {problem}");
    }
    if let Err(e) = update::record_automatic_check(manager, now()).await {
        warn!("cannot record the automatic check: {e}");
    }
    let Ok(state) = manager.store().load() else {
        return;
    };
    for id in found {
        let Some(record) = state.apps.get(&id) else {
            continue;
        };
        let policy = record.update_policy.unwrap_or(daemon);
        let options = match policy {
            Policy::None | Policy::Check => continue,
            Policy::Download => UpdateOptions {
                download_only: true,
                ..Default::default()
            },
            Policy::Apply => UpdateOptions::default(),
        };
        let job = manager.jobs.create("update", &id, 0);
        let claim = match manager.apps.claim(&id, job.id()) {
            Ok(claim) => claim,
            Err(holder) => {
                manager.jobs.forget(job.id());
                info!(app = %id, "busy with job {holder}; the automatic update waits for the next check");
                continue;
            }
        };
        let worker = manager.clone();
        let worker_job = job.clone();
        let work = Box::pin(async move {
            let _claim = claim;
            update::update(&worker, &id, options, worker_job, true).await
        });
        launcher(job, work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip() {
        for p in [Policy::None, Policy::Check, Policy::Download, Policy::Apply] {
            assert_eq!(Policy::parse(p.as_str()), Some(p));
        }
        assert_eq!(Policy::parse("always"), None);
    }

    #[test]
    fn the_next_check_follows_the_last_or_catches_up() {
        let hour = Duration::from_secs(3600);
        // On time: an interval after the last check, plus jitter.
        assert_eq!(next_check(1000, 1500, hour, 7), 1000 + 3600 + 7);
        // Missed (the machine slept): right away, plus jitter.
        assert_eq!(next_check(1000, 9000, hour, 7), 9007);
        // Never checked: now.
        assert_eq!(next_check(0, 50_000, hour, 0), 50_000);
    }
}
