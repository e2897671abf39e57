//! Following a job to its end: progress on the terminal (a bar), as plain
//! lines when not on a terminal, or as JSON lines with `--json`; Ctrl-C
//! cancels the job.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use flatipfs_dbus::proxy::{JobProxy, ManagerProxy};
use flatipfs_dbus::{Error, ErrorKind};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::exit::Failure;

/// A job's stream of `JobRemoved`, subscribed before the job is started so
/// that a job finishing at once is not missed.
pub type Removals = flatipfs_dbus::proxy::JobRemovedStream;

/// Subscribes to `JobRemoved` (before a job is started).
pub async fn subscribe(manager: &ManagerProxy<'_>) -> Result<Removals, Failure> {
    manager
        .receive_job_removed()
        .await
        .map_err(|e| Failure::from_call(e.into()))
}

/// Starts a job with `start` (a call returning the job's path), having
/// subscribed to `JobRemoved` first so that a job ending at once is not
/// missed, and follows it to its end; its details.
pub async fn start_and_follow(
    manager: &ManagerProxy<'_>,
    json: bool,
    start: impl std::future::Future<Output = Result<OwnedObjectPath, Failure>>,
) -> Result<HashMap<String, OwnedValue>, Failure> {
    let removals = subscribe(manager).await?;
    let job = start.await?;
    follow(manager, removals, job, json).await
}

/// Waits for the job at `path` to end and returns its details.
pub async fn follow(
    manager: &ManagerProxy<'_>,
    mut removals: Removals,
    path: OwnedObjectPath,
    json: bool,
) -> Result<HashMap<String, OwnedValue>, Failure> {
    let call = |e: zbus::Error| Failure::from_call(Error::from(e));
    // Uncached: a job's properties change in separate signals, and the end
    // result must be read whole.
    let job = JobProxy::builder(manager.inner().connection())
        .path(path.clone())
        .map_err(call)?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(call)?;
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar
    });
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_line = String::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut cancelling = false;
    loop {
        tokio::select! {
            removed = removals.next() => {
                let Some(removed) = removed else { break };
                if let Ok(args) = removed.args() {
                    if args.path == path { break }
                }
            }
            _ = tick.tick() => {
                // A job that ended before we subscribed still reads as finished.
                let state = match job.state().await {
                    Ok(state) => state,
                    Err(e) => {
                        // The job object is gone before it said it finished:
                        // the daemon stopped (or restarted) under it.
                        if let Some(bar) = &bar {
                            bar.abandon();
                        }
                        return Err(Failure::unreachable(&format!(
                            "the job went away without finishing ({e}); flatipfsd stopped while it ran. Apps stay installed or absent: see `flatipfsctl list`"
                        )));
                    }
                };
                let status = job.status().await.unwrap_or_default();
                let (done, total) = (job.bytes_done().await.unwrap_or(0), job.bytes_total().await.unwrap_or(0));
                if let Some(bar) = &bar {
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(crate::output::displayable(&status).into_owned());
                } else {
                    let line = if json {
                        json!({"progress": {"status": status, "bytes_done": done, "bytes_total": total}}).to_string()
                    } else if total > 0 {
                        format!("{status}: {done}/{total} bytes")
                    } else {
                        status.clone()
                    };
                    if line != last_line {
                        if json { println!("{line}") } else { eprintln!("{line}") }
                        last_line = line;
                    }
                }
                if state == "finished" { break }
            }
            _ = &mut ctrl_c, if !cancelling => {
                cancelling = true;
                eprintln!("cancelling…");
                if let Err(e) = job.cancel().await {
                    eprintln!("cannot cancel: {e}");
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let result = job.result().await.map_err(call)?;
    if result != "success" {
        let name = job.error_name().await.unwrap_or_default();
        let message = job.error_message().await.unwrap_or_default();
        let kind = ErrorKind::from_dbus_name(&name).unwrap_or(ErrorKind::Internal);
        return Err(Failure::from_call(Error::new(kind, message)));
    }
    job.details().await.map_err(call)
}

/// A detail as text.
pub fn text(details: &HashMap<String, OwnedValue>, key: &str) -> String {
    details
        .get(key)
        .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
        .unwrap_or_default()
}

/// A detail as a number.
pub fn number(details: &HashMap<String, OwnedValue>, key: &str) -> u64 {
    details
        .get(key)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

/// What `flatipfsctl jobs` shows of one job.
#[derive(Debug, serde::Serialize)]
pub struct Described {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub app: String,
    pub state: String,
    pub status: String,
    pub progress: f64,
    pub result: String,
}

fn job_proxy_builder<'a>(
    manager: &'a ManagerProxy<'_>,
    path: OwnedObjectPath,
) -> Result<zbus::proxy::Builder<'a, JobProxy<'a>>, Failure> {
    JobProxy::builder(manager.inner().connection())
        .path(path)
        .map(|b| b.cache_properties(zbus::proxy::CacheProperties::No))
        .map_err(|e| Failure::from_call(Error::from(e)))
}

/// Reads a job's properties.
pub async fn describe(
    manager: &ManagerProxy<'_>,
    path: OwnedObjectPath,
) -> Result<Described, Failure> {
    let call = |e: zbus::Error| Failure::from_call(Error::from(e));
    let job = job_proxy_builder(manager, path)?
        .build()
        .await
        .map_err(call)?;
    Ok(Described {
        id: job.id().await.map_err(call)?,
        kind: job.kind().await.map_err(call)?,
        app: job.app().await.map_err(call)?,
        state: job.state().await.map_err(call)?,
        status: job.status().await.map_err(call)?,
        progress: job.progress().await.map_err(call)?,
        result: job.result().await.map_err(call)?,
    })
}

/// Cancels job number `id`.
pub async fn cancel(manager: &ManagerProxy<'_>, id: u64) -> Result<(), Failure> {
    let path = OwnedObjectPath::try_from(format!("{}/job/{id}", flatipfs_dbus::MANAGER_PATH))
        .map_err(|e| Failure::usage(format!("invalid job number {id}: {e}")))?;
    let listed = manager.list_jobs().await.map_err(Failure::from_call)?;
    if !listed.contains(&path) {
        return Err(Failure::from_call(Error::new(
            ErrorKind::NotFound,
            format!("no job {id}; see `flatipfsctl jobs`"),
        )));
    }
    let job = job_proxy_builder(manager, path)?
        .build()
        .await
        .map_err(|e| Failure::from_call(Error::from(e)))?;
    job.cancel().await.map_err(Failure::from_call)
}
