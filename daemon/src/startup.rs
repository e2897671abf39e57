//! Getting a release's startup set ready before the rest of it.
//!
//! A release may name the byte ranges its app reads first (`publish
//! --startup-set`, recorded by `recording`). An install starts fetching
//! them ([`StartupPrefetch::start`]) as soon as it has the checked
//! manifest, alongside the binding check and the layout, and hands the
//! fetch to the background fetch, which waits for it before the rest:
//!
//! 1. the ranges' blocks, `prefetch_concurrency` ranges at a time in their
//!    first-access order, block by block (`range_blocks`: no read-ahead);
//! 2. once they are local, the ranges are read through the release's own
//!    mount, so that the kernel's page cache holds them (the mount lets it
//!    keep file pages for good): the app's first start then reads them from
//!    memory instead of paying one FUSE round trip each (measured on the
//!    LibreOffice benchmark: with every block local when the install
//!    returned, its start still took 1.1 to 1.5 s more; with the ranges
//!    read through the mount first, 0.25 to 0.3 s).
//!
//! The rest of the fetch waits while ranges keep arriving; once none has
//! for [`STARTUP_STALL`], it starts alongside them.
//!
//! Before the binding check, the ranges' CIDs are only the manifest's word:
//! what they fetch is bounded by the manifest's startup-set limits (checked
//! with the manifest: files of the release, within them, bounded in number
//! and bytes), checked against the CIDs by Kubo, and only made local;
//! nothing is read through the mount before it exists, and a failed install
//! drops the fetch.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::kubo::Client;
use crate::range_blocks::RangeError;
use crate::release::{Manifest, StartupRange};

/// The rest of a fetch waits for the startup set while its ranges keep
/// arriving; once none has for this long, it starts alongside them.
const STARTUP_STALL: Duration = Duration::from_secs(5);
/// The longest wait for one startup-set range.
const STARTUP_RANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Ranges read through the mount at once.
const WARM_CONCURRENCY: usize = 16;

/// The fetch of a release's startup set, running in its own task; dropping
/// it stops the task.
pub struct StartupPrefetch {
    /// `None` once it finished.
    task: Option<tokio::task::JoinHandle<(usize, u64)>>,
    read: watch::Receiver<usize>,
    ranges: usize,
    set: Vec<StartupRange>,
    started: Instant,
    kubo: Client,
    /// Blocks to store once the startup set is local (`store_after`).
    after: Option<Vec<u8>>,
}

impl StartupPrefetch {
    /// Starts fetching the blocks of `manifest`'s startup set; `None` when
    /// it has none.
    pub fn start(kubo: Client, manifest: &Manifest, concurrency: usize) -> Option<Self> {
        if manifest.startup_set.is_empty() {
            return None;
        }
        let (read_tx, read) = watch::channel(0usize);
        let task = tokio::spawn(prefetch_startup_set(
            kubo.clone(),
            manifest.startup_set.clone(),
            concurrency,
            read_tx,
        ));
        Some(StartupPrefetch {
            task: Some(task),
            read,
            ranges: manifest.startup_set.len(),
            set: manifest.startup_set.clone(),
            started: Instant::now(),
            kubo,
            after: None,
        })
    }

    /// Stores `car` (blocks checked already: the directory CAR's) once the
    /// startup set is local, out of its way.
    pub fn store_after(&mut self, car: Vec<u8>) {
        self.after = Some(car);
    }

