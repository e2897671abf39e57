//! zstd encoding and bounded decoding of the release encodings (pack pieces
//! and deltas, `flatipfs_format::encodings`).
//!
//! Encoding is the publisher's: one frame per piece or delta, long-distance
//! matching, a delta made with the base file as its reference prefix
//! (`zstd --patch-from`). Decoding is the client's and its input is hostile:
//! before any memory is spent on output, the encoding's size is checked
//! against the bytes it claims to produce, the frame header is read and a
//! window beyond the configured limit or a declared content size other than
//! the manifest's is refused; output is then produced into a buffer of the
//! expected size and decoding stops with an error the moment it would exceed
//! it. The result still proves nothing: callers accept it only if its CID is
//! the manifest's.

use std::io::Read;

use flatipfs_format::encodings::within_ratio;

/// What decoding is allowed to spend.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// log2 of the largest window a frame may ask for.
    pub max_window_log: u32,
    /// An encoding may weigh at most this many times its output (plus
    /// frame slack).
    pub max_ratio: u64,
}

/// Why an encoding was refused or could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{encoded} bytes of encoding to produce {output} bytes: over {ratio} times")]
    Oversized {
        encoded: u64,
        output: u64,
        ratio: u64,
    },
    #[error("not a zstd frame")]
    NotZstd,
    #[error("the frame asks for a {window} byte window, over the limit of 2^{limit_log}")]
    Window { window: u64, limit_log: u32 },
    #[error("the frame declares {declared} bytes of output, the manifest {expected}")]
    ContentSize { declared: u64, expected: u64 },
    #[error("the frame produces more than the manifest's {expected} bytes")]
    TooLong { expected: u64 },
    #[error("the frame produces {got} bytes, the manifest says {expected}")]
    TooShort { got: u64, expected: u64 },
    #[error("bytes follow the frame")]
    Trailing,
    #[error("corrupt frame: {0}")]
    Corrupt(String),
}

/// What a zstd frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of window the decoder must keep.
    pub window: u64,
    /// Bytes of output, when the frame says.
    pub content_size: Option<u64>,
}

