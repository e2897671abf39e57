//! What a CID alone says about the UnixFS node it names, without fetching
//! anything: a `raw` CID is a file; an identity CID carries its whole block,
//! so an inlined `dag-pb` node (a small symlink, an empty directory) can be
//! read from the CID itself (PBNode and UnixFS `Data` protobufs). A file's
//! dag-pb node, once fetched, tells where each child's bytes lie
//! ([`file_layout`]), so that a range can be fetched block by block.

use crate::release::EntryKind;

/// Multicodec of raw blocks.
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb blocks.
pub const DAG_PB: u64 = 0x70;
/// Multihash code of the identity "hash": the CID carries the block.
pub const IDENTITY: u64 = 0x00;
/// Multihash code of SHA2-256, the only hash a release's blocks use.
pub const SHA2_256: u64 = 0x12;

/// Whether `data` is the block `cid` names: its SHA2-256 digest is the
/// CID's (a CID of any other hash is not checked here, so it is not).
pub fn is_block_of(cid: &cid::Cid, data: &[u8]) -> bool {
    use sha2::Digest;
    cid.hash().code() == SHA2_256 && sha2::Sha256::digest(data).as_slice() == cid.hash().digest()
}

/// What is known of a node from its CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub kind: EntryKind,
    /// File size, when the CID tells it.
    pub size: Option<u64>,
    /// Symlink target, when the CID tells it.
    pub target: Option<String>,
}

/// What `cid` tells of its node by itself; `None` for a hashed dag-pb node
/// (its type is in the block) or anything unreadable.
pub fn from_cid(cid: &str) -> Option<Known> {
    let cid = cid::Cid::try_from(cid).ok()?;
    let inline = cid.hash().code() == IDENTITY;
    match cid.codec() {
        RAW => Some(Known {
            kind: EntryKind::File,
            size: inline.then(|| cid.hash().digest().len() as u64),
            target: None,
        }),
        DAG_PB if inline => dag_pb_node(cid.hash().digest()),
        _ => None,
    }
}

/// The bytes of a file whose CID carries them (`raw`, identity hash: the
/// release profile inlines files of up to 32 bytes).
pub fn inline_file(cid: &str) -> Option<Vec<u8>> {
    let cid = cid::Cid::try_from(cid).ok()?;
    (cid.codec() == RAW && cid.hash().code() == IDENTITY).then(|| cid.hash().digest().to_vec())
}

/// One protobuf field: its number and, for length-delimited fields, bytes;
/// for varints, the value.
enum Field<'a> {
    Varint(u64, u64),
    Bytes(u64, &'a [u8]),
}

