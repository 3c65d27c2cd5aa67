//! Image and mask resampling exactly as the official SAM 2 pipeline does it, as pure functions over
//! plain buffers (no model, no ONNX Runtime).
//!
//! The engine reproduces the official predictor on identical weights, so every resize on the way
//! in and out must produce the same numbers as the libraries the official code calls, not merely
//! similar ones:
//!
//! - frames: `PIL.Image.convert("RGB").resize((S, S))` (bicubic, antialiased when shrinking),
//!   then `/255` in `f64`, cast to `f32`, `(x − mean) / std` in `f32` — [`sam2_input`], built on
//!   [`resize_rgb8_like_pil`], whose bytes are identical to Pillow's;
//! - mask prompts: PyTorch's antialiased bilinear `F.interpolate` — [`resize_bilinear_antialias`];
//! - low-resolution logits to video size: PyTorch's plain bilinear `F.interpolate` —
//!   [`resize_bilinear`] / [`BilinearResize`], the CPU reference of the matte upsampling.
//!
//! `tests/fixtures/resample` holds what Pillow, PyTorch and the official loader produce for a set of
//! synthetic images and photographs (`bundle/exporter/sam2export/resample_fixtures.py`), and
//! `engine/tests/resample.rs` checks these functions against it bit for bit.

mod pil;
mod torch;

use std::borrow::Cow;

use ndarray::Array4;

pub use self::pil::resize_rgb8_like_pil;
pub use self::torch::{BilinearResize, resize_bilinear, resize_bilinear_antialias};

/// The layout of an interleaved 8-bit image, as a decoder hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// One byte per pixel (PIL mode `L`).
    Gray8,
    /// Gray and alpha (PIL mode `LA`).
    GrayAlpha8,
    /// Red, green, blue (PIL mode `RGB`).
    Rgb8,
    /// Red, green, blue, alpha (PIL mode `RGBA`).
    Rgba8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn channels(self) -> usize {
        match self {
            PixelFormat::Gray8 => 1,
            PixelFormat::GrayAlpha8 => 2,
            PixelFormat::Rgb8 => 3,
            PixelFormat::Rgba8 => 4,
        }
    }
}

/// `PIL.Image.convert("RGB")` for the 8-bit formats: gray is repeated into the three channels and
/// alpha is dropped, not composited (Pillow does not blend onto a background here). Borrows when
/// the image is RGB already. Reads `src` as `width × height` pixels of `format`; a trailing
/// partial pixel is ignored.
///
/// For other inputs Pillow behaves in ways a decoder must reproduce before calling this: a 16-bit
/// RGB PNG opens as mode `RGB` holding the high byte of each sample (truncated, not rounded), and a
/// 16-bit gray PNG opens as mode `I;16`, whose conversion to RGB clamps every value above 255 to
/// 255 instead of scaling.
pub fn to_rgb8(src: &[u8], format: PixelFormat) -> Cow<'_, [u8]> {
    match format {
        PixelFormat::Rgb8 => Cow::Borrowed(src),
        PixelFormat::Rgba8 => Cow::Owned(
            src.chunks_exact(4)
                .flat_map(|p| p.iter().take(3).copied())
                .collect(),
        ),
        PixelFormat::Gray8 => Cow::Owned(src.iter().flat_map(|&v| [v, v, v]).collect()),
        PixelFormat::GrayAlpha8 => Cow::Owned(
            src.chunks_exact(2)
                .flat_map(|p| {
                    let v = p.first().copied().unwrap_or_default();
                    [v, v, v]
                })
                .collect(),
        ),
    }
}

/// The model input for one frame, `[1, 3, size, size]` float32, exactly as the official
/// `load_video_frames` makes it from a packed 8-bit RGB image (`width × height × 3` bytes; see
/// [`to_rgb8`] for other layouts): Pillow's bicubic resize to `size × size` (aspect ratio
/// ignored), `/ 255` in `f64`, cast to `f32`, then `(x − mean) / std` in `f32` per channel
/// (`mean` and `std` as the manifest gives them, RGB order). Total, like
/// [`resize_rgb8_like_pil`].
pub fn sam2_input(
    rgb: &[u8],
    width: u32,
    height: u32,
    size: u32,
    mean: [f32; 3],
    std: [f32; 3],
) -> Array4<f32> {
    let resized = resize_rgb8_like_pil(rgb, width, height, size, size);
    let side = if resized.is_empty() { 0 } else { size as usize };
    sam2_normalize(&resized, side, &sam2_normalization(mean, std))
}

