//! Choke/expand and feather: neighbourhood filters whose cost does not grow with the radius.
//!
//! **Expand / choke** is a max (grow) or min (choke) filter over a (2n+1)² square, done as a
//! horizontal then a vertical pass of the van Herk / Gil–Werman algorithm: three comparisons per
//! pixel and pass, for any n. It works on soft mattes as well as hard ones. The square shows only
//! as slightly squared-off convex corners at large n; a feather after it rounds them.
//!
//! **Feather** is a Gaussian blur. Small ones (σ ≤ 4 px, the common case) are a true separable
//! Gaussian truncated at 4σ; larger ones are three box blurs (running sums, so independent of the
//! radius) with widths chosen for σ as in W. Jarosz / I. Kutskir's "boxes for Gauss": a
//! piecewise-quadratic kernel whose σ is within about 4 % of the requested one, invisible on a
//! matte edge. Boxes are not used for small σ because their integer widths cannot get close to
//! it (σ = 1 would come out as 0.82).
//!
//! Both filters treat the frame's border as if its edge pixels continued outwards, so an object
//! touching the edge stays solid up to it.

use super::error::{MatteError, check_buffer};

/// Grows a `width × height` matte by `pixels` (a max filter over a (2·pixels+1)² square), or
/// chokes it when `pixels` is negative (a min filter).
pub fn expand(
    matte: &[f32],
    width: usize,
    height: usize,
    pixels: i32,
) -> Result<Vec<f32>, MatteError> {
    check_buffer("matte", matte.len(), width, height)?;
    let mut out = matte.to_vec();
    expand_in_place(&mut out, width, height, pixels);
    Ok(out)
}

/// Blurs a `width × height` matte with a Gaussian of σ = `radius` / 2, so the
/// edge fades over about `radius` pixels on each side. A radius of 0, negative or NaN changes
/// nothing; radii above [`MAX_FEATHER_RADIUS`] are computed as that radius. The time taken does
/// not depend on the radius.
pub fn feather(
    matte: &[f32],
    width: usize,
    height: usize,
    radius: f32,
) -> Result<Vec<f32>, MatteError> {
    check_buffer("matte", matte.len(), width, height)?;
    let mut out = matte.to_vec();
    feather_in_place(&mut out, width, height, radius);
    Ok(out)
}

/// [`expand`] on a buffer whose size the caller has checked.
pub(crate) fn expand_in_place(matte: &mut [f32], width: usize, height: usize, pixels: i32) {
    let radius = pixels.unsigned_abs() as usize;
    if radius == 0 || width == 0 || height == 0 {
        return;
    }
    // Two monomorphized copies rather than a function pointer: an indirect call per comparison
    // made this several times slower.
    if pixels > 0 {
        extreme_2d(matte, width, radius, f32::max, f32::NEG_INFINITY);
    } else {
        extreme_2d(matte, width, radius, f32::min, f32::INFINITY);
    }
}

/// The separable square min/max filter: rows, then columns.
fn extreme_2d(
    matte: &mut [f32],
    width: usize,
    radius: usize,
    op: impl Fn(f32, f32) -> f32 + Copy,
    identity: f32,
) {
    let mut scratch = RowScratch::default();
    for row in matte.chunks_exact_mut(width) {
        extreme_row(row, radius, op, identity, &mut scratch);
    }
    let copy = matte.to_vec();
    let suffix = &mut scratch.suffix;
    extreme_1d(&copy, matte, width, radius, op, identity, suffix);
}

/// Buffers reused from row to row by [`extreme_row`].
#[derive(Debug, Default)]
struct RowScratch {
    padded: Vec<f32>,
    prefix: Vec<f32>,
    suffix: Vec<f32>,
}

/// [`extreme_1d`] for one row of single values, written as plain scans so that the compiler keeps
/// it tight (the general version pays a slice per item, which dominates when items are single
/// values).
fn extreme_row(
    row: &mut [f32],
    radius: usize,
    op: impl Fn(f32, f32) -> f32 + Copy,
    identity: f32,
    scratch: &mut RowScratch,
) {
    let n = row.len();
    let radius = radius.min(n);
    let window = 2 * radius + 1;
    let RowScratch {
        padded,
        prefix,
        suffix,
    } = scratch;
    padded.clear();
    padded.resize(radius, identity);
    padded.extend_from_slice(row);
    padded.resize(n + 2 * radius, identity);
    prefix.clear();
    prefix.resize(padded.len(), identity);
    suffix.clear();
    suffix.resize(padded.len(), identity);
    for ((block, pre), suf) in padded
        .chunks(window)
        .zip(prefix.chunks_mut(window))
        .zip(suffix.chunks_mut(window))
    {
        let mut acc = identity;
        for (p, &v) in pre.iter_mut().zip(block) {
            acc = op(acc, v);
            *p = acc;
        }
        let mut acc = identity;
        for (s, &v) in suf.iter_mut().rev().zip(block.iter().rev()) {
            acc = op(acc, v);
            *s = acc;
        }
    }
    // The window centred on x covers padded[x ..= x + 2·radius].
    for ((out, &s), &p) in row
        .iter_mut()
        .zip(suffix.iter())
        .zip(prefix.iter().skip(2 * radius))
    {
        *out = op(s, p);
    }
}