/// The fields of a protobuf message (varint and length-delimited wire
/// types only, as dag-pb and UnixFS use); `None` when malformed.
fn fields(mut buf: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (key, rest) = unsigned_varint::decode::u64(buf).ok()?;
        let (number, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let (value, rest) = unsigned_varint::decode::u64(rest).ok()?;
                out.push(Field::Varint(number, value));
                buf = rest;
            }
            2 => {
                let (len, rest) = unsigned_varint::decode::u64(rest).ok()?;
                let len = usize::try_from(len).ok().filter(|l| *l <= rest.len())?;
                out.push(Field::Bytes(number, &rest[..len]));
                buf = &rest[len..];
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A dag-pb block's UnixFS node: PBNode field 1 is `Data` (the UnixFS
/// message: 1 type, 2 data, 3 file size), field 2 the links.
fn dag_pb_node(block: &[u8]) -> Option<Known> {
    let node = fields(block)?;
    let data = node.iter().find_map(|f| match f {
        Field::Bytes(1, d) => Some(*d),
        _ => None,
    })?;
    let data = fields(data)?;
    let kind = data.iter().find_map(|f| match f {
        Field::Varint(1, t) => Some(*t),
        _ => None,
    })?;
    let bytes = data.iter().find_map(|f| match f {
        Field::Bytes(2, d) => Some(*d),
        _ => None,
    });
    let filesize = data.iter().find_map(|f| match f {
        Field::Varint(3, s) => Some(*s),
        _ => None,
    });
    match kind {
        1 | 5 => Some(Known {
            kind: EntryKind::Directory,
            size: None,
            target: None,
        }),
        2 => Some(Known {
            kind: EntryKind::File,
            size: filesize.or(bytes.map(|b| b.len() as u64)),
            target: None,
        }),
        4 => Some(Known {
            kind: EntryKind::Symlink,
            size: None,
            target: Some(String::from_utf8_lossy(bytes.unwrap_or_default()).into_owned()),
        }),
        _ => None,
    }
}

/// The children of a UnixFS file node: the bytes its own `Data` carries
/// come first, then each child's, in link order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    /// Bytes carried in the node itself, before the children's.
    pub inline: u64,
    /// Each child: its CID and the file bytes below it (`blocksizes`).
    pub children: Vec<(cid::Cid, u64)>,
}

/// How a dag-pb `block` of a UnixFS file (or raw node) splits its bytes
/// among its children; `None` for anything else or anything inconsistent
/// (a link count other than its `blocksizes`, a sum that overflows). The
/// block is hostile: nothing here trusts a length it has not bounded.
pub fn file_layout(block: &[u8]) -> Option<FileLayout> {
    let node = fields(block)?;
    let mut links = Vec::new();
    let mut data = None;
    for field in &node {
        match field {
            Field::Bytes(1, d) => data = Some(*d),
            Field::Bytes(2, link) => {
                let hash = fields(link)?.into_iter().find_map(|f| match f {
                    Field::Bytes(1, h) => Some(h),
                    _ => None,
                })?;
                links.push(cid::Cid::try_from(hash).ok()?);
            }
            _ => {}
        }
    }
    let data = fields(data?)?;
    let mut kind = None;
    let mut inline = 0u64;
    let mut sizes = Vec::new();
    for field in data {
        match field {
            Field::Varint(1, t) => kind = Some(t),
            Field::Bytes(2, d) => inline = d.len() as u64,
            Field::Varint(4, size) => sizes.push(size),
            // `blocksizes` written packed.
            Field::Bytes(4, mut packed) => {
                while !packed.is_empty() {
                    let (size, rest) = unsigned_varint::decode::u64(packed).ok()?;
                    sizes.push(size);
                    packed = rest;
                }
            }
            _ => {}
        }
    }
    // UnixFS `Raw` (0) or `File` (2).
    if !matches!(kind, Some(0 | 2)) || sizes.len() != links.len() {
        return None;
    }
    sizes
        .iter()
        .try_fold(inline, |sum, size| sum.checked_add(*size))?;
    Some(FileLayout {
        inline,
        children: links.into_iter().zip(sizes).collect(),
    })
}

/// One link of a plain UnixFS directory node: name, CID and `Tsize` (the
/// bytes below it; for a raw child, its size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryLink {
    pub name: String,
    pub cid: cid::Cid,
    pub tsize: u64,
}