/// The normalized value of each byte in each channel, `[channel][byte]`: the result depends only
/// on these, so a table keeps the `f64` division out of the per-pixel work, and a graph can apply
/// it elsewhere by lookup, bit for bit.
pub fn sam2_normalization(mean: [f32; 3], std: [f32; 3]) -> [[f32; 256]; 3] {
    let mut table = [[0.0f32; 256]; 3];
    for ((row, &m), &s) in table.iter_mut().zip(&mean).zip(&std) {
        for (v, t) in row.iter_mut().enumerate() {
            let x = (v as f64 / 255.0) as f32;
            *t = (x - m) / s;
        }
    }
    table
}

/// A square resized frame (`side × side × 3` bytes, interleaved) through `table`
/// ([`sam2_normalization`]) as the model input `[1, 3, side, side]`; pixels `resized` lacks stay
/// 0 (total, like [`resize_rgb8_like_pil`]).
pub fn sam2_normalize(resized: &[u8], side: usize, table: &[[f32; 256]; 3]) -> Array4<f32> {
    let mut out = Array4::<f32>::zeros((1, 3, side, side));
    let mut image = out.index_axis_mut(ndarray::Axis(0), 0);
    for ((channel, mut plane), lut) in image.outer_iter_mut().enumerate().zip(table) {
        let Some(plane) = plane.as_slice_mut() else {
            continue;
        };
        for (o, px) in plane.iter_mut().zip(resized.chunks_exact(3)) {
            let v = px.get(channel).copied().unwrap_or_default();
            *o = lut.get(usize::from(v)).copied().unwrap_or_default();
        }
    }
    out
}

/// `width · height · channels` when a buffer that long can be allocated (at most `isize::MAX`
/// bytes for 4-byte elements), so that an absurd size gives an empty result instead of an
/// allocation panic.
fn buffer_len(width: usize, height: usize, channels: usize) -> Option<usize> {
    width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(channels))
        .filter(|&n| n <= isize::MAX as usize / 4)
}

/// `src` as exactly `len` values: borrowed when it already is, otherwise truncated or padded
/// with zeros. Keeps the kernels free of length checks while staying total on a caller's
/// mismatched buffer.
fn fit<T: Copy + Default>(src: &[T], len: usize) -> Cow<'_, [T]> {
    if src.len() == len {
        Cow::Borrowed(src)
    } else {
        let mut v: Vec<T> = src.iter().copied().take(len).collect();
        v.resize(len, T::default());
        Cow::Owned(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatched_or_empty_buffers_do_not_panic() {
        assert_eq!(resize_rgb8_like_pil(&[9u8; 10], 2, 2, 4, 4).len(), 48);
        assert_eq!(resize_rgb8_like_pil(&[], 0, 2, 4, 4), vec![0u8; 48]);
        assert!(resize_rgb8_like_pil(&[1, 2, 3], 1, 1, 0, 4).is_empty());
        assert!(resize_bilinear(&[1.0; 4], 2, 2, usize::MAX, 3).is_empty());
        assert_eq!(resize_bilinear(&[], 0, 0, 3, 2), vec![0.0; 6]);
        assert_eq!(resize_bilinear_antialias(&[1.0], 2, 2, 3, 3).len(), 9);
        let t = sam2_input(&[], 0, 0, 8, [0.5; 3], [0.25; 3]);
        assert_eq!(t.shape(), &[1, 3, 8, 8]);
    }

    #[test]
    fn to_rgb8_repeats_gray_and_drops_alpha() {
        let rgba = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            to_rgb8(&rgba, PixelFormat::Rgba8).as_ref(),
            &[1, 2, 3, 5, 6, 7]
        );
        assert_eq!(
            to_rgb8(&[9, 200], PixelFormat::GrayAlpha8).as_ref(),
            &[9, 9, 9]
        );
        assert_eq!(
            to_rgb8(&[4, 5], PixelFormat::Gray8).as_ref(),
            &[4, 4, 4, 5, 5, 5]
        );
        assert!(matches!(
            to_rgb8(&[1, 2, 3], PixelFormat::Rgb8),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn sam2_input_has_the_model_shape_and_normalization() {
        let src = vec![255u8; 5 * 3 * 3];
        let t = sam2_input(&src, 5, 3, 8, [0.5; 3], [0.25; 3]);
        assert_eq!(t.shape(), &[1, 3, 8, 8]);
        assert!(t.iter().all(|&v| v == 2.0));
    }
}