/// Van Herk / Gil–Werman running extreme over windows of `2·radius + 1` items, where an item is
/// `lane` consecutive values (1 for a pass along a row; a whole row for a pass down the columns,
/// which then runs on contiguous memory). Items outside the line count as `identity`, which for
/// min and max is the same as repeating the edge.
///
/// The line is cut into blocks of the window's length (after `radius` items of padding); a window
/// then spans at most two blocks, and its extreme is the suffix extreme of its first block's part
/// combined with the prefix extreme of its second block's part.
fn extreme_1d(
    src: &[f32],
    dst: &mut [f32],
    lane: usize,
    radius: usize,
    op: impl Fn(f32, f32) -> f32 + Copy,
    identity: f32,
    suffix: &mut Vec<f32>,
) {
    let items = src.len() / lane.max(1);
    // A window wider than the line sees the whole line whatever its radius.
    let radius = radius.min(items);
    let window = 2 * radius + 1;
    let padded = items + 2 * radius;
    let item = |p: usize| -> Option<&[f32]> {
        p.checked_sub(radius)
            .filter(|&i| i < items)
            .and_then(|i| src.get(i * lane..(i + 1) * lane))
    };

    // Suffix extremes within each block, from the end of the padded line backwards.
    suffix.clear();
    suffix.resize(padded * lane, identity);
    for p in (0..padded).rev() {
        let block_end = (p + 1) % window == 0 || p + 1 == padded;
        let Some((head, tail)) = suffix.split_at_mut_checked((p + 1) * lane) else {
            continue;
        };
        let Some(here) = head.get_mut(p * lane..) else {
            continue;
        };
        match item(p) {
            Some(values) => here.copy_from_slice(values),
            None => here.fill(identity),
        }
        if !block_end {
            for (h, &next) in here.iter_mut().zip(tail.iter()) {
                *h = op(*h, next);
            }
        }
    }

    // Prefix extremes within each block, forwards, kept for the current item only; the window
    // ending at padded item p is centred on line item p − 2·radius.
    let mut prefix = vec![identity; lane];
    for p in 0..padded {
        let values = item(p);
        if p % window == 0 {
            match values {
                Some(values) => prefix.copy_from_slice(values),
                None => prefix.fill(identity),
            }
        } else if let Some(values) = values {
            for (g, &v) in prefix.iter_mut().zip(values) {
                *g = op(*g, v);
            }
        }
        let Some(y) = p.checked_sub(2 * radius) else {
            continue;
        };
        let (Some(out), Some(first)) = (
            dst.get_mut(y * lane..(y + 1) * lane),
            suffix.get(y * lane..(y + 1) * lane),
        ) else {
            continue;
        };
        for ((o, &h), &g) in out.iter_mut().zip(first).zip(&prefix) {
            *o = op(h, g);
        }
    }
}

/// [`feather`] on a buffer whose size the caller has checked.
pub(crate) fn feather_in_place(matte: &mut [f32], width: usize, height: usize, radius: f32) {
    if !(radius > 0.0 && radius.is_finite()) || width == 0 || height == 0 {
        return;
    }
    let sigma = f64::from(radius.min(MAX_FEATHER_RADIUS)) / 2.0;
    let mut row_buffer = Vec::new();
    let mut sums = Vec::new();
    if sigma <= MAX_TRUE_GAUSSIAN_SIGMA {
        let kernel = gaussian_kernel(sigma);
        for row in matte.chunks_exact_mut(width) {
            convolve_row(row, &kernel, &mut row_buffer);
        }
        convolve_columns(matte, width, height, &kernel, &mut sums);
        return;
    }
    for box_radius in box_radii(sigma) {
        if box_radius == 0 {
            continue;
        }
        for row in matte.chunks_exact_mut(width) {
            box_blur_row(row, box_radius, &mut row_buffer);
        }
        box_blur_columns(matte, width, height, box_radius, &mut sums);
    }
}

/// The widest feather computed: larger radii are computed as this one. The cost does not depend
/// on the radius; the bound keeps the box widths far inside `usize` and the running sums exact to
/// f32 precision. At this width a matte is already flat to within 0.03 % across a 4K frame, so
/// the bound changes nothing anyone could see.
pub const MAX_FEATHER_RADIUS: f32 = 16_777_216.0; // 2²⁴ px

