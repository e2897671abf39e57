//! Fetching exactly the blocks behind a byte range of a UnixFS file.
//!
//! Kubo's `cat` reads ahead: besides the blocks of the range it is asked
//! for, it asks the network for the siblings that follow, and cancels them
//! when the call ends. So lazy reads and the startup set do not fetch
//! through `cat`: this walks the file's DAG itself. Each dag-pb node on the way is fetched
//! (`block/get`; Kubo checks it against its CID) and parsed
//! ([`unixfs::file_layout`]); only the leaves under the range are fetched
//! (`block/stat`: made local, not sent back). Readers then take the bytes
//! from local blocks (`cat` offline). On the LibreOffice benchmark, the
//! bytes bitswap received while the startup set (23 MB of ranges) was
//! fetched went from 75 MB to 45 MB.
//!
//! Blocks that never come: on that benchmark, some runs had 2 of 240
//! startup ranges wait until the pack brought their blocks, and a read of
//! them with them, whatever asked (through `cat`: 2 runs of 4; block by
//! block: 1 of 8; one request per CID at a time: 1 of 10). The cause was
//! not found; it looks like ipfs/kubo#4674's family (a want the serving
//! peer no longer holds while ours counts it as sent). So a
//! block request is also dropped and asked again when it goes unanswered
//! ([`patiently`]: 2 s, then twice as long each time): dropping the only
//! request for a block cancels its want, and the next is sent afresh. In
//! the 14 runs since, no range waited, so that retry is not yet seen at
//! work. Requests for one block never overlap ([`one_at_a_time`]): a fetch
//! of a block already on its way waits for it, then finds it local.
//!
//! The DAG is hostile: a node larger than [`MAX_NODE`], a walk deeper than
//! [`MAX_DEPTH`] or one that reaches more than [`MAX_BLOCKS`] blocks stops
//! with [`RangeError::Unwalkable`], and [`read`] falls back to `cat`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use cid::Cid;
use futures_util::{StreamExt, TryStreamExt};
use tokio::task::JoinSet;

use crate::kubo::{Client, KuboError};
use crate::unixfs::{self, DAG_PB, IDENTITY, RAW};

/// The largest dag-pb node read (Kubo's own block limit is 2 MiB).
pub const MAX_NODE: u64 = 2 << 20;
/// Levels of dag-pb nodes below a file's root: a balanced DAG of 174
/// links per node holds petabytes in 6.
pub const MAX_DEPTH: usize = 8;
/// Blocks one walk may fetch: a 4 MiB read window is 8 to 32 buzhash
/// leaves; a DAG of tiny leaves is read through `cat` instead.
pub const MAX_BLOCKS: usize = 1024;

/// How long the first request for a block may wait before it is dropped
/// and asked again; each retry waits twice as long as the one before. Not
/// shorter: a request first asks the peers it is connected to and, after
/// Kubo's provider search delay (1 s), the routing system; dropping it
/// starts that over, so a block only routing finds comes later for each
/// retry.
const FIRST_PATIENCE: Duration = Duration::from_secs(2);

