//! The encodings of logits in a track cache.
//!
//! - Quantized, [`QUANTIZED`] (what a track cache's blocks hold): each logit's 16-bit code at the matte
//!   precision ([`crate::matte::precision`]), predicted from its left, upper and upper-left
//!   neighbours (the median edge detector of LOCO-I / JPEG-LS), the residuals zigzagged, split
//!   into a low-byte and a high-byte plane, and deflated. Logits are smooth, so most residuals
//!   are a few steps and the high plane is nearly all zeros. A matte rounds its logits to the same
//!   precision, so a matte from the cache is byte-identical to one from the live session.
//! - Lossless (format version 1's encoding; now only a session's private spill of logits the
//!   model may read again, see `track_cache::spill`): the f32 values' bytes split into four
//!   planes and deflated.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

use crate::matte::precision::{code_logit, logit_code};

/// 16-bit codes at the matte precision, predicted, deflated: format version 2's encoding.
pub(crate) const QUANTIZED: u8 = 2;

/// Encodes a `side × side` map of logits as [`QUANTIZED`].
pub(crate) fn encode_quantized(values: &[f32], side: usize) -> std::io::Result<Vec<u8>> {
    let codes: Vec<i16> = values.iter().map(|&v| logit_code(v)).collect();
    let n = codes.len();
    let mut planes = vec![0u8; n * 2];
    for (i, &code) in codes.iter().enumerate() {
        let residual = code.wrapping_sub(predict(&codes, side, i)) as u16;
        let zigzag = (residual << 1) ^ (((residual as i16) >> 15) as u16);
        let [low, high] = zigzag.to_le_bytes();
        if let Some(slot) = planes.get_mut(i) {
            *slot = low;
        }
        if let Some(slot) = planes.get_mut(n + i) {
            *slot = high;
        }
    }
    deflate(&planes, n)
}

/// Decodes `count` logits of a `side`-wide map encoded by [`encode_quantized`]; `None` when the
/// bytes do not inflate to exactly that many.
pub(crate) fn decode_quantized(bytes: &[u8], count: usize, side: usize) -> Option<Vec<f32>> {
    let planes = inflate(bytes, count * 2)?;
    let mut codes: Vec<i16> = Vec::with_capacity(count);
    for i in 0..count {
        let zigzag = u16::from_le_bytes([*planes.get(i)?, *planes.get(count + i)?]);
        let residual = (zigzag >> 1) ^ (zigzag & 1).wrapping_neg();
        let code = predict(&codes, side, i).wrapping_add(residual as i16);
        codes.push(code);
    }
    Some(codes.into_iter().map(code_logit).collect())
}

/// The prediction of code `i` from the codes before it in a `side`-wide map: the median edge
/// detector (left `a`, up `b`, up-left `c`), left on the first row, up in the first column.
pub fn predict(codes: &[i16], side: usize, i: usize) -> i16 {
    let side = side.max(1);
    let (x, y) = (i % side, i / side);
    let at = |j: usize| i32::from(codes.get(j).copied().unwrap_or(0));
    let predicted = match (x, y) {
        (0, 0) => 0,
        (_, 0) => at(i - 1),
        (0, _) => at(i - side),
        _ => {
            let (a, b, c) = (at(i - 1), at(i - side), at(i - side - 1));
            if c >= a.max(b) {
                a.min(b)
            } else if c <= a.min(b) {
                a.max(b)
            } else {
                a + b - c
            }
        }
    };
    // Within i16: the median lies between a and b, and a + b − c between them too when c does.
    predicted as i16
}

/// Encodes `values` losslessly.
pub(crate) fn encode_lossless(values: &[f32]) -> std::io::Result<Vec<u8>> {
    let n = values.len();
    let mut planes = vec![0u8; n * 4];
    for (i, v) in values.iter().enumerate() {
        for (plane, byte) in v.to_le_bytes().into_iter().enumerate() {
            if let Some(slot) = planes.get_mut(plane * n + i) {
                *slot = byte;
            }
        }
    }
    deflate(&planes, n)
}

/// Decodes `count` values encoded by [`encode_lossless`]; `None` when the bytes do not inflate
/// to exactly that many.
pub(crate) fn decode_lossless(bytes: &[u8], count: usize) -> Option<Vec<f32>> {
    let planes = inflate(bytes, count * 4)?;
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        let byte = |plane: usize| planes.get(plane * count + i).copied().unwrap_or(0);
        values.push(f32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)]));
    }
    Some(values)
}

fn deflate(bytes: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(capacity), Compression::new(6));
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Exactly `len` inflated bytes, or `None`.
fn inflate(bytes: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    let mut decoder = DeflateDecoder::new(bytes).take(len as u64 + 1);
    decoder.read_to_end(&mut out).ok()?;
    (out.len() == len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matte::precision::round_logits;

    #[test]
    fn logits_come_back_bit_for_bit() {
        let values: Vec<f32> = (0..4096)
            .map(|i| ((i as f32) * 0.37).sin() * 12.0 - 3.0)
            .chain([
                f32::NAN,
                -0.0,
                f32::INFINITY,
                -1024.0,
                f32::MIN_POSITIVE / 3.0,
            ])
            .collect();
        let bytes = encode_lossless(&values).unwrap();
        let back = decode_lossless(&bytes, values.len()).unwrap();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(decode_lossless(&bytes, values.len() - 1).is_none());
        assert!(decode_lossless(&bytes, values.len() + 1).is_none());
        assert!(decode_lossless(&bytes[..bytes.len() / 2], values.len()).is_none());
    }

    #[test]
    fn quantized_logits_come_back_rounded_exactly() {
        let side = 64;
        // A smooth field with a steep edge, the extremes, and jumps that wrap the residuals.
        let mut values: Vec<f32> = (0..side * side)
            .map(|i| {
                let (x, y) = ((i % side) as f32, (i / side) as f32);
                ((x - 30.0) * 0.9 + (y * 0.2).sin() * 4.0).clamp(-20.0, 20.0)
            })
            .collect();
        for (i, v) in [
            -1024.0,
            127.99,
            -127.99,
            500.0,
            -128.5,
            f32::NAN,
            f32::INFINITY,
        ]
        .into_iter()
        .enumerate()
        {
            values[i * 97 + 5] = v;
        }
        let bytes = encode_quantized(&values, side).unwrap();
        let back = decode_quantized(&bytes, values.len(), side).unwrap();
        assert_eq!(back, round_logits(&values));
        assert!(bytes.len() < values.len(), "{} bytes", bytes.len());
        // What the cache gives back encodes to the same bytes.
        assert_eq!(encode_quantized(&back, side).unwrap(), bytes);
        assert!(decode_quantized(&bytes, values.len() - 1, side).is_none());
        assert!(decode_quantized(&bytes[..bytes.len() / 2], values.len(), side).is_none());
    }
}
