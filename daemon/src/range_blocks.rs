//! Fetching exactly the blocks behind a byte range of a UnixFS file.
//!
//! Kubo's `cat` reads ahead: besides the blocks of the range it is asked
//! for, it asks the network for the siblings that follow, and cancels them
//! when the call ends. Two of our calls that want the same block at once,
//! one of them cancelling, can leave that block wanted by nobody on the
//! serving peer while our node believes it asked (measured: a lazy read of
//! a startup range hung for 10 s, and every new read of it with it, until
//! the pack brought the block; ipfs/kubo#4674 is the family of bugs). So
//! lazy reads and the startup set do not fetch through `cat`: this walks
//! the file's DAG itself. Each dag-pb node on the way is fetched
//! (`block/get`; Kubo checks it against its CID) and parsed
//! ([`unixfs::file_layout`]); only the leaves under the range are fetched
//! (`block/stat`: made local, not sent back); every call runs to its end.
//! Readers then take the bytes from local blocks (`cat` offline).
//!
//! Requests for one block never overlap: a fetch of a block already on its
//! way waits for it, then finds it local ([`one_at_a_time`]). Several
//! requests for one CID at once (two startup ranges of one file share its
//! root) are what stranded blocks with exact fetches too (2 of 240 ranges
//! in about 1 run of 8 on the LibreOffice benchmark, before this).
//!
//! The DAG is hostile: a node larger than [`MAX_NODE`], a walk deeper than
//! [`MAX_DEPTH`] or one that reaches more than [`MAX_BLOCKS`] blocks stops
//! with [`RangeError::Unwalkable`], and [`read`] falls back to `cat`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use cid::Cid;
use tokio::task::JoinSet;

use crate::kubo::{Client, KuboError};
use crate::unixfs;

/// The largest dag-pb node read (Kubo's own block limit is 2 MiB).
pub const MAX_NODE: u64 = 2 << 20;
/// Levels of dag-pb nodes below a file's root: a balanced DAG of 174
/// links per node holds petabytes in 6.
pub const MAX_DEPTH: usize = 8;
/// Blocks one walk may fetch: a 4 MiB read window is 8 to 32 buzhash
/// leaves; a DAG of tiny leaves is read through `cat` instead.
pub const MAX_BLOCKS: usize = 1024;

/// Multicodec of raw blocks.
const RAW: u64 = 0x55;
/// Multicodec of dag-pb blocks.
const DAG_PB: u64 = 0x70;
/// Multihash code of the identity "hash": the CID carries the block.
const IDENTITY: u64 = 0x00;

/// How long the first request for a block may wait before it is dropped
/// and asked again; each retry waits twice as long as the one before.
const FIRST_PATIENCE: Duration = Duration::from_secs(1);

/// Runs `request` (of one block) until it answers, dropping it and asking
/// again after [`FIRST_PATIENCE`], then twice as long each time; the
/// caller bounds the whole. A request nobody answers can be a want the
/// serving peer dropped while our node still counts it as sent (measured:
/// 2 of 240 startup ranges stuck until the pack brought their blocks, in
/// about 1 run of 10): dropping the only request for it cancels the want,
/// and the next one is sent afresh.
async fn patiently<T, F: Future<Output = Result<T, KuboError>>>(
    mut request: impl FnMut() -> F,
) -> Result<T, KuboError> {
    let mut patience = FIRST_PATIENCE;
    loop {
        if let Ok(answer) = tokio::time::timeout(patience, request()).await {
            return answer;
        }
        tracing::debug!("a block request unanswered for {patience:?}: asking again");
        patience = patience.saturating_mul(2);
    }
}

/// The blocks this daemon is fetching, each with the lock its fetch holds.
static IN_FLIGHT: LazyLock<Mutex<HashMap<Cid, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// Runs `fetch` of block `cid` once no other fetch of it runs in this
/// daemon (the one before made it local: this one then costs a local read).
async fn one_at_a_time<T>(cid: Cid, fetch: impl Future<Output = T>) -> T {
    let lock = IN_FLIGHT
        .lock()
        .expect("not poisoned")
        .entry(cid)
        .or_default()
        .clone();
    let out = {
        let _turn = lock.lock().await;
        fetch.await
    };
    let mut in_flight = IN_FLIGHT.lock().expect("not poisoned");
    // Ours and the map's: nobody waits for it any more.
    if Arc::strong_count(&lock) == 2 {
        in_flight.remove(&cid);
    }
    out
}

