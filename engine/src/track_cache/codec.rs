//! The lossless encoding of one block's logits: the f32 values' bytes split into four planes
//! (all first bytes, then all second bytes, …) and deflated. Logits are smooth, so the sign and
//! exponent planes compress to little; the low mantissa planes are close to noise. Lossless
//! keeps a matte rendered from the cache byte-identical to one rendered from the session, for any
//! threshold, softness or finishing chosen later.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

/// The only encoding of format version 1.
pub(crate) const SHUFFLED_DEFLATE: u8 = 1;

/// Encodes `values`; infallible in practice (writes to memory), an I/O error is passed on.
pub(crate) fn encode(values: &[f32]) -> std::io::Result<Vec<u8>> {
    let n = values.len();
    let mut planes = vec![0u8; n * 4];
    for (i, v) in values.iter().enumerate() {
        for (plane, byte) in v.to_le_bytes().into_iter().enumerate() {
            if let Some(slot) = planes.get_mut(plane * n + i) {
                *slot = byte;
            }
        }
    }
    let mut encoder = DeflateEncoder::new(Vec::with_capacity(n), Compression::new(6));
    encoder.write_all(&planes)?;
    encoder.finish()
}

/// Decodes `count` values; `None` when the bytes do not inflate to exactly that many.
pub(crate) fn decode(bytes: &[u8], count: usize) -> Option<Vec<f32>> {
    let mut planes = Vec::with_capacity(count * 4);
    let mut decoder = DeflateDecoder::new(bytes).take(count as u64 * 4 + 1);
    decoder.read_to_end(&mut planes).ok()?;
    if planes.len() != count * 4 {
        return None;
    }
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        let byte = |plane: usize| planes.get(plane * count + i).copied().unwrap_or(0);
        values.push(f32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)]));
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let bytes = encode(&values).unwrap();
        let back = decode(&bytes, values.len()).unwrap();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(decode(&bytes, values.len() - 1).is_none());
        assert!(decode(&bytes, values.len() + 1).is_none());
        assert!(decode(&bytes[..bytes.len() / 2], values.len()).is_none());
    }
}
