//! Bilinear upsampling exactly as PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`,
//! which is how SAM 2 brings its low-resolution mask logits to the video resolution.
//!
//! The CPU path is [`crate::resample::BilinearResize`], which reproduces PyTorch's compiled CPU
//! kernel bit for bit (fused multiply-adds included) and is checked against PyTorch's own output
//! in `engine/tests/resample.rs`; this module adds the matte stage's size checks and typed errors.
//!
//! The GPU path needs the same source coordinates and weights as a table it can upload ([`taps`]),
//! computed once per output column and once per output row, so that the shader only blends. They
//! are PyTorch's `compute_source_index_and_lambda`, for whichever of PyTorch's two kernels it
//! would pick ([`is_small_output`]): they round the coordinate differently, and at 50×40 that
//! alone moves a logit of 15 by 1.5e-5.

use super::error::{MatteError, check_buffer, check_size};
use crate::resample::BilinearResize;

/// The two source pixels and weights behind one output coordinate along one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tap {
    /// Lower source index.
    pub(crate) i0: usize,
    /// Upper source index (`i0 + 1`, or `i0` at the last source pixel).
    pub(crate) i1: usize,
    /// Weight of `i0`, `1 − w1`.
    pub(crate) w0: f32,
    /// Weight of `i1`, the fractional part of the source coordinate.
    pub(crate) w1: f32,
}

/// Whether PyTorch takes its channels-last kernel for a one-channel output of this size
/// (`_use_vectorized_kernel_cond_2d`): it does for `out_w + out_h <= 128`, and that kernel
/// computes coordinates and blends differently (see [`taps`] and the shader).
pub(crate) fn is_small_output(out_w: usize, out_h: usize) -> bool {
    out_w.saturating_add(out_h) <= 128
}

/// PyTorch's `compute_source_index_and_lambda` for `align_corners=False`, for every output index.
///
/// Everything is `f32`, as in PyTorch for a float tensor: the scale is `in / out` (PyTorch's
/// `area_pixel_compute_scale` when `F.interpolate` gets a `size`), the source coordinate is
/// `scale·(dst + 0.5) − 0.5` clamped at 0, the lower index is its floor clamped to the last pixel,
/// and the weight is the remainder clamped to [0, 1]. Equal sizes copy, as PyTorch does.
/// `fused`: the coordinate's multiply-add is fused, as compiled into PyTorch's channels-last
/// kernel ([`is_small_output`]); the generic kernel rounds the product first.
///
/// `in_size` and `out_size` must be non-zero (callers check).
pub(crate) fn taps(in_size: usize, out_size: usize, fused: bool) -> Vec<Tap> {
    let last = in_size.saturating_sub(1);
    if in_size == out_size {
        return (0..out_size)
            .map(|i| Tap {
                i0: i,
                i1: i,
                w0: 1.0,
                w1: 0.0,
            })
            .collect();
    }
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|dst| {
            let x = dst as f32 + 0.5;
            let real = if fused {
                scale.mul_add(x, -0.5)
            } else {
                scale * x - 0.5
            };
            let real = if real < 0.0 { 0.0 } else { real };
            // `real` is finite and non-negative here, so the cast is a floor.
            let i0 = (real as usize).min(last);
            let w1 = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < last { i0 + 1 } else { i0 };
            Tap {
                i0,
                i1,
                w0: 1.0 - w1,
                w1,
            }
        })
        .collect()
}

/// Upsamples (or resamples) a row-major `in_w × in_h` image of mask logits to `out_w × out_h`,
/// bit for bit as PyTorch's CPU `F.interpolate(mode="bilinear", align_corners=False)` on a
/// one-channel float tensor.
pub fn upsample_bilinear(
    src: &[f32],
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
) -> Result<Vec<f32>, MatteError> {
    let len = check_size("upsampled matte", out_w, out_h)?;
    let mut out = vec![0.0; len];
    upsample_bilinear_into(src, in_w, in_h, &mut out, out_w, out_h)?;
    Ok(out)
}

/// [`upsample_bilinear`] into a caller's buffer, so that a renderer can reuse one allocation per
/// frame: at 4K a fresh buffer costs about as much in page faults as the arithmetic.
pub fn upsample_bilinear_into(
    src: &[f32],
    in_w: usize,
    in_h: usize,
    out: &mut [f32],
    out_w: usize,
    out_h: usize,
) -> Result<(), MatteError> {
    check_buffer("low-resolution mask", src.len(), in_w, in_h)?;
    check_buffer("upsampled matte", out.len(), out_w, out_h)?;
    BilinearResize::new(in_w, in_h, out_w, out_h).apply_into(src, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_follow_pytorch_for_a_doubling() {
        // 2 → 4: source coordinates −0.25 (clamped to 0), 0.25, 0.75, 1.25 (index clamped to 1).
        let t = taps(2, 4, false);
        assert_eq!((t[0].i0, t[0].i1, t[0].w1), (0, 1, 0.0));
        assert_eq!((t[1].i0, t[1].i1, t[1].w1), (0, 1, 0.25));
        assert_eq!((t[2].i0, t[2].i1, t[2].w1), (0, 1, 0.75));
        assert_eq!((t[3].i0, t[3].i1, t[3].w1), (1, 1, 0.25));
    }

    #[test]
    fn taps_copy_at_equal_sizes_and_stay_in_range_when_shrinking() {
        assert!(
            taps(5, 5, false)
                .iter()
                .enumerate()
                .all(|(i, t)| t.i0 == i && t.i1 == i && t.w0 == 1.0)
        );
        for t in taps(7, 3, true)
            .iter()
            .chain(&taps(1, 9, false))
            .chain(&taps(9, 1, false))
        {
            assert!(t.i0 <= t.i1 && (0.0..=1.0).contains(&t.w1));
        }
        assert!(taps(1, 9, true).iter().all(|t| t.i0 == 0 && t.i1 == 0));
    }
}
