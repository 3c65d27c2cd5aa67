//! JPEG frames decoded byte for byte as PIL decodes them.
//!
//! The official predictor reads a clip with `Image.open(path).convert("RGB")`, and Pillow decodes
//! JPEG with libjpeg-turbo at its defaults: the accurate integer IDCT (`JDCT_ISLOW`) and "fancy"
//! (triangle-filter) chroma upsampling. Any other decoder lands a few levels away on real photos —
//! enough to move low-res logits by 0.01 and flip the sign of hundreds of pixels — so this module
//! decodes with libjpeg-turbo too (the `turbojpeg` crate, built from its vendored source) with the
//! same settings, and gets the same bytes (checked against Pillow in `engine/tests/jpeg.rs`).
//!
//! **What PIL refuses, this refuses.** Pillow raises "image file is truncated" when libjpeg asks
//! for data past the end of the file; libjpeg-turbo itself only warns ("Premature end of JPEG
//! file") and fills the rest of the image with grey. That warning, or a last scan with no
//! end-of-image marker after it, is an error here. Corrupt but complete data (a bad Huffman code,
//! stray bytes before a marker) is decoded the way Pillow decodes it, silently there and with a
//! logged warning here. CMYK JPEGs, which Pillow converts to RGB with its own formula, are refused.

use turbojpeg::{Decompressor, Image, PixelFormat};

/// Why a JPEG could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JpegError {
    #[error(
        "the JPEG data ends before the image does (the file is truncated; PIL refuses it too, \"image file is truncated\"); copy or export the frame again"
    )]
    Truncated,
    #[error("it is not a readable JPEG (libjpeg-turbo: {message})")]
    Unreadable { message: String },
    #[error(
        "it is a CMYK JPEG, which SAM 2 Rotoscope does not read; save the frame as an RGB JPEG or PNG"
    )]
    Cmyk,
}

/// A decoded JPEG: packed 8-bit RGB, and the warning libjpeg-turbo gave for corrupt but complete
/// data, if any (the first one; libjpeg reports only the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedJpeg {
    pub width: u32,
    pub height: u32,
    /// `width · height · 3` bytes, row-major, top row first.
    pub data: Vec<u8>,
    pub warning: Option<String>,
}

/// Whether `bytes` start like a JPEG (the SOI marker): how frames are told apart, by content as
/// PIL does, not by extension.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// libjpeg-turbo's warning that it was asked for data past the end (`JWRN_JPEG_EOF`).
const EOF_WARNING: &str = "Premature end of JPEG file";

/// The beginnings of libjpeg-turbo's other warnings (`JWRN_*` in jerror.h): the image was decoded
/// to its end, as Pillow, which ignores warnings, decodes it.
const WARNINGS: [&str; 6] = [
    "Corrupt JPEG data",
    "Unknown Adobe color transform code",
    "Inconsistent progression sequence",
    "Warning: unknown JFIF revision number",
    "Invalid SOS parameters for sequential JPEG",
    "Application transferred too many scanlines",
];

/// Decodes a JPEG file's bytes to RGB as PIL's `Image.open(f).convert("RGB")` does.
pub fn decode_jpeg(bytes: &[u8]) -> Result<DecodedJpeg, JpegError> {
    let unreadable = |e: turbojpeg::Error| JpegError::Unreadable {
        message: turbojpeg_message(e),
    };
    let mut decompressor = Decompressor::new().map_err(unreadable)?;
    let header = decompressor.read_header(bytes).map_err(|e| {
        let message = turbojpeg_message(e);
        if message.starts_with(EOF_WARNING) {
            JpegError::Truncated
        } else {
            JpegError::Unreadable { message }
        }
    })?;
    if matches!(
        header.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    ) {
        return Err(JpegError::Cmyk);
    }
    // Pillow's defaults, which are libjpeg's: accurate integer IDCT, fancy upsampling. The
    // decompressor starts with both; set the one the crate exposes so that it cannot drift.
    decompressor.set_fast_upsample(false).map_err(unreadable)?;
    let (width, height) = (header.width, header.height);
    let mut data = vec![0u8; width * height * 3];
    let image = Image {
        pixels: data.as_mut_slice(),
        width,
        pitch: width * 3,
        height,
        format: PixelFormat::RGB,
    };
    let warning = match decompressor.decompress(bytes, image) {
        Ok(()) => None,
        Err(e) => {
            let message = turbojpeg_message(e);
            if message.starts_with(EOF_WARNING) {
                return Err(JpegError::Truncated);
            }
            if !WARNINGS.iter().any(|w| message.starts_with(w)) {
                return Err(JpegError::Unreadable { message });
            }
            // libjpeg reports only the first warning: a truncation after corrupt data shows as
            // the corruption. A complete file has its end-of-image marker after the last scan.
            if !ends_after_its_last_scan(bytes) {
                return Err(JpegError::Truncated);
            }
            Some(message)
        }
    };
    let dimension = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(DecodedJpeg {
        width: dimension(width),
        height: dimension(height),
        data,
        warning,
    })
}

/// The message of a `turbojpeg` error, without the crate's "TurboJPEG error: " prefix.
fn turbojpeg_message(error: turbojpeg::Error) -> String {
    match error {
        turbojpeg::Error::TurboJpegError(message) => message.trim().to_string(),
        other => other.to_string(),
    }
}

/// Whether an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA). Inside
/// entropy-coded data an FF byte is always followed by 00 or a restart marker, so an FF D9 there
/// is the real end of the image.
fn ends_after_its_last_scan(bytes: &[u8]) -> bool {
    let Some(last_scan) = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes
        .get(last_scan..)
        .is_some_and(|rest| rest.windows(2).any(|w| w == [0xFF, 0xD9]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_with_the_soi_marker_are_jpegs() {
        assert!(is_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(!is_jpeg(b"\x89PNG\r\n\x1a\n"));
        assert!(!is_jpeg(&[0xFF, 0xD8]));
    }

    #[test]
    fn the_end_marker_must_follow_the_last_scan() {
        assert!(ends_after_its_last_scan(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0x00, 0xFF, 0xD9
        ]));
        assert!(!ends_after_its_last_scan(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0x00
        ]));
        // An end marker before the last scan (a thumbnail's) does not count.
        assert!(!ends_after_its_last_scan(&[
            0xFF, 0xD8, 0xFF, 0xDA, 0xFF, 0xD9, 0xFF, 0xDA, 3
        ]));
        assert!(!ends_after_its_last_scan(&[0xFF, 0xD8]));
    }

    #[test]
    fn garbage_is_unreadable_not_a_panic() {
        for bytes in [&[][..], &[0xFF, 0xD8, 0xFF][..], b"not a jpeg at all"] {
            let err = decode_jpeg(bytes);
            assert!(
                matches!(
                    err,
                    Err(JpegError::Unreadable { .. } | JpegError::Truncated)
                ),
                "{err:?}"
            );
        }
    }
}
