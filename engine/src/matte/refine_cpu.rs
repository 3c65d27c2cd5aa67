//! Refine Edges on the CPU: the passes of the fast guided filter (see `refine.rs` for the filter
//! itself) and [`EdgeRefiner`], which owns the buffers they reuse from frame to frame.
//!
//! Three passes, each split into bands of rows over the threads:
//! 1. **subsample**: the full-resolution logits and guide → the grid's `[p, I]` as whole numbers
//!    (`refine.rs`'s `Levels`);
//! 2. **coefficients**: per grid cell, the exact `u32` box sums of `p`, `I`, `I·Iᵀ` and `I·p` →
//!    `a` and `b` (`window_coefficients`), then the box means of those → `ā` and `b̄`;
//! 3. **apply**: `q = ā·I + b̄` at full resolution, written over the logits.
//!
//! Why it is laid out this way (1080p had to come down from 21 to under 15 ms on two threads):
//! a box sum is one pass of separable running sums per band of rows, the statistics (`I·Iᵀ`,
//! `I·p`) formed as a row enters the window rather than stored as planes; nothing of the grid's or
//! the frame's size is allocated per frame (the buffers live in [`EdgeRefiner`] and the result
//! overwrites the logits); the guide's bytes are summed as integers and turned into levels once
//! per cell, or folded into the coefficients, never converted per pixel; and the full-resolution pass is split
//! into loops simple enough for the compiler to vectorise.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::error::{MatteError, check_buffer};
use super::refine::{
    COLOUR_STATS, EdgeRefinement, Guide, GuideChannels, LUMA_DENOMINATOR, LUMA_WEIGHTS, Output,
    RefinePlan, alpha_to_logit, check_guide, sigmoid, window_coefficients,
};

/// How long each pass of one refinement took: what `bench edges` prints per pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RefineTimes {
    pub subsample: Duration,
    pub coefficients: Duration,
    pub apply: Duration,
}

impl RefineTimes {
    /// The three passes together.
    pub fn total(&self) -> Duration {
        self.subsample + self.coefficients + self.apply
    }
}

/// The CPU guided filter with its grid-sized buffers. Kept per session (the upsampler holds one),
/// it allocates only for the first frame and when the frame size changes: allocating them afresh
/// cost page faults on every frame, a sizeable share of the 1080p time.
#[derive(Debug, Default)]
pub struct EdgeRefiner {
    /// The subsampled grid: `[p, g0, g1, g2]` per cell, in levels.
    grid: Vec<[u32; 4]>,
    /// `[a_r, a_g, a_b, b]` per cell.
    ab: Vec<[f32; 4]>,
    /// `[ā_r, ā_g, ā_b, b̄]` per cell, `ā` already scaled to the guide's bytes (see
    /// [`coefficient_means`]).
    coefficients: Vec<[f32; 4]>,
}

impl EdgeRefiner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Refines upsampled `width × height` logits in place (the result is logits again, as
    /// [`super::refine_edges`] returns them); `threads` as there (0: the machine's parallelism).
    pub fn refine(
        &mut self,
        logits: &mut [f32],
        guide: Guide<'_>,
        settings: &EdgeRefinement,
        threads: usize,
    ) -> Result<RefineTimes, MatteError> {
        self.run(logits, guide, settings, threads, Output::Logits)
    }

    /// [`EdgeRefiner::refine`] writing the refined probability in [0, 1] instead of logits.
    pub fn refine_alpha(
        &mut self,
        logits: &mut [f32],
        guide: Guide<'_>,
        settings: &EdgeRefinement,
        threads: usize,
    ) -> Result<RefineTimes, MatteError> {
        self.run(logits, guide, settings, threads, Output::Alpha)
    }

    fn run(
        &mut self,
        logits: &mut [f32],
        guide: Guide<'_>,
        settings: &EdgeRefinement,
        threads: usize,
        output: Output,
    ) -> Result<RefineTimes, MatteError> {
        let plan = settings.plan(guide.width, guide.height)?;
        check_buffer("upsampled logits", logits.len(), plan.width, plan.height)?;
        check_guide(guide, &plan)?;
        let (pixels, _) = guide.rgb.as_chunks::<3>();
        let cells = plan.low_w * plan.low_h;
        self.grid.resize(cells, [0; 4]);
        for buffer in [&mut self.ab, &mut self.coefficients] {
            buffer.resize(cells, [0.0; 4]);
        }
        let start = Instant::now();
        subsample(logits, pixels, &plan, threads, &mut self.grid);
        let subsampled = Instant::now();
        ab(&self.grid, &plan, threads, &mut self.ab);
        coefficient_means(&self.ab, &plan, threads, &mut self.coefficients);
        let solved = Instant::now();
        apply(&self.coefficients, pixels, &plan, threads, output, logits);
        let applied = Instant::now();
        Ok(RefineTimes {
            subsample: subsampled - start,
            coefficients: solved - subsampled,
            apply: applied - solved,
        })
    }
}

