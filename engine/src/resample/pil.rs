//! Pillow's bicubic resize of 8-bit images (`libImaging/Resample.c`), ported operation for operation.
//!
//! SAM 2 resizes every frame with `PIL.Image.resize((S, S))`. The image encoder sees the result
//! through a division by 255, so a resize that is "as good" but not Pillow's shifts pixels by one
//! level here and there and the engine stops reproducing the official predictor. Hence an exact
//! port rather than a generic convolution resize:
//!
//! - filter taps in `f64` exactly as `precompute_coeffs` computes them (support `2 · max(scale, 1)`,
//!   bounds rounded by `(int)(x + 0.5)`, weights normalized by their sum);
//! - taps turned into 22-bit fixed point as `normalize_coeffs_8bpc` does (round half away from zero);
//! - a horizontal pass over only the rows the vertical pass reads, then the vertical pass, each
//!   accumulating in `i32` from `1 << 21` and clipping `sum >> 22` to 0..=255;
//! - a pass is skipped when its side keeps its size, and an image of unchanged size is copied.
//!
//! Pillow's `Image.resize` premultiplies alpha for RGBA/LA images; the SAM 2 loader converts to RGB
//! first, so only RGB (three independent bands) is offered here.

/// Fixed-point precision of the 8-bit path: `32 - 8 - 2` bits, as `PRECISION_BITS` in Resample.c.
const PRECISION_BITS: u32 = 22;

/// The bicubic filter's support radius in source pixels at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;

/// Keys' cubic convolution with a = −0.5, `bicubic_filter` in Resample.c. The operation order is
/// kept as written there; it decides the last bit of the taps.
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// The taps of one output pixel along one axis: source pixels `start .. start + weights.len()`.
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the whole source range (no box).
fn precompute_coeffs(in_size: usize, out_size: usize) -> Vec<Taps> {
    // Resample.c: `scale = (double)(in1 - in0) / outSize` with in0 = 0 and in1 = inSize as floats;
    // exact for any image size Pillow can hold.
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // `(int)(...)` truncates toward zero, which `as i64` also does.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let count = (xmax - xmin).max(0) as usize;
            let xmin_f = xmin as f64;
            let raw: Vec<f64> = (0..count)
                .map(|x| bicubic_filter(((x as f64 + xmin_f) - center + 0.5) * ss))
                .collect();
            let ww: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if ww != 0.0 { w / ww } else { w };
                    normalize_8bpc(w)
                })
                .collect();
            Taps {
                start: xmin as usize,
                weights,
            }
        })
        .collect()
}

/// One tap in fixed point, `normalize_coeffs_8bpc`: round half away from zero, truncate to int.
fn normalize_8bpc(w: f64) -> i32 {
    let scaled = w * f64::from(1u32 << PRECISION_BITS);
    if w < 0.0 {
        (-0.5 + scaled) as i32
    } else {
        (0.5 + scaled) as i32
    }
}

/// `clip8`: the accumulator's integer part clamped to a byte (Pillow uses a lookup table).
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The rounding offset every accumulation starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass over rows `first_row .. first_row + rows` of a packed RGB image `width` wide.
fn resample_horizontal(
    src: &[u8],
    width: usize,
    first_row: usize,
    rows: usize,
    taps: &[Taps],
) -> Vec<u8> {
    let out_w = taps.len();
    let mut out = vec![0u8; out_w * rows * 3];
    let src_rows = src.chunks_exact(width * 3).skip(first_row).take(rows);
    for (src_row, out_row) in src_rows.zip(out.chunks_exact_mut(out_w * 3)) {
        for (tap, px) in taps.iter().zip(out_row.chunks_exact_mut(3)) {
            let window = src_row
                .get(tap.start * 3..)
                .unwrap_or_default()
                .chunks_exact(3);
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (&k, s) in tap.weights.iter().zip(window) {
                if let [sr, sg, sb] = *s {
                    // Wrapping ops mirror C's int arithmetic; the sums stay far from overflow
                    // (|taps| sum to < 1.3 · 2^22 and pixels are < 2^8).
                    r = r.wrapping_add(i32::from(sr).wrapping_mul(k));
                    g = g.wrapping_add(i32::from(sg).wrapping_mul(k));
                    b = b.wrapping_add(i32::from(sb).wrapping_mul(k));
                }
            }
            px.copy_from_slice(&[clip8(r), clip8(g), clip8(b)]);
        }
    }
    out
}