/// Why a range's blocks were not fetched.
#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error(transparent)]
    Kubo(#[from] KuboError),
    #[error("the DAG of {cid} cannot be walked block by block: {why}")]
    Unwalkable { cid: String, why: String },
}

/// Makes local every block that holds bytes `[offset, offset + length)` of
/// file `cid`, `concurrency` calls at a time; returns the bytes of the
/// leaves fetched (whole blocks: a little more than `length`).
pub async fn fetch(
    kubo: &Client,
    cid: &str,
    offset: u64,
    length: u64,
    concurrency: usize,
) -> Result<u64, RangeError> {
    let unwalkable = |why: String| RangeError::Unwalkable {
        cid: cid.to_string(),
        why,
    };
    let root = Cid::try_from(cid).map_err(|e| unwalkable(e.to_string()))?;
    let end = offset.saturating_add(length);
    let concurrency = concurrency.max(1);
    let mut leaves: Vec<Cid> = Vec::new();
    // Nodes to read at the next level, each with the range of its own
    // bytes wanted.
    let mut level = vec![(root, offset, end)];
    for _ in 0..=MAX_DEPTH {
        let mut nodes = Vec::new();
        for (cid, start, end) in level.drain(..) {
            match (cid.codec(), cid.hash().code()) {
                (_, IDENTITY) => {}
                (RAW, _) => leaves.push(cid),
                (DAG_PB, _) => nodes.push((cid, start, end)),
                (codec, _) => return Err(unwalkable(format!("codec {codec:#x} is not UnixFS"))),
            }
        }
        if nodes.is_empty() {
            break;
        }
        let mut reads = JoinSet::new();
        let mut pending = nodes.into_iter();
        loop {
            while reads.len() < concurrency {
                let Some((cid, start, end)) = pending.next() else {
                    break;
                };
                let kubo = kubo.clone();
                reads.spawn(async move {
                    let name = cid.to_string();
                    let get = patiently(|| kubo.block_get(&name, MAX_NODE));
                    let block = one_at_a_time(cid, get).await;
                    (cid, start, end, block)
                });
            }
            let Some(done) = reads.join_next().await else {
                break;
            };
            let (node, start, end, block) = done.expect("range reads do not panic");
            let layout = unixfs::file_layout(&block?)
                .ok_or_else(|| unwalkable(format!("node {node} is not a UnixFS file node")))?;
            level.extend(children_in_range(layout, start, end));
            if leaves.len() + level.len() > MAX_BLOCKS {
                return Err(unwalkable(format!(
                    "more than {MAX_BLOCKS} blocks hold {length} bytes"
                )));
            }
        }
    }
    if !level.is_empty() {
        return Err(unwalkable(format!("deeper than {MAX_DEPTH} levels")));
    }
    let mut fetches = JoinSet::new();
    let mut pending = leaves.into_iter();
    let mut bytes = 0u64;
    loop {
        while fetches.len() < concurrency {
            let Some(leaf) = pending.next() else { break };
            let kubo = kubo.clone();
            fetches.spawn(async move {
                let name = leaf.to_string();
                one_at_a_time(leaf, patiently(|| kubo.block_fetch(&name))).await
            });
        }
        let Some(done) = fetches.join_next().await else {
            break;
        };
        bytes += done.expect("block fetches do not panic")?;
    }
    Ok(bytes)
}

/// The children of a node that hold some of its bytes `[start, end)`, each
/// with the part of its own bytes wanted.
fn children_in_range(
    layout: unixfs::FileLayout,
    start: u64,
    end: u64,
) -> impl Iterator<Item = (Cid, u64, u64)> {
    // `file_layout` checked that the sizes add up without overflow.
    let mut position = layout.inline;
    layout
        .children
        .into_iter()
        .filter_map(move |(child, size)| {
            let (from, to) = (position, position + size);
            position = to;
            (from < end && to > start).then(|| (child, start.max(from) - from, end.min(to) - from))
        })
}