/// The subsampled grid, one cell per `s × s` block: `[p, g0, g1, g2]` as whole numbers of
/// [`Levels`](super::refine::Levels), the probability and the guide's channels (a luminance guide
/// fills `g0` alone).
///
/// A cell's probability is the sigmoid of its block's mean logit rather than the mean of the
/// block's sigmoids: the upsampled logits are bilinear within a logit cell, which is larger than
/// a block, so the two differ by little, and this spends one exponential per cell instead of one
/// per pixel. The guide's bytes are summed as integers, and the guide's levels are integer
/// arithmetic on those sums (the GPU's `subsample` does the same operations).
fn subsample(
    logits: &[f32],
    pixels: &[[u8; 3]],
    plan: &RefinePlan,
    threads: usize,
    grid: &mut [[u32; 4]],
) {
    let (w, h, s) = (plan.width, plan.height, plan.subsample);
    let lw = plan.low_w;
    let levels = plan.levels;
    let shift = levels.guide_shift;
    let half = (1u32 << shift) >> 1;
    let p_levels = levels.probability as f32;
    let full = (s * s) as u32;
    let [lr, lg, lb] = LUMA_WEIGHTS;
    for_bands(grid, lw, threads, |band, first_row| {
        let mut logit_sums = vec![0.0f32; lw];
        let mut byte_sums = vec![[0u32; 3]; lw];
        for (row_offset, row) in band.chunks_exact_mut(lw).enumerate() {
            let y0 = (first_row + row_offset) * s;
            let rows = s.min(h.saturating_sub(y0));
            logit_sums.fill(0.0);
            byte_sums.fill([0; 3]);
            let logit_rows = logits.chunks_exact(w).skip(y0).take(rows);
            let pixel_rows = pixels.chunks_exact(w).skip(y0).take(rows);
            for (logit_row, pixel_row) in logit_rows.zip(pixel_rows) {
                let blocks = logit_row.chunks(s).zip(pixel_row.chunks(s));
                for ((logit_sum, byte_sum), (block_logits, block_pixels)) in
                    logit_sums.iter_mut().zip(byte_sums.iter_mut()).zip(blocks)
                {
                    let mut l = 0.0f32;
                    let mut c = [0u32; 3];
                    for (&v, px) in block_logits.iter().zip(block_pixels) {
                        l += v;
                        c[0] += u32::from(px[0]);
                        c[1] += u32::from(px[1]);
                        c[2] += u32::from(px[2]);
                    }
                    *logit_sum += l;
                    for (total, v) in byte_sum.iter_mut().zip(c) {
                        *total += v;
                    }
                }
            }
            let sums = logit_sums.iter().zip(&byte_sums);
            for (lx, (cell, (&logit_sum, bytes))) in row.iter_mut().zip(sums).enumerate() {
                let cols = s.min(w.saturating_sub(lx * s));
                let count = (cols * rows).max(1) as u32;
                let p = sigmoid(logit_sum * (1.0 / count as f32));
                let q_p = (p * p_levels + 0.5).floor() as u32;
                // A block cut by the frame's edge is scaled up to a whole block's sum, rounded
                // (for a whole block the formula gives the sum itself: skipped, as divisions).
                let [r, g, b] = if count == full {
                    *bytes
                } else {
                    bytes.map(|v| (2 * v * full + count) / (2 * count))
                };
                *cell = match plan.guide {
                    GuideChannels::Colour => [
                        q_p,
                        (r + half) >> shift,
                        (g + half) >> shift,
                        (b + half) >> shift,
                    ],
                    GuideChannels::Luminance => {
                        [q_p, (lr * r + lg * g + lb * b + half) >> shift, 0, 0]
                    }
                };
            }
        }
    });
}

