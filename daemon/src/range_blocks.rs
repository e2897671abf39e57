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
//! The DAG is hostile: a node larger than [`MAX_NODE`], a walk deeper than
//! [`MAX_DEPTH`] or one that reaches more than [`MAX_BLOCKS`] blocks stops
//! with [`RangeError::Unwalkable`], and [`read`] falls back to `cat`.

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
                    let block = kubo.block_get(&cid.to_string(), MAX_NODE).await;
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
            fetches.spawn(async move { kubo.block_fetch(&leaf.to_string()).await });
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