/// Runs `request` (of one block) until it answers, dropping it and asking
/// again after [`FIRST_PATIENCE`], then twice as long each time (a slow
/// link still gets its block); the caller bounds the whole. See the module
/// comment for why.
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
    let concurrency = concurrency.max(1);
    let get_node = |node: Cid| {
        let kubo = kubo.clone();
        async move {
            let name = node.to_string();
            one_at_a_time(node, patiently(|| kubo.block_get(&name, MAX_NODE))).await
        }
    };
    let leaves = leaves_of_range(cid, offset, length, concurrency, get_node).await?;
    let sizes: Vec<u64> = futures_util::stream::iter(leaves)
        .map(|leaf| {
            let kubo = kubo.clone();
            async move {
                let name = leaf.to_string();
                one_at_a_time(leaf, patiently(|| kubo.block_fetch(&name))).await
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok(sizes.iter().sum())
}

/// The leaves (raw blocks) under bytes `[offset, offset + length)` of file
/// `cid`, walking its dag-pb nodes level by level, `concurrency` at a time,
/// each read with `get_node`; bounded by [`MAX_DEPTH`] and [`MAX_BLOCKS`].
async fn leaves_of_range<F>(
    cid: &str,
    offset: u64,
    length: u64,
    concurrency: usize,
    get_node: impl Fn(Cid) -> F,
) -> Result<Vec<Cid>, RangeError>
where
    F: Future<Output = Result<Vec<u8>, KuboError>> + Send + 'static,
{
    let unwalkable = |why: String| RangeError::Unwalkable {
        cid: cid.to_string(),
        why,
    };
    let root = Cid::try_from(cid).map_err(|e| unwalkable(e.to_string()))?;
    let end = offset.saturating_add(length);
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
            while reads.len() < concurrency.max(1) {
                let Some((cid, start, end)) = pending.next() else {
                    break;
                };
                let get = get_node(cid);
                reads.spawn(async move { (cid, start, end, get.await) });
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
    Ok(leaves)
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

    /// A dag-pb UnixFS file node over `children` (CID, bytes below each),
    /// and its CID.
    fn file_node(children: &[(Cid, u64)]) -> (Cid, Vec<u8>) {
        use sha2::Digest;
        let varint = |out: &mut Vec<u8>, v: u64| {
            let mut buf = unsigned_varint::encode::u64_buffer();
            out.extend_from_slice(unsigned_varint::encode::u64(v, &mut buf));
        };
        let mut data = vec![0x08, 0x02];
        data.push(0x18);
        varint(&mut data, children.iter().map(|(_, s)| s).sum());
        for (_, size) in children {
            data.push(0x20);
            varint(&mut data, *size);
        }
        let mut node = Vec::new();
        for (cid, size) in children {
            let hash = cid.to_bytes();
            let mut link = vec![0x0a];
            varint(&mut link, hash.len() as u64);
            link.extend(hash);
            link.extend([0x12, 0x00, 0x18]);
            varint(&mut link, *size);
            node.push(0x12);
            varint(&mut node, link.len() as u64);
            node.extend(link);
        }
        node.push(0x0a);
        varint(&mut node, data.len() as u64);
        node.extend(data);
        let digest = sha2::Sha256::digest(&node);
        let hash = cid::multihash::Multihash::<64>::wrap(0x12, &digest).unwrap();
        (Cid::new_v1(DAG_PB, hash), node)
    }

    /// A raw leaf's CID (its bytes are never read by the walk).
    fn leaf(n: u64) -> Cid {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(n.to_le_bytes());
        Cid::new_v1(
            RAW,
            cid::multihash::Multihash::<64>::wrap(0x12, &digest).unwrap(),
        )
    }

    /// Walks `root` over the in-memory `nodes`.
    async fn walk(
        nodes: &HashMap<Cid, Vec<u8>>,
        root: Cid,
        offset: u64,
        length: u64,
    ) -> Result<Vec<Cid>, RangeError> {
        let nodes = Arc::new(nodes.clone());
        let get = move |cid: Cid| {
            let nodes = nodes.clone();
            async move {
                nodes
                    .get(&cid)
                    .cloned()
                    .ok_or_else(|| KuboError::NotUsable(format!("no {cid}")))
            }
        };
        leaves_of_range(&root.to_string(), offset, length, 4, get).await
    }

    #[tokio::test]
    async fn a_walk_reaches_exactly_the_leaves_under_the_range_two_levels_down() {
        let leaves: Vec<Cid> = (0..6).map(leaf).collect();
        let (left, left_node) = file_node(&[(leaves[0], 100), (leaves[1], 100), (leaves[2], 100)]);
        let (right, right_node) =
            file_node(&[(leaves[3], 100), (leaves[4], 100), (leaves[5], 100)]);
        let (root, root_node) = file_node(&[(left, 300), (right, 300)]);
        let nodes: HashMap<Cid, Vec<u8>> =
            [(root, root_node), (left, left_node), (right, right_node)]
                .into_iter()
                .collect();
        assert_eq!(
            walk(&nodes, root, 250, 100).await.unwrap(),
            vec![leaves[2], leaves[3]]
        );
        assert_eq!(walk(&nodes, root, 0, 10).await.unwrap(), vec![leaves[0]]);
        assert_eq!(walk(&nodes, root, 599, 1).await.unwrap(), vec![leaves[5]]);
    }

    #[tokio::test]
    async fn hostile_dags_stop_the_walk_instead_of_fetching_without_bound() {
        let unwalkable = |r: Result<Vec<Cid>, RangeError>| match r {
            Err(RangeError::Unwalkable { why, .. }) => why,
            other => panic!("walked: {other:?}"),
        };
        // Tiny leaves: a 4 MiB window over 1-byte blocks.
        let tiny: Vec<(Cid, u64)> = (0..2 * MAX_BLOCKS as u64).map(|n| (leaf(n), 1)).collect();
        let (wide, wide_node) = file_node(&tiny);
        let nodes = [(wide, wide_node)].into_iter().collect();
        let why = unwalkable(walk(&nodes, wide, 0, 4 << 20).await);
        assert!(why.contains("more than 1024 blocks"), "{why}");
        // A chain of nodes deeper than any real file.
        let mut nodes = HashMap::new();
        let mut below = leaf(0);
        for _ in 0..=MAX_DEPTH + 1 {
            let (node, block) = file_node(&[(below, 10)]);
            nodes.insert(node, block);
            below = node;
        }
        let why = unwalkable(walk(&nodes, below, 0, 10).await);
        assert!(why.contains("deeper than"), "{why}");
        // A node that is not a file's (a directory's Data).
        let mut block = vec![0x0a, 0x02, 0x08, 0x01];
        block.shrink_to_fit();
        let digest = {
            use sha2::Digest;
            sha2::Sha256::digest(&block)
        };
        let dir = Cid::new_v1(
            DAG_PB,
            cid::multihash::Multihash::<64>::wrap(0x12, &digest).unwrap(),
        );
        let nodes = [(dir, block)].into_iter().collect();
        let why = unwalkable(walk(&nodes, dir, 0, 10).await);
        assert!(why.contains("not a UnixFS file node"), "{why}");
        // Not UnixFS at all (dag-cbor).
        let cbor = Cid::new_v1(0x71, *leaf(1).hash());
        let why = unwalkable(walk(&HashMap::new(), cbor, 0, 10).await);
        assert!(why.contains("is not UnixFS"), "{why}");
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