/// The links of a dag-pb `block` that is a plain UnixFS directory (Data
/// type 1); `None` for anything else (a HAMT shard, a file, a name that is
/// not UTF-8, a malformed node).
pub fn directory_links(block: &[u8]) -> Option<Vec<DirectoryLink>> {
    let node = fields(block)?;
    let data = node.iter().find_map(|f| match f {
        Field::Bytes(1, d) => Some(*d),
        _ => None,
    })?;
    let kind = fields(data)?.into_iter().find_map(|f| match f {
        Field::Varint(1, t) => Some(t),
        _ => None,
    });
    if kind != Some(1) {
        return None;
    }
    let mut links = Vec::new();
    for field in &node {
        let Field::Bytes(2, link) = field else {
            continue;
        };
        let (mut hash, mut name, mut tsize) = (None, None, 0);
        for f in fields(link)? {
            match f {
                Field::Bytes(1, h) => hash = Some(cid::Cid::try_from(h).ok()?),
                Field::Bytes(2, n) => name = Some(std::str::from_utf8(n).ok()?.to_string()),
                Field::Varint(3, t) => tsize = t,
                _ => {}
            }
        }
        links.push(DirectoryLink {
            name: name.unwrap_or_default(),
            cid: hash?,
            tsize,
        });
    }
    Some(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_files_are_read_from_their_cid_and_hashed_ones_are_not() {
        // CIDv1, raw, identity hash of no bytes: the empty file.
        assert_eq!(inline_file("bafkqaaa"), Some(Vec::new()));
        // `printf hello | ipfs add --cid-version=1 --inline`: raw, identity.
        assert_eq!(inline_file("bafkqablimvwgy3y"), Some(b"hello".to_vec()));
        // A hashed raw block is not inline.
        assert_eq!(
            inline_file("bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"),
            None
        );
        assert_eq!(inline_file("not a cid"), None);
    }

    #[test]
    fn cids_tell_what_they_can() {
        // Made by Kubo 0.43.1 (`add --cid-version=1 --raw-leaves --inline
        // --inline-limit=32`): "hello\n", a symlink to "a", a 100-byte file.
        assert_eq!(
            from_cid("bafkqabtimvwgy3yk"),
            Some(Known {
                kind: EntryKind::File,
                size: Some(6),
                target: None
            })
        );
        assert_eq!(
            from_cid("bafyaabykaueaieqbme"),
            Some(Known {
                kind: EntryKind::Symlink,
                size: None,
                target: Some("a".into())
            })
        );
        let raw = from_cid("bafkreigymvycnibrglvfyy7ypp34g2sz3yuggwu2k36gxjewitpoxsgwy4").unwrap();
        assert_eq!((raw.kind, raw.size), (EntryKind::File, None));
        // A hashed dag-pb node: its type is in the block.
        assert_eq!(
            from_cid("bafybeiecqizdhucnj5ty4wbiweadzj73xgaw726h265g4xujfiz2n5yahe"),
            None
        );
        assert_eq!(from_cid("not a cid"), None);
    }

    /// The root of a 700,000-byte file made by Kubo 0.43.1 (`add
    /// --cid-version=1 --raw-leaves --chunker=size-262144`): three raw
    /// leaves.
    const FILE_ROOT: &str = "122c0a2401551220737b0671b0d28d4cb9ca2bcc4b2ec40696586dbb6b21aa501a7658dc445040c5120018808010122c0a2401551220e764c4033d13a301cbbf6aea6970ca8b899179ee7be4396e7ff8b8c2fa2eae8e120018808010122c0a2401551220b0beb34399ff1cd32dab004259861f97489a6c081fea7564165c1d8a8e643378120018e0dc0a0a12080218e0dc2a208080102080801020e0dc0a";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_file_node_tells_where_each_childs_bytes_lie() {
        let layout = file_layout(&hex(FILE_ROOT)).unwrap();
        assert_eq!(layout.inline, 0);
        let children: Vec<(String, u64)> = layout
            .children
            .iter()
            .map(|(c, s)| (c.to_string(), *s))
            .collect();
        // `ipfs refs` of the root, and the chunker's sizes.
        assert_eq!(
            children,
            vec![
                (
                    "bafkreidtpmdhdmgsrvgltsrlzrfs5ragszmg3o3legvfagtwldoeiucayu".into(),
                    262144
                ),
                (
                    "bafkreihhmtcagpituma4xp3k5juxbsulrgixt3t34q4w477yxdbpulvory".into(),
                    262144
                ),
                (
                    "bafkreifqx2zuhgp7dtjs3kyaijmymh4xjcngyca75j2wifs4dwfi4zbtpa".into(),
                    175712
                ),
            ]
        );
    }

    #[test]
    fn a_node_that_is_not_a_consistent_file_has_no_layout() {
        let block = hex(FILE_ROOT);
        // Its first link (46 bytes) cut off: two links, three block sizes.
        assert_eq!(file_layout(&block[46..]), None);
        // Cut short inside its Data.
        assert_eq!(file_layout(&block[..block.len() - 3]), None);
        // A directory node: Data { Type: 1 }.
        assert_eq!(file_layout(&[0x0a, 0x02, 0x08, 0x01]), None);
        // Block sizes whose sum overflows.
        let mut data = vec![0x08, 0x02];
        for _ in 0..2 {
            data.push(0x20);
            data.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        }
        let link = &block[..46];
        let mut node = [link, link].concat();
        node.push(0x0a);
        node.push(data.len() as u8);
        node.extend(&data);
        assert_eq!(file_layout(&node), None);
        // The same two links with sizes that fit: a layout.
        let mut data = vec![0x08, 0x02, 0x20, 0x05, 0x20, 0x07];
        let mut node = [link, link].concat();
        node.extend([0x0a, data.len() as u8]);
        node.append(&mut data);
        assert_eq!(file_layout(&node).map(|l| l.children.len()), Some(2));
    }

    #[test]
    fn malformed_protobufs_are_unknown_not_a_panic() {
        for block in [
            &[0x0a, 0xff][..],
            &[0x0a, 0x05, 0x08][..],
            &[0x0b][..],
            &[0x0a, 0x02, 0x08, 0x09][..],
            &[][..],
        ] {
            assert_eq!(dag_pb_node(block), None, "{block:?}");
        }
        // Directory: Data { Type: 1 }.
        assert_eq!(
            dag_pb_node(&[0x0a, 0x02, 0x08, 0x01]).map(|k| k.kind),
            Some(EntryKind::Directory)
        );
    }
}