/// Vertical pass over a packed RGB image `width` wide; `taps` index its rows.
fn resample_vertical(src: &[u8], width: usize, taps: &[Taps]) -> Vec<u8> {
    let row_len = width * 3;
    let mut out = vec![0u8; row_len * taps.len()];
    let mut acc = vec![0i32; row_len];
    for (tap, out_row) in taps.iter().zip(out.chunks_exact_mut(row_len.max(1))) {
        acc.fill(HALF);
        let src_rows = src.chunks_exact(row_len.max(1)).skip(tap.start);
        for (&k, src_row) in tap.weights.iter().zip(src_rows) {
            for (a, &s) in acc.iter_mut().zip(src_row) {
                *a = a.wrapping_add(i32::from(s).wrapping_mul(k));
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// Resizes a packed 8-bit RGB image (`width × height × 3` bytes, rows top to bottom) to
/// `out_w × out_h` exactly as Pillow's `Image.resize((out_w, out_h))` does with its default
/// bicubic filter (`reducing_gap=None`): the output bytes are identical to Pillow's.
///
/// Total: a buffer of the wrong length is read as far as it goes (missing bytes are black); an
/// empty source gives a black image; an output too large to address gives an empty vector.
pub fn resize_rgb8_like_pil(
    src: &[u8],
    width: u32,
    height: u32,
    out_w: u32,
    out_h: u32,
) -> Vec<u8> {
    let (w, h, ow, oh) = (
        width as usize,
        height as usize,
        out_w as usize,
        out_h as usize,
    );
    let Some(out_len) = super::buffer_len(ow, oh, 3) else {
        return Vec::new();
    };
    let Some(in_len) = super::buffer_len(w, h, 3).filter(|&n| n > 0) else {
        return vec![0; out_len];
    };
    let src = super::fit(src, in_len);
    if out_len == 0 {
        return Vec::new();
    }
    if (w, h) == (ow, oh) {
        // `Image.resize` returns a copy when neither the size nor the box changes.
        return src.into_owned();
    }
    let vertical = precompute_coeffs(h, oh);
    let need_horizontal = ow != w;
    let need_vertical = oh != h;

    // The vertical pass reads only rows `first .. last`; the horizontal pass makes just those.
    let first = vertical.first().map_or(0, |t| t.start);
    let last = vertical.last().map_or(h, |t| t.start + t.weights.len());
    let (image, image_w, vertical) = if need_horizontal {
        let horizontal = precompute_coeffs(w, ow);
        let rows = last.saturating_sub(first);
        let tmp = resample_horizontal(&src, w, first, rows, &horizontal);
        let shifted: Vec<Taps> = vertical
            .into_iter()
            .map(|t| Taps {
                start: t.start.saturating_sub(first),
                weights: t.weights,
            })
            .collect();
        (std::borrow::Cow::Owned(tmp), ow, shifted)
    } else {
        (src, w, vertical)
    };
    if need_vertical {
        resample_vertical(&image, image_w, &vertical)
    } else {
        image.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_of_a_halving_match_pillows_bicubic_kernel() {
        // 4 → 2: scale 2, support 4; output 0 is centred at 1.0 and reads pixels 0..=3 (bounds
        // clamped at 0 and 4), weights bicubic((x − 1 + 0.5) / 2) normalized.
        let taps = precompute_coeffs(4, 2);
        assert_eq!(taps.len(), 2);
        assert_eq!(taps[0].start, 0);
        assert_eq!(taps[0].weights.len(), 4);
        let sum: i32 = taps[0].weights.iter().sum();
        assert!(
            (sum - (1 << 22)).abs() <= 2,
            "taps sum to one in fixed point: {sum}"
        );
        // Symmetric image → mirrored taps.
        let mut rev = taps[1].weights.clone();
        rev.reverse();
        assert_eq!(taps[0].weights, rev);
    }

    #[test]
    fn constant_images_stay_constant() {
        let src = vec![77u8; 13 * 7 * 3];
        for (ow, oh) in [(5, 3), (40, 21), (13, 2), (1, 1)] {
            let out = resize_rgb8_like_pil(&src, 13, 7, ow, oh);
            assert_eq!(out.len(), (ow * oh * 3) as usize);
            assert!(out.iter().all(|&v| v == 77), "{ow}×{oh}");
        }
    }

    #[test]
    fn same_size_is_a_copy() {
        let src: Vec<u8> = (0..6 * 4 * 3).map(|i| (i * 37 % 251) as u8).collect();
        assert_eq!(resize_rgb8_like_pil(&src, 6, 4, 6, 4), src);
    }

    #[test]
    fn clip8_clamps_like_the_lookup_table() {
        assert_eq!(clip8(-5 << PRECISION_BITS), 0);
        assert_eq!(clip8(HALF), 0);
        assert_eq!(clip8((200 << PRECISION_BITS) + HALF), 200);
        assert_eq!(clip8(300 << PRECISION_BITS), 255);
    }
}
