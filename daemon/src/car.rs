//! Writing CAR v1 streams (content-addressed archives): how many verified
//! blocks go into Kubo in one `dag/import` call, which stores them in one
//! batch, several times faster per block than `block/put` or `add` (the
//! fetch of many small files is bounded by that per-block cost,
//! `decode.rs`).
//!
//! Writing takes blocks the caller has already verified against their
//! CIDs. Reading ([`sections`]) is of hostile bytes (a release's directory
//! CAR, `directory_car`): it only splits them into (CID, bytes) pairs,
//! bounded, and trusts none of them; the caller checks each block's hash.

use cid::Cid;

/// The largest CAR header read (a v1 header names its roots: a few CIDs).
const MAX_HEADER: u64 = 4 << 10;
/// The largest section read: a CID and a block (Kubo's limit is 2 MiB).
const MAX_SECTION: u64 = (2 << 20) + 128;

/// Why CAR bytes cannot be split into blocks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CarError {
    #[error("the CAR is cut short or has a bad length")]
    Truncated,
    #[error("the CAR's header is larger than {MAX_HEADER} bytes")]
    HeaderTooLarge,
    #[error("a section of the CAR is larger than {MAX_SECTION} bytes")]
    SectionTooLarge,
    #[error("a section of the CAR does not start with a CID")]
    BadCid,
}

/// The blocks of CAR v1 bytes, in order: each section's CID and the bytes
/// after it. The header is skipped unread (its roots mean nothing here).
/// Nothing is checked against its CID.
pub fn sections(car: &[u8]) -> Result<Vec<(Cid, &[u8])>, CarError> {
    let (header, mut rest) = read_varint(car)?;
    if header > MAX_HEADER {
        return Err(CarError::HeaderTooLarge);
    }
    rest = rest.get(header as usize..).ok_or(CarError::Truncated)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, after) = read_varint(rest)?;
        if len > MAX_SECTION {
            return Err(CarError::SectionTooLarge);
        }
        let section = after.get(..len as usize).ok_or(CarError::Truncated)?;
        rest = &after[len as usize..];
        let mut reader = std::io::Cursor::new(section);
        let cid = Cid::read_bytes(&mut reader).map_err(|_| CarError::BadCid)?;
        out.push((cid, &section[reader.position() as usize..]));
    }
    Ok(out)
}

fn read_varint(bytes: &[u8]) -> Result<(u64, &[u8]), CarError> {
    unsigned_varint::decode::u64(bytes).map_err(|_| CarError::Truncated)
}

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

    #[test]
    fn a_car_written_here_reads_back_block_by_block() {
        let a: Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
            .parse()
            .unwrap();
        let b: Cid = "bafkreidtpmdhdmgsrvgltsrlzrfs5ragszmg3o3legvfagtwldoeiucayu"
            .parse()
            .unwrap();
        let car = v1(&[(a, b"hello world"), (b, b"")]).unwrap();
        assert_eq!(
            sections(&car).unwrap(),
            vec![(a, &b"hello world"[..]), (b, &b""[..])]
        );
    }

    #[test]
    fn hostile_car_bytes_are_refused_not_a_panic() {
        let a: Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
            .parse()
            .unwrap();
        let car = v1(&[(a, b"hello world")]).unwrap();
        // Cut anywhere inside its last section.
        for cut in car.len() - 40..car.len() {
            assert_eq!(sections(&car[..cut]), Err(CarError::Truncated), "{cut}");
        }
        // No bytes at all, a header length past the end.
        assert_eq!(sections(&[]), Err(CarError::Truncated));
        assert_eq!(sections(&[0x05, 0x00]), Err(CarError::Truncated));
        // A header or a section announced larger than the bounds.
        let mut big = Vec::new();
        varint(&mut big, MAX_HEADER + 1);
        assert_eq!(sections(&big), Err(CarError::HeaderTooLarge));
        let mut big = vec![0x00];
        varint(&mut big, MAX_SECTION + 1);
        assert_eq!(sections(&big), Err(CarError::SectionTooLarge));
        // A section that is not a CID.
        assert_eq!(
            sections(&[0x00, 0x03, 0xff, 0xff, 0xff]),
            Err(CarError::BadCid)
        );
    }
}