/// What a box sum adds up: `u32` levels (wrapping, exact mod 2³²) or `f64` coefficients.
trait Summand: Copy + Default {
    fn plus(self, other: Self) -> Self;
    fn minus(self, other: Self) -> Self;
}

impl Summand for u32 {
    #[inline]
    fn plus(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    #[inline]
    fn minus(self, other: Self) -> Self {
        self.wrapping_sub(other)
    }
}

impl Summand for f64 {
    #[inline]
    fn plus(self, other: Self) -> Self {
        self + other
    }
    #[inline]
    fn minus(self, other: Self) -> Self {
        self - other
    }
}

#[inline]
fn add_to<T: Summand, const N: usize>(sum: &mut [T; N], values: &[T; N]) {
    for (s, &v) in sum.iter_mut().zip(values) {
        *s = s.plus(v);
    }
}

#[inline]
fn take_from<T: Summand, const N: usize>(sum: &mut [T; N], values: &[T; N]) {
    for (s, &v) in sum.iter_mut().zip(values) {
        *s = s.minus(v);
    }
}

/// The number of cells of the window of radius `r` around `i` on an axis of `len` cells (the
/// window is cut at the borders: the mean is of what is inside, as in He's reference code).
#[inline]
fn window_len(i: usize, r: usize, len: usize) -> usize {
    (i + r + 1).min(len) - i.saturating_sub(r)
}

/// Box sums over the window of radius `r` (cut at the borders) of `stats(cell)` for the rows
/// `rows` of a `w × h` grid, handing each row of sums to `emit(y, sums)`.
///
/// Separable running sums, so the cost does not depend on `r`: along each row as it enters the
/// window, then per column over the window's rows, which a ring of `2r + 1` rows keeps to be
/// subtracted as they leave. A band starts by summing the `r` rows above its first, so bands are
/// independent and can run on threads. With `u32` levels the sums are exact in any order (the
/// GPU sums each window directly and gets the same bits).
fn box_sums<C: Copy, T: Summand, const N: usize>(
    cells: &[C],
    (w, h, r): (usize, usize, usize),
    rows: Range<usize>,
    stats: impl Fn(C) -> [T; N],
    mut emit: impl FnMut(usize, &[[T; N]]),
) {
    let horizontal = |y: usize, out: &mut [[T; N]]| {
        let row = cells.get(y * w..(y + 1) * w).unwrap_or_default();
        let mut sum = [T::default(); N];
        for &cell in row.iter().take(r) {
            add_to(&mut sum, &stats(cell));
        }
        for (x, total) in out.iter_mut().enumerate() {
            if let Some(&entering) = row.get(x + r) {
                add_to(&mut sum, &stats(entering));
            }
            if let Some(&leaving) = x.checked_sub(r + 1).and_then(|i| row.get(i)) {
                take_from(&mut sum, &stats(leaving));
            }
            *total = sum;
        }
    };
    // Row `y`'s horizontal sums live in slot `y % slots` while it is in the window, which spans
    // at most `2r + 1` rows and at most the grid (a radius larger than the grid needs no more).
    let slots = (2 * r + 1).min(h).max(1);
    let mut ring = vec![[T::default(); N]; slots * w];
    let slot = |y: usize| (y % slots) * w..(y % slots + 1) * w;
    let mut columns = vec![[T::default(); N]; w];
    let enter = |ring: &mut [[T; N]], columns: &mut [[T; N]], y: usize| {
        if let Some(sums) = ring.get_mut(slot(y)) {
            horizontal(y, sums);
            for (column, sum) in columns.iter_mut().zip(sums.iter()) {
                add_to(column, sum);
            }
        }
    };
    let first = rows.start;
    for y in first.saturating_sub(r)..(first + r).min(h) {
        enter(&mut ring, &mut columns, y);
    }
    for y in rows {
        // The row leaving was summed only if it was in the band's first window or entered since;
        // it leaves before the entering row takes its slot.
        if y > first
            && let Some(leaving) = y.checked_sub(r + 1)
            && let Some(old) = ring.get(slot(leaving))
        {
            for (column, sum) in columns.iter_mut().zip(old) {
                take_from(column, sum);
            }
        }
        if y + r < h {
            enter(&mut ring, &mut columns, y + r);
        }
        emit(y, &columns);
    }
}

/// `a` and `b` per grid cell, `[a_r, a_g, a_b, b]` (a luminance guide uses `a_r` alone, the
/// others are 0): the linear fit of `p` to `I` over each window, regularised by ε, from the
/// window's exact integer sums ([`window_coefficients`]).
fn ab(grid: &[[u32; 4]], plan: &RefinePlan, threads: usize, out: &mut [[f32; 4]]) {
    match plan.guide {
        GuideChannels::Luminance => ab_from_sums(
            grid,
            plan,
            threads,
            out,
            |[p, y, _, _]| [p, y, y.wrapping_mul(y), y.wrapping_mul(p)],
            |&[p, y, yy, yp]| [p, y, yy, yp, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        GuideChannels::Colour => ab_from_sums(
            grid,
            plan,
            threads,
            out,
            |[p, r, g, b]| {
                [
                    p,
                    r,
                    g,
                    b,
                    r.wrapping_mul(r),
                    r.wrapping_mul(g),
                    r.wrapping_mul(b),
                    g.wrapping_mul(g),
                    g.wrapping_mul(b),
                    b.wrapping_mul(b),
                    r.wrapping_mul(p),
                    g.wrapping_mul(p),
                    b.wrapping_mul(p),
                ]
            },
            |sums| *sums,
        ),
    }
}

fn ab_from_sums<const N: usize>(
    grid: &[[u32; 4]],
    plan: &RefinePlan,
    threads: usize,
    out: &mut [[f32; 4]],
    stats: impl Fn([u32; 4]) -> [u32; N] + Sync,
    widen: impl Fn(&[u32; N]) -> [u32; COLOUR_STATS] + Sync,
) {
    let (w, h, r) = (plan.low_w, plan.low_h, plan.low_radius);
    let counts_x: Vec<u32> = (0..w).map(|x| window_len(x, r, w) as u32).collect();
    let constants = plan.window_constants();
    for_bands(out, w, threads, |band, first_row| {
        let rows = first_row..first_row + band.len() / w.max(1);
        let mut dst = band.chunks_exact_mut(w);
        box_sums(grid, (w, h, r), rows, &stats, |y, sums| {
            let count_y = window_len(y, r, h) as u32;
            if let Some(dst) = dst.next() {
                for ((d, s), &count_x) in dst.iter_mut().zip(sums).zip(&counts_x) {
                    *d = window_coefficients(&widen(s), count_x * count_y, &constants);
                }
            }
        });
    });
}

/// `ā` and `b̄`: the box means of `a` and `b`. `ā` comes out already multiplied by what turns a
/// guide byte into the guide's value (1/255, and the luminance weights for a luminance guide), so
/// that the full-resolution pass does `ā·bytes + b̄` with no conversion per pixel.
fn coefficient_means(ab: &[[f32; 4]], plan: &RefinePlan, threads: usize, out: &mut [[f32; 4]]) {
    let scale = match plan.guide {
        GuideChannels::Colour => [1.0 / 255.0; 3],
        GuideChannels::Luminance => {
            LUMA_WEIGHTS.map(|w| f64::from(w) / f64::from(LUMA_DENOMINATOR) / 255.0)
        }
    };
    let luminance = plan.guide == GuideChannels::Luminance;
    let (w, h, r) = (plan.low_w, plan.low_h, plan.low_radius);
    let inverse_x: Vec<f64> = (0..w).map(|x| 1.0 / window_len(x, r, w) as f64).collect();
    for_bands(out, w, threads, |band, first_row| {
        let rows = first_row..first_row + band.len() / w.max(1);
        let mut dst = band.chunks_exact_mut(w);
        let stats = |cell: [f32; 4]| cell.map(f64::from);
        box_sums(ab, (w, h, r), rows, stats, |y, sums| {
            let inverse_y = 1.0 / window_len(y, r, h) as f64;
            let Some(dst) = dst.next() else {
                return;
            };
            for ((d, sum), &inverse_x) in dst.iter_mut().zip(sums).zip(&inverse_x) {
                let [a0, a1, a2, b] = sum.map(|s| s * (inverse_x * inverse_y));
                // A luminance guide's single `ā` weighs all three bytes.
                let a = if luminance { [a0; 3] } else { [a0, a1, a2] };
                let mut scaled = [0.0f32; 3];
                for ((s, a), k) in scaled.iter_mut().zip(a).zip(scale) {
                    *s = (a * k) as f32;
                }
                let [a0, a1, a2] = scaled;
                *d = [a0, a1, a2, b as f32];
            }
        });
    });
}

/// One axis' bilinear position on the grid of a full-resolution coordinate: the grid cell's
/// centre is at `s·i + (s − 1) / 2`, so `u = (x + ½) / s − ½`, clamped to the grid.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    w1: f32,
}

fn grid_taps(full: usize, low: usize, s: usize) -> Vec<Tap> {
    let last = low.saturating_sub(1);
    (0..full)
        .map(|x| {
            let u = ((x as f32 + 0.5) / s as f32 - 0.5).max(0.0);
            // `u` is finite and non-negative, so the cast is a floor.
            let i0 = (u as usize).min(last);
            let i1 = (i0 + 1).min(last);
            Tap {
                i0,
                i1,
                w1: if i0 == last { 0.0 } else { u - i0 as f32 },
            }
        })
        .collect()
}

/// `a + t·(b − a)` per value.
#[inline]
fn lerp4(a: [f32; 4], b: [f32; 4], t: f32) -> [f32; 4] {
    [
        a[0] + t * (b[0] - a[0]),
        a[1] + t * (b[1] - a[1]),
        a[2] + t * (b[2] - a[2]),
        a[3] + t * (b[3] - a[3]),
    ]
}

/// `q = ā·I + b̄` at full resolution, clamped to [0, 1] (or its logit), written over `out`.
fn apply(
    coefficients: &[[f32; 4]],
    pixels: &[[u8; 3]],
    plan: &RefinePlan,
    threads: usize,
    output: Output,
    out: &mut [f32],
) {
    let (w, lw) = (plan.width, plan.low_w);
    let xs = grid_taps(plan.width, plan.low_w, plan.subsample);
    let ys = grid_taps(plan.height, plan.low_h, plan.subsample);
    let grid_row = |i: usize| coefficients.get(i * lw..(i + 1) * lw).unwrap_or_default();
    // (length, i0, i1) of each run of columns sharing their grid columns, left to right.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for tx in &xs {
        match runs.last_mut() {
            Some((len, i0, i1)) if (*i0, *i1) == (tx.i0, tx.i1) => *len += 1,
            _ => runs.push((1, tx.i0, tx.i1)),
        }
    }
    for_bands(out, w, threads, |band, first_row| {
        // The row's coefficients: on the grid, interpolated vertically once per row...
        let mut row_ab = vec![[0.0f32; 4]; lw];
        // ...then per pixel. Laid out apart from the pixels' arithmetic so that both loops are
        // simple enough for the compiler to vectorise.
        let mut row_c = vec![[0.0f32; 4]; w];
        let rows = band
            .chunks_exact_mut(w)
            .zip(ys.iter().skip(first_row))
            .zip(pixels.chunks_exact(w).skip(first_row));
        for ((row, ty), pixel_row) in rows {
            for ((v, &t), &b) in row_ab.iter_mut().zip(grid_row(ty.i0)).zip(grid_row(ty.i1)) {
                *v = lerp4(t, b, ty.w1);
            }
            // Pixels come in runs that share their two grid columns: the coefficients are looked
            // up once per run.
            let (mut cs, mut taps) = (&mut row_c[..], &xs[..]);
            for &(len, i0, i1) in &runs {
                let (Some((c_run, c_rest)), Some((t_run, t_rest))) =
                    (cs.split_at_mut_checked(len), taps.split_at_checked(len))
                else {
                    break;
                };
                (cs, taps) = (c_rest, t_rest);
                let (Some(&c0), Some(&c1)) = (row_ab.get(i0), row_ab.get(i1)) else {
                    continue;
                };
                for (c, tx) in c_run.iter_mut().zip(t_run) {
                    *c = lerp4(c0, c1, tx.w1);
                }
            }
            for ((q, c), &[r, g, b]) in row.iter_mut().zip(&row_c).zip(pixel_row) {
                let value = c[3] + c[0] * f32::from(r) + c[1] * f32::from(g) + c[2] * f32::from(b);
                *q = value.clamp(0.0, 1.0);
            }
            if output == Output::Logits {
                for q in row.iter_mut() {
                    *q = alpha_to_logit(*q);
                }
            }
        }
    });
}

fn resolve_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Runs `work` on bands of whole rows (of `row_len` values) on up to `threads` threads (0: the
/// machine's parallelism); `work` gets a band and the index of its first row.
fn for_bands<T: Send>(
    data: &mut [T],
    row_len: usize,
    threads: usize,
    work: impl Fn(&mut [T], usize) + Sync,
) {
    let rows = data.len() / row_len.max(1);
    let threads = resolve_threads(threads).clamp(1, rows.max(1));
    if threads == 1 {
        work(data, 0);
        return;
    }
    let rows_per_band = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        for (band_index, band) in data.chunks_mut(rows_per_band * row_len).enumerate() {
            let work = &work;
            scope.spawn(move || work(band, band_index * rows_per_band));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::refine::solve_symmetric3;
    use super::*;

    #[test]
    fn symmetric_solve_inverts() {
        let s = [4.0, 1.0, 0.5, 3.0, 0.25, 2.0];
        let [rr, rg, rb, gg, gb, bb] = s;
        let a = solve_symmetric3(s, [1.0, 2.0, 3.0]);
        let back = [
            rr * a[0] + rg * a[1] + rb * a[2],
            rg * a[0] + gg * a[1] + gb * a[2],
            rb * a[0] + gb * a[1] + bb * a[2],
        ];
        for (b, v) in back.iter().zip([1.0, 2.0, 3.0]) {
            assert!((b - v).abs() < 1e-5, "{back:?}");
        }
    }

    /// Every band split (including bands that start past the first `r` rows, where the running
    /// sums must not subtract rows they never added) gives the direct sum over the cut window, in
    /// f64 and in wrapping u32.
    #[test]
    fn box_sums_match_a_direct_sum_with_cut_windows_in_any_band() {
        for (w, h, r) in [(7, 9, 2), (4, 3, 5), (5, 6, 3)] {
            box_sums_match_a_direct_sum(w, h, r);
        }
    }

    fn box_sums_match_a_direct_sum(w: usize, h: usize, r: usize) {
        let cells: Vec<[f32; 4]> = (0..w * h)
            .map(|i| [((i * 37) % 11) as f32 * 0.1, (i % 5) as f32, 0.0, 1.0])
            .collect();
        for start in 0..h {
            for end in start + 1..=h {
                box_sums(
                    &cells,
                    (w, h, r),
                    start..end,
                    |c| c.map(f64::from),
                    |y, sums| {
                        assert!((start..end).contains(&y));
                        for (x, sum) in sums.iter().enumerate() {
                            let (mut direct, mut n) = ([0.0f64; 4], 0);
                            for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                                for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                                    for (s, v) in direct.iter_mut().zip(cells[yy * w + xx]) {
                                        *s += f64::from(v);
                                    }
                                    n += 1;
                                }
                            }
                            assert_eq!(n, window_len(x, r, w) * window_len(y, r, h));
                            for (m, s) in sum.iter().zip(direct) {
                                assert!((m - s).abs() < 1e-9, "{y} {x}");
                            }
                        }
                    },
                );
                // Levels near 2³² wrap, and the running sums still give the exact sum mod 2³².
                box_sums(
                    &cells,
                    (w, h, r),
                    start..end,
                    |c| c.map(|v| (v * 10.0) as u32 ^ 0xfff0_0000),
                    |y, sums| {
                        for (x, sum) in sums.iter().enumerate() {
                            let mut direct = [0u32; 4];
                            for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                                for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                                    let v =
                                        cells[yy * w + xx].map(|v| (v * 10.0) as u32 ^ 0xfff0_0000);
                                    for (s, v) in direct.iter_mut().zip(v) {
                                        *s = s.wrapping_add(v);
                                    }
                                }
                            }
                            assert_eq!(*sum, direct, "{y} {x}");
                        }
                    },
                );
            }
        }
    }
}