/// Bytes `[offset, offset + length)` of file `cid` (the caller keeps the
/// range within the file): from local blocks when they are all there, else
/// after [`fetch`]ing exactly the missing ones; a DAG that cannot be walked
/// block by block is read through `cat`.
pub async fn read(
    kubo: &Client,
    cid: &str,
    offset: u64,
    length: u64,
    concurrency: usize,
) -> Result<Vec<u8>, KuboError> {
    if let Ok(bytes) = kubo.cat_range_local(cid, offset, length).await {
        if bytes.len() as u64 == length {
            return Ok(bytes);
        }
    }
    tracing::debug!(%cid, offset, length, "read: blocks missing, fetching them");
    match fetch(kubo, cid, offset, length, concurrency).await {
        Ok(_) => kubo.cat_range_local(cid, offset, length).await,
        Err(RangeError::Kubo(e)) => Err(e),
        Err(RangeError::Unwalkable { .. }) => kubo.cat_range(cid, offset, length).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(inline: u64, sizes: &[u64]) -> unixfs::FileLayout {
        // Any CIDs will do: the test tells children apart by position.
        let cids = [
            "bafkreidtpmdhdmgsrvgltsrlzrfs5ragszmg3o3legvfagtwldoeiucayu",
            "bafkreihhmtcagpituma4xp3k5juxbsulrgixt3t34q4w477yxdbpulvory",
            "bafkreifqx2zuhgp7dtjs3kyaijmymh4xjcngyca75j2wifs4dwfi4zbtpa",
        ];
        unixfs::FileLayout {
            inline,
            children: sizes
                .iter()
                .zip(cids)
                .map(|(size, cid)| (Cid::try_from(cid).unwrap(), *size))
                .collect(),
        }
    }

    fn wanted(layout: unixfs::FileLayout, start: u64, end: u64) -> Vec<(usize, u64, u64)> {
        let order: Vec<Cid> = layout.children.iter().map(|(c, _)| *c).collect();
        children_in_range(layout, start, end)
            .map(|(cid, from, to)| (order.iter().position(|c| *c == cid).unwrap(), from, to))
            .collect()
    }

    #[tokio::test]
    async fn a_request_left_unanswered_is_dropped_and_asked_again() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let attempts = AtomicUsize::new(0);
        let answer = patiently(|| {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt == 0 {
                    // The want the peer dropped: no answer, ever.
                    std::future::pending::<()>().await;
                }
                Ok::<_, KuboError>(attempt)
            }
        })
        .await
        .unwrap();
        assert_eq!(answer, 1, "the second request's answer");
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetches_of_one_block_take_turns_and_of_others_do_not() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let block = |s: &str| Cid::try_from(s).unwrap();
        let (a, b) = (
            block("bafkreidtpmdhdmgsrvgltsrlzrfs5ragszmg3o3legvfagtwldoeiucayu"),
            block("bafkreihhmtcagpituma4xp3k5juxbsulrgixt3t34q4w477yxdbpulvory"),
        );
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let fetch = |cid| {
            let (running, most) = (running.clone(), most.clone());
            tokio::spawn(one_at_a_time(cid, async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }))
        };
        let same: Vec<_> = (0..4).map(|_| fetch(a)).collect();
        for task in same {
            task.await.unwrap();
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "one fetch of a block at a time"
        );
        assert!(
            IN_FLIGHT.lock().unwrap().get(&a).is_none(),
            "forgotten once done"
        );
        // Fetches of two blocks run together: each waits for the other.
        let both = Arc::new(tokio::sync::Barrier::new(2));
        let meet = |cid| {
            let both = both.clone();
            tokio::spawn(one_at_a_time(cid, async move {
                both.wait().await;
            }))
        };
        let together = async {
            let (x, y) = (meet(a), meet(b));
            x.await.unwrap();
            y.await.unwrap();
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), together)
            .await
            .expect("fetches of two blocks ran one after the other");
    }

    #[test]
    fn only_the_children_under_a_range_are_wanted_each_with_its_own_part() {
        let sizes = [100, 100, 50];
        // Inside the first child.
        assert_eq!(wanted(layout(0, &sizes), 10, 20), vec![(0, 10, 20)]);
        // Across the first boundary: the end of one, the start of the next.
        assert_eq!(
            wanted(layout(0, &sizes), 90, 110),
            vec![(0, 90, 100), (1, 0, 10)]
        );
        // A range ending exactly where a child starts does not want it.
        assert_eq!(wanted(layout(0, &sizes), 0, 100), vec![(0, 0, 100)]);
        // The whole file.
        assert_eq!(
            wanted(layout(0, &sizes), 0, 250),
            vec![(0, 0, 100), (1, 0, 100), (2, 0, 50)]
        );
        // Bytes the node carries itself come first and need no child.
        assert_eq!(wanted(layout(30, &sizes), 0, 30), vec![]);
        assert_eq!(
            wanted(layout(30, &sizes), 25, 140),
            vec![(0, 0, 100), (1, 0, 10)]
        );
        // Past the end: nothing.
        assert_eq!(wanted(layout(0, &sizes), 250, 300), vec![]);
    }
}