    /// Waits until every range is local, then reads them through `files`
    /// (the release's mounted `files/`, when it is mounted for it); or
    /// until no range has arrived for STARTUP_STALL (the task goes on
    /// while the rest is fetched).
    pub async fn wait(&mut self, id: &str, release: &str, files: Option<&Path>) {
        let ranges = self.ranges;
        while let Some(task) = &mut self.task {
            tokio::select! {
                done = task => {
                    self.task = None;
                    let (read, bytes) = done.unwrap_or((0, 0));
                    info!(
                        "startup set {id} {release}: {read} of {ranges} ranges ({bytes} bytes of blocks) local in {:.2} s",
                        self.started.elapsed().as_secs_f64()
                    );
                    if let Some(files) = files.filter(|f| !f.as_os_str().is_empty()) {
                        let warming = Instant::now();
                        let warmed = tokio::time::timeout(STARTUP_STALL, warm(files, &self.set)).await;
                        info!(
                            "startup set {id} {release}: {} in the page cache in {:.2} s",
                            match warmed {
                                Ok(n) => format!("{n} of {ranges} ranges"),
                                Err(_) => "not all ranges".into(),
                            },
                            warming.elapsed().as_secs_f64()
                        );
                    }
                    if let Some(car) = self.after.take() {
                        crate::directory_car::store(&self.kubo, car).await;
                    }
                }
                changed = tokio::time::timeout(STARTUP_STALL, self.read.changed()) => {
                    if changed.is_err() {
                        if let Some(car) = self.after.take() {
                            crate::directory_car::store(&self.kubo, car).await;
                        }
                        info!(
                            "startup set {id} {release}: {} of {ranges} ranges local, none for {STARTUP_STALL:?}; the rest of the fetch starts alongside",
                            *self.read.borrow()
                        );
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for StartupPrefetch {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Blocks a startup range's walk fetches at once.
const RANGE_CONCURRENCY: usize = 4;

/// Fetches the blocks of the startup set's ranges, `concurrency` ranges at
/// a time in their order, so that they are local before the bulk of the
/// release; counts the ranges made local on `read` and returns (ranges,
/// bytes of blocks fetched). Failures only cost time: the pin that follows
/// fetches everything anyway.
async fn prefetch_startup_set(
    kubo: Client,
    set: Vec<StartupRange>,
    concurrency: usize,
    read: watch::Sender<usize>,
) -> (usize, u64) {
    let mut bytes = 0;
    let mut fetched = futures_util::stream::iter(set)
        .map(|range| {
            let kubo = kubo.clone();
            async move {
                let fetch = async {
                    match crate::range_blocks::fetch(
                        &kubo,
                        &range.cid,
                        range.offset,
                        range.length,
                        RANGE_CONCURRENCY,
                    )
                    .await
                    {
                        Err(RangeError::Unwalkable { .. }) => kubo
                            .read_and_discard(&range.cid, range.offset, range.length)
                            .await
                            .map_err(RangeError::from),
                        other => other,
                    }
                };
                match tokio::time::timeout(STARTUP_RANGE_TIMEOUT, fetch).await {
                    Ok(Ok(n)) => Some(n),
                    Ok(Err(e)) => {
                        debug!(path = %range.path, "startup prefetch failed: {e}");
                        None
                    }
                    Err(_) => {
                        debug!(path = %range.path, "startup prefetch timed out");
                        None
                    }
                }
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(done) = fetched.next().await {
        if let Some(n) = done {
            bytes += n;
            read.send_modify(|count| *count += 1);
        }
    }
    (*read.borrow(), bytes)
}

/// Reads the startup ranges through `files` (the release's mounted
/// `files/`; range paths are relative to its deploy directory, checked with
/// the manifest), `WARM_CONCURRENCY` at a time, and drops the bytes: the
/// kernel keeps them. Returns the ranges read; failures only cost time.
async fn warm(files: &Path, set: &[StartupRange]) -> usize {
    let Some(deploy) = files.parent() else {
        return 0;
    };
    let mut warmed = 0;
    let ranges: Vec<_> = set
        .iter()
        .map(|r| (deploy.join(&r.path), r.offset, r.length))
        .collect();
    let mut reads = futures_util::stream::iter(ranges)
        .map(|(path, offset, length)| {
            tokio::task::spawn_blocking(move || read_range(&path, offset, length))
        })
        .buffer_unordered(WARM_CONCURRENCY);
    while let Some(done) = reads.next().await {
        match done {
            Ok(Ok(())) => warmed += 1,
            Ok(Err(e)) => debug!("startup set: cannot read a range through the mount: {e}"),
            Err(_) => {}
        }
    }
    warmed
}

/// Reads `[offset, offset + length)` of `path` and drops it.
fn read_range(path: &Path, offset: u64, length: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 128 << 10];
    let mut done = 0u64;
    while done < length {
        let want = (length - done).min(buffer.len() as u64) as usize;
        let n = file.read_at(&mut buffer[..want], offset + done)?;
        if n == 0 {
            break;
        }
        done += n as u64;
    }
    Ok(())
}