/// Up to this σ the feather is a true Gaussian (at most 33 taps); above it, three boxes.
const MAX_TRUE_GAUSSIAN_SIGMA: f64 = 4.0;

/// Normalized Gaussian weights for offsets −r..=r, r = ⌈4σ⌉ (the tails beyond hold < 0.01 %).
fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let r = (4.0 * sigma).ceil() as isize;
    let weights: Vec<f64> = (-r..=r)
        .map(|k| (-((k * k) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// Convolves one row with a symmetric `kernel` (odd length), the edge pixels repeated outwards.
fn convolve_row(row: &mut [f32], kernel: &[f64], copy: &mut Vec<f32>) {
    let n = row.len() as isize;
    copy.clear();
    copy.extend_from_slice(row);
    let r = (kernel.len() / 2) as isize;
    for (x, value) in row.iter_mut().enumerate() {
        let x = x as isize;
        let sum: f64 = kernel
            .iter()
            .zip(x - r..)
            .map(|(&w, i)| {
                w * f64::from(copy.get(i.clamp(0, n - 1) as usize).copied().unwrap_or(0.0))
            })
            .sum();
        *value = sum as f32;
    }
}

/// Convolves down the columns, a whole row at a time so that memory is read in order.
fn convolve_columns(
    matte: &mut [f32],
    width: usize,
    height: usize,
    kernel: &[f64],
    sums: &mut Vec<f64>,
) {
    let copy = matte.to_vec();
    let row = |y: isize| -> &[f32] {
        let clamped = y.clamp(0, height as isize - 1) as usize;
        copy.get(clamped * width..(clamped + 1) * width)
            .unwrap_or(&[])
    };
    let r = (kernel.len() / 2) as isize;
    for (y, out) in matte.chunks_exact_mut(width).enumerate() {
        sums.clear();
        sums.resize(width, 0.0);
        for (&w, source_y) in kernel.iter().zip(y as isize - r..) {
            for (s, &v) in sums.iter_mut().zip(row(source_y)) {
                *s += w * f64::from(v);
            }
        }
        for (o, &s) in out.iter_mut().zip(sums.iter()) {
            *o = s as f32;
        }
    }
}

/// Radii of three boxes whose successive application approximates a Gaussian of `sigma`:
/// widths `wl` (odd) and `wl + 2`, with the count of each chosen so the variances add up to σ².
fn box_radii(sigma: f64) -> [usize; 3] {
    const N: f64 = 3.0;
    let ideal = (12.0 * sigma * sigma / N + 1.0).sqrt();
    let mut lower = ideal.floor().max(1.0);
    if lower % 2.0 == 0.0 {
        lower -= 1.0;
    }
    let upper = lower + 2.0;
    let m = ((12.0 * sigma * sigma - N * lower * lower - 4.0 * N * lower - 3.0 * N)
        / (-4.0 * lower - 4.0))
        .round();
    let radius = |w: f64| ((w - 1.0) / 2.0) as usize;
    [0.0, 1.0, 2.0].map(|i| radius(if i < m { lower } else { upper }))
}

/// Box blur of one row over `2·radius + 1` pixels, the edge pixels repeated outwards.
/// Sums are kept in f64: a running f32 sum along a 4K row drifts by more than a 16-bit step.
///
/// The repeated edge pixels are counted by multiplication rather than laid out in a padded copy,
/// so the cost is one add and one subtract per pixel whatever the radius. For radii below the
/// row's length the sums are bit for bit those of adding the copies one by one: `k` copies of an
/// f32 add up exactly in f64 for any `k` below 2²⁹.
fn box_blur_row(row: &mut [f32], radius: usize, copy: &mut Vec<f32>) {
    let n = row.len();
    let (Some(&first), Some(&last)) = (row.first(), row.last()) else {
        return;
    };
    copy.clear();
    copy.extend_from_slice(row);
    let scale = 1.0 / (2 * radius + 1) as f64;
    // The window of pixel 0: `radius` copies of the first pixel, pixels 0 ..= radius, and copies
    // of the last pixel where the window runs past the end.
    let mut sum = radius as f64 * f64::from(first);
    for &v in copy.iter().take(radius + 1) {
        sum += f64::from(v);
    }
    if radius + 1 > n {
        sum += (radius + 1 - n) as f64 * f64::from(last);
    }
    let at = |i: usize| f64::from(copy.get(i.min(n - 1)).copied().unwrap_or(last));
    for (x, value) in row.iter_mut().enumerate() {
        *value = (sum * scale) as f32;
        // Slide to x + 1: take pixel x + radius + 1, drop pixel x − radius (both clamped).
        let entering = at(x.saturating_add(radius).saturating_add(1));
        let leaving = at(x.saturating_sub(radius));
        sum += entering - leaving;
    }
}

/// Box blur down the columns, a whole row at a time so that memory is read in order; the edge
/// rows are counted by multiplication as in [`box_blur_row`].
fn box_blur_columns(
    matte: &mut [f32],
    width: usize,
    height: usize,
    radius: usize,
    sums: &mut Vec<f64>,
) {
    if width == 0 || height == 0 {
        return;
    }
    let copy = matte.to_vec();
    let row = |y: usize| -> &[f32] {
        let clamped = y.min(height - 1);
        copy.get(clamped * width..(clamped + 1) * width)
            .unwrap_or(&[])
    };
    let scale = 1.0 / (2 * radius + 1) as f64;
    sums.clear();
    sums.extend(row(0).iter().map(|&v| radius as f64 * f64::from(v)));
    for y in 0..=radius.min(height - 1) {
        for (s, &v) in sums.iter_mut().zip(row(y)) {
            *s += f64::from(v);
        }
    }
    if radius + 1 > height {
        let copies = (radius + 1 - height) as f64;
        for (s, &v) in sums.iter_mut().zip(row(height - 1)) {
            *s += copies * f64::from(v);
        }
    }
    for (y, out) in matte.chunks_exact_mut(width).enumerate() {
        for (o, &s) in out.iter_mut().zip(sums.iter()) {
            *o = (s * scale) as f32;
        }
        let entering = row(y.saturating_add(radius).saturating_add(1));
        let leaving = row(y.saturating_sub(radius));
        for ((s, &add), &sub) in sums.iter_mut().zip(entering).zip(leaving) {
            *s += f64::from(add) - f64::from(sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The box blur as it was written before the edge copies were counted by multiplication:
    /// every copy laid out in a padded row and summed one by one.
    fn box_blur_row_padded(row: &mut [f32], radius: usize) {
        let (Some(&first), Some(&last)) = (row.first(), row.last()) else {
            return;
        };
        let mut padded = vec![first; radius + 1];
        padded.extend_from_slice(row);
        padded.resize(row.len() + 2 * radius + 1, last);
        let window = 2 * radius + 1;
        let scale = 1.0 / window as f64;
        let mut sum: f64 = padded
            .iter()
            .skip(1)
            .take(window)
            .map(|&v| f64::from(v))
            .sum();
        for ((value, &leaving), &entering) in row
            .iter_mut()
            .zip(padded.iter().skip(1))
            .zip(padded.iter().skip(window + 1))
        {
            *value = (sum * scale) as f32;
            sum += f64::from(entering) - f64::from(leaving);
        }
        if let Some(value) = row.last_mut() {
            *value = (sum * scale) as f32;
        }
    }

    /// A soft, irregular row: values with many different exponents, so rounding would show.
    fn soft_row(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                let t = x as f32 / (1 << 24) as f32;
                1.0 / (1.0 + (-(t * 40.0 - 20.0)).exp())
            })
            .collect()
    }

    #[test]
    fn box_blur_is_unchanged_by_counting_edges_by_multiplication() {
        let mut buffer = Vec::new();
        for n in [1, 2, 7, 64, 301] {
            for radius in [1, 2, 3, 5, 17, 63, 150, 299, 300, 301, 1000] {
                let source = soft_row(n, (n * 31 + radius) as u32);
                let mut fast = source.clone();
                box_blur_row(&mut fast, radius, &mut buffer);
                let mut slow = source.clone();
                box_blur_row_padded(&mut slow, radius);
                if radius < n {
                    assert_eq!(fast, slow, "n {n} radius {radius}");
                } else {
                    for (a, b) in fast.iter().zip(&slow) {
                        assert!((a - b).abs() < 1e-6, "n {n} radius {radius}: {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn column_blur_equals_row_blur_of_the_transpose() {
        let (w, h) = (5, 37);
        let matte: Vec<f32> = soft_row(w * h, 7);
        let mut sums = Vec::new();
        let mut buffer = Vec::new();
        for radius in [1, 4, 36, 37, 500] {
            let mut columns = matte.clone();
            box_blur_columns(&mut columns, w, h, radius, &mut sums);
            for x in 0..w {
                let mut column: Vec<f32> = (0..h).map(|y| matte[y * w + x]).collect();
                box_blur_row(&mut column, radius, &mut buffer);
                let got: Vec<f32> = (0..h).map(|y| columns[y * w + x]).collect();
                assert_eq!(got, column, "radius {radius} column {x}");
            }
        }
    }
}
