//! Writing CAR v1 streams (content-addressed archives): how many verified
//! blocks go into Kubo in one `dag/import` call, which stores them in one
//! batch, several times faster per block than `block/put` or `add` (the
//! fetch of many small files is bounded by that per-block cost,
//! `decode.rs`).
//!
//! Only writing, of blocks the caller has already verified against their
//! CIDs: a CAR is never read from the network here.

use cid::Cid;

/// A CAR v1 holding `blocks` (CID and bytes each, in order), its first
/// block's CID as the header's one root (the format wants at least one;
/// the import does not pin it). `None` for no block.
pub fn v1(blocks: &[(Cid, &[u8])]) -> Option<Vec<u8>> {
    let (first, _) = blocks.first()?;
    let root = first.to_bytes();
    // DAG-CBOR of {"roots": [root], "version": 1}, keys in canonical
    // order (shorter first): a map of 2, "roots", an array of 1 CID (tag
    // 42, bytes with the 0x00 multibase prefix), "version", 1.
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    header.extend_from_slice(&[0x81, 0xd8, 0x2a]);
    cbor_bytes_head(&mut header, root.len() + 1);
    header.push(0x00);
    header.extend_from_slice(&root);
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    let size: usize = blocks.iter().map(|(_, data)| data.len() + 64).sum();
    let mut out = Vec::with_capacity(header.len() + 10 + size);
    varint(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    for (cid, data) in blocks {
        let cid = cid.to_bytes();
        varint(&mut out, (cid.len() + data.len()) as u64);
        out.extend_from_slice(&cid);
        out.extend_from_slice(data);
    }
    Some(out)
}

/// The head of a CBOR byte string of `len` bytes.
fn cbor_bytes_head(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=0xff => out.extend_from_slice(&[0x58, len as u8]),
        _ => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
}

/// An unsigned LEB128 varint.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_leb128() {
        let encode = |v| {
            let mut out = Vec::new();
            varint(&mut out, v);
            out
        };
        assert_eq!(encode(0), [0x00]);
        assert_eq!(encode(127), [0x7f]);
        assert_eq!(encode(128), [0x80, 0x01]);
        assert_eq!(encode(300), [0xac, 0x02]);
    }

    #[test]
    fn a_car_is_its_header_then_each_block_with_its_cid() {
        let cid: Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
            .parse()
            .unwrap();
        let car = v1(&[(cid, b"hello world")]).unwrap();
        let header_len = car[0] as usize;
        let header = &car[1..1 + header_len];
        // {"roots": [42(h'00' + cid)], "version": 1}
        let mut expected = b"\xa2\x65roots\x81\xd8\x2a\x58\x25\x00".to_vec();
        expected.extend_from_slice(&cid.to_bytes());
        expected.extend_from_slice(b"\x67version\x01");
        assert_eq!(header, expected.as_slice());
        let block = &car[1 + header_len..];
        assert_eq!(block[0] as usize, 36 + 11);
        assert_eq!(&block[1..37], cid.to_bytes().as_slice());
        assert_eq!(&block[37..], b"hello world");
        assert!(v1(&[]).is_none());
    }
}