const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Reads the header of the zstd frame at the start of `data` (RFC 8878,
/// 3.1.1.1), allocating nothing.
pub fn frame_header(data: &[u8]) -> Result<FrameHeader, DecodeError> {
    if data.len() < 5 || data[..4] != MAGIC {
        return Err(DecodeError::NotZstd);
    }
    let descriptor = data[4];
    let fcs_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    if descriptor & 0x08 != 0 {
        // The reserved bit must be zero.
        return Err(DecodeError::Corrupt("reserved header bit set".into()));
    }
    let dict_id_len = [0usize, 1, 2, 4][usize::from(descriptor & 3)];
    let mut at = 5;
    let window = if single_segment {
        None
    } else {
        let byte = *data.get(at).ok_or(DecodeError::NotZstd)?;
        at += 1;
        let log = 10 + u64::from(byte >> 3);
        let base = 1u64 << log;
        Some(base + (base / 8) * u64::from(byte & 7))
    };
    at += dict_id_len;
    let fcs_len = match (fcs_flag, single_segment) {
        (0, true) => 1,
        (0, false) => 0,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let field = data
        .get(at..at + fcs_len)
        .ok_or_else(|| DecodeError::Corrupt("truncated header".into()))?;
    let mut value = 0u64;
    for (i, b) in field.iter().enumerate() {
        value |= u64::from(*b) << (8 * i);
    }
    let content_size = match fcs_len {
        0 => None,
        2 => Some(value + 256),
        _ => Some(value),
    };
    let window = match (window, content_size) {
        (Some(w), _) => w,
        (None, Some(size)) => size,
        (None, None) => return Err(DecodeError::Corrupt("no window size".into())),
    };
    Ok(FrameHeader {
        window,
        content_size,
    })
}

/// Decodes one frame producing exactly `expected` bytes; `prefix` is the
/// base file of a delta. See the module docs for the order of checks.
pub fn decode(
    encoded: &[u8],
    prefix: Option<&[u8]>,
    expected: u64,
    limits: DecodeLimits,
) -> Result<Vec<u8>, DecodeError> {
    check_size(encoded.len() as u64, expected, limits)?;
    let header = frame_header(encoded)?;
    let limit_log = limits
        .max_window_log
        .min(flatipfs_format::encodings::MAX_WINDOW_LOG);
    if header.window > 1u64 << limit_log {
        return Err(DecodeError::Window {
            window: header.window,
            limit_log,
        });
    }
    if let Some(declared) = header.content_size {
        if declared != expected {
            return Err(DecodeError::ContentSize { declared, expected });
        }
    }
    match zstd::zstd_safe::find_frame_compressed_size(encoded) {
        Ok(n) if n == encoded.len() => {}
        Ok(_) => return Err(DecodeError::Trailing),
        Err(code) => return Err(DecodeError::Corrupt(zstd_error(code))),
    }
    let capacity = usize::try_from(expected).map_err(|_| DecodeError::TooLong { expected })?;
    if header.content_size == Some(expected) {
        return decode_at_once(encoded, prefix, capacity, limit_log);
    }
    let corrupt = |e: std::io::Error| DecodeError::Corrupt(e.to_string());
    let mut decoder = match prefix {
        Some(prefix) => zstd::stream::read::Decoder::with_ref_prefix(encoded, prefix),
        None => zstd::stream::read::Decoder::with_buffer(encoded),
    }
    .map_err(corrupt)?
    .single_frame();
    decoder.window_log_max(limit_log).map_err(corrupt)?;
    let mut out = Vec::with_capacity(capacity);
    let read = decoder
        .take(expected.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(corrupt)? as u64;
    if read > expected {
        return Err(DecodeError::TooLong { expected });
    }
    if read < expected {
        return Err(DecodeError::TooShort {
            got: read,
            expected,
        });
    }
    Ok(out)
}

/// A frame declaring its size decoded in one call straight into a buffer of
/// that size (no window buffer besides); more output is an error.
fn decode_at_once(
    encoded: &[u8],
    prefix: Option<&[u8]>,
    capacity: usize,
    limit_log: u32,
) -> Result<Vec<u8>, DecodeError> {
    use zstd::zstd_safe::{DCtx, DParameter};
    let mut context = DCtx::create();
    context
        .set_parameter(DParameter::WindowLogMax(limit_log))
        .map_err(|c| DecodeError::Corrupt(zstd_error(c)))?;
    if let Some(prefix) = prefix {
        context
            .ref_prefix(prefix)
            .map_err(|c| DecodeError::Corrupt(zstd_error(c)))?;
    }
    let mut out = Vec::with_capacity(capacity);
    let written = context
        .decompress(&mut out, encoded)
        .map_err(|c| DecodeError::Corrupt(zstd_error(c)))?;
    if written != capacity {
        return Err(DecodeError::TooShort {
            got: written as u64,
            expected: capacity as u64,
        });
    }
    Ok(out)
}

/// Refuses an encoding too large for what it claims to produce, before it
/// is fetched or read.
pub fn check_size(encoded: u64, output: u64, limits: DecodeLimits) -> Result<(), DecodeError> {
    if within_ratio(encoded, output, limits.max_ratio) {
        Ok(())
    } else {
        Err(DecodeError::Oversized {
            encoded,
            output,
            ratio: limits.max_ratio,
        })
    }
}

fn zstd_error(code: usize) -> String {
    zstd::zstd_safe::get_error_name(code).to_string()
}

/// How the publisher encodes.
#[derive(Debug, Clone, Copy)]
pub struct EncodeSettings {
    /// zstd level (1–22).
    pub level: i32,
    /// log2 of the largest window a frame may use.
    pub window_log: u32,
}

/// The smallest window log covering `bytes`, within zstd's and `max`.
pub fn window_log_for(bytes: u64, max: u32) -> u32 {
    let needed = 64 - bytes.max(1).saturating_sub(1).leading_zeros();
    needed.clamp(flatipfs_format::encodings::MIN_WINDOW_LOG, max)
}

/// One frame holding `data` (a pack piece), its size in the header.
pub fn encode(data: &[u8], settings: EncodeSettings) -> std::io::Result<Vec<u8>> {
    encode_with(data, None, settings)
}

/// One frame producing `target` from `base` (a delta).
pub fn encode_delta(
    base: &[u8],
    target: &[u8],
    settings: EncodeSettings,
) -> std::io::Result<Vec<u8>> {
    encode_with(target, Some(base), settings)
}

fn encode_with(
    data: &[u8],
    prefix: Option<&[u8]>,
    settings: EncodeSettings,
) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use zstd::zstd_safe::CParameter;
    let span = data.len() as u64 + prefix.map_or(0, |p| p.len() as u64);
    let window_log = window_log_for(span, settings.window_log);
    let mut out = Vec::new();
    let mut encoder = match prefix {
        Some(prefix) => {
            zstd::stream::write::Encoder::with_ref_prefix(&mut out, settings.level, prefix)?
        }
        None => zstd::stream::write::Encoder::new(&mut out, settings.level)?,
    };
    encoder.set_pledged_src_size(Some(data.len() as u64))?;
    encoder.include_contentsize(true)?;
    encoder.include_checksum(false)?;
    encoder.set_parameter(CParameter::WindowLog(window_log))?;
    encoder.set_parameter(CParameter::EnableLongDistanceMatching(true))?;
    encoder.write_all(data)?;
    encoder.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_window_log: 20,
        max_ratio: 2,
    };
    const SETTINGS: EncodeSettings = EncodeSettings {
        level: 3,
        window_log: 20,
    };

    fn sample(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i / 97) as u8)
            .collect()
    }

    #[test]
    fn a_piece_and_a_delta_round_trip() {
        let data = sample(100_000, 1);
        let frame = encode(&data, SETTINGS).unwrap();
        assert!(frame.len() < data.len());
        assert_eq!(decode(&frame, None, 100_000, LIMITS).unwrap(), data);
        let mut target = data.clone();
        target[5000..5100].fill(7);
        target.extend_from_slice(b"more");
        let delta = encode_delta(&data, &target, SETTINGS).unwrap();
        assert!(delta.len() < 500, "{}", delta.len());
        let out = decode(&delta, Some(&data), target.len() as u64, LIMITS).unwrap();
        assert_eq!(out, target);
        // Without its base a delta does not decode to the target.
        assert_ne!(
            decode(
                &delta,
                Some(&sample(100_000, 9)),
                target.len() as u64,
                LIMITS
            )
            .ok(),
            Some(target)
        );
    }

    #[test]
    fn an_encoding_heavier_than_its_ratio_is_refused_unread() {
        let junk = vec![0u8; 3000];
        assert_eq!(
            decode(&junk, None, 900, LIMITS),
            Err(DecodeError::Oversized {
                encoded: 3000,
                output: 900,
                ratio: 2
            })
        );
        assert_eq!(decode(&junk, None, 1000, LIMITS), Err(DecodeError::NotZstd));
    }

    #[test]
    fn a_window_beyond_the_limit_is_refused_before_decoding() {
        // 1 MiB of output in one frame with a 2^21 window: the header says so.
        let data = sample(3 << 20, 2);
        let frame = encode(
            &data,
            EncodeSettings {
                level: 1,
                window_log: 22,
            },
        )
        .unwrap();
        let header = frame_header(&frame).unwrap();
        assert!(header.window > 1 << 20, "{header:?}");
        assert!(matches!(
            decode(&frame, None, data.len() as u64, LIMITS),
            Err(DecodeError::Window { limit_log: 20, .. })
        ));
        // A hand-made header asking for 2^41 bytes (exponent 31).
        let bomb = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 31 << 3, 0, 0, 0, 0];
        assert!(matches!(
            decode(&bomb, None, 100, LIMITS),
            Err(DecodeError::Window { window, .. }) if window == 1 << 41
        ));
    }

    #[test]
    fn output_other_than_the_manifests_size_is_refused() {
        let data = sample(50_000, 3);
        let frame = encode(&data, SETTINGS).unwrap();
        // The header declares 50 000 bytes.
        assert_eq!(
            decode(&frame, None, 40_000, LIMITS),
            Err(DecodeError::ContentSize {
                declared: 50_000,
                expected: 40_000
            })
        );
        // A frame that does not declare its size and produces more.
        let mut out = Vec::new();
        {
            let mut encoder = zstd::stream::write::Encoder::new(&mut out, 3).unwrap();
            encoder.include_contentsize(false).unwrap();
            encoder
                .set_parameter(zstd::zstd_safe::CParameter::WindowLog(17))
                .unwrap();
            std::io::Write::write_all(&mut encoder, &data).unwrap();
            encoder.finish().unwrap();
        }
        assert_eq!(frame_header(&out).unwrap().content_size, None);
        assert_eq!(
            decode(&out, None, 40_000, LIMITS),
            Err(DecodeError::TooLong { expected: 40_000 })
        );
        assert_eq!(
            decode(&out, None, 60_000, LIMITS),
            Err(DecodeError::TooShort {
                got: 50_000,
                expected: 60_000
            })
        );
    }

    #[test]
    fn corrupt_and_trailing_bytes_are_refused() {
        let data = sample(50_000, 4);
        let mut frame = encode(&data, SETTINGS).unwrap();
        let mut longer = frame.clone();
        longer.extend_from_slice(&frame);
        assert_eq!(
            decode(&longer, None, 50_000, LIMITS),
            Err(DecodeError::Trailing)
        );
        let middle = frame.len() / 2;
        frame[middle] ^= 0xff;
        frame.truncate(frame.len() - 3);
        assert!(decode(&frame, None, 50_000, LIMITS).is_err());
        assert_eq!(frame_header(b"\x28\xb5"), Err(DecodeError::NotZstd));
    }

    #[test]
    fn window_logs() {
        assert_eq!(window_log_for(0, 27), 10);
        assert_eq!(window_log_for(1024, 27), 10);
        assert_eq!(window_log_for(1025, 27), 11);
        assert_eq!(window_log_for(1 << 30, 27), 27);
    }
}
