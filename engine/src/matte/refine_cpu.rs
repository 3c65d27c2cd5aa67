//! Refine Edges on the CPU: the passes of the fast guided filter (see `refine.rs` for the filter
//! itself) and [`EdgeRefiner`], which owns the buffers they reuse from frame to frame.
//!
//! Three passes, each split into bands of rows over the threads:
//! 1. **subsample**: the full-resolution logits and guide → the grid's block means `[p, I]`;
//! 2. **coefficients**: per grid cell, the box means of `p`, `I`, `I·Iᵀ` and `I·p` → `a` and `b`,
//!    then the box means of those → `ā` and `b̄`;
//! 3. **apply**: `q = ā·I + b̄` at full resolution, written over the logits.
//!
//! Why it is laid out this way (1080p had to come down from 21 to under 15 ms on two threads):
//! a box mean is one pass of separable running sums per band of rows, the statistics (`I·Iᵀ`,
//! `I·p`) formed as a row enters the window rather than stored as planes; nothing of the grid's or
//! the frame's size is allocated per frame (the buffers live in [`EdgeRefiner`] and the result
//! overwrites the logits); the guide's bytes are summed as integers and scaled once per cell, or
//! folded into the coefficients, never converted per pixel; and the full-resolution pass is split
//! into loops simple enough for the compiler to vectorise.

use std::ops::Range;
use std::time::{Duration, Instant};

use super::error::{MatteError, check_buffer};
use super::refine::{
    EdgeRefinement, Guide, GuideChannels, Output, RefinePlan, alpha_to_logit, check_guide, sigmoid,
};

/// Rec. 709 luminance weights, as the luminance guide uses them.
const LUMA: [f32; 3] = [0.2126, 0.7152, 0.0722];

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
    /// The subsampled grid: `[p, g0, g1, g2]` per cell.
    grid: Vec<[f32; 4]>,
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
        for buffer in [&mut self.grid, &mut self.ab, &mut self.coefficients] {
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

/// The subsampled grid, one cell per `s × s` block: `[p, g0, g1, g2]`, the probability and the
/// guide's channels in [0, 1] (a luminance guide fills `g0` alone).
///
/// A cell's probability is the sigmoid of its block's mean logit rather than the mean of the
/// block's sigmoids: the upsampled logits are bilinear within a logit cell, which is larger than
/// a block, so the two differ by little, and this spends one exponential per cell instead of one
/// per pixel. The guide's bytes are summed as integers (exact) and scaled once per cell.
fn subsample(
    logits: &[f32],
    pixels: &[[u8; 3]],
    plan: &RefinePlan,
    threads: usize,
    grid: &mut [[f32; 4]],
) {
    let (w, h, s) = (plan.width, plan.height, plan.subsample);
    let lw = plan.low_w;
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
                let inv = 1.0 / (cols * rows).max(1) as f32;
                let p = sigmoid(logit_sum * inv);
                let [r, g, b] = bytes.map(|v| v as f32 * (inv / 255.0));
                *cell = match plan.guide {
                    GuideChannels::Colour => [p, r, g, b],
                    GuideChannels::Luminance => {
                        [p, LUMA[0] * r + LUMA[1] * g + LUMA[2] * b, 0.0, 0.0]
                    }
                };
            }
        }
    });
}

/// Box means over the window of radius `r` (cut at the borders: the mean of what is inside, as
/// in He's reference code) of `stats(cell)` for the rows `rows` of a `w × h` grid, handing each
/// row of means to `emit(y, means)`.
///
/// Separable running sums in f64, so the cost does not depend on `r` and the sums lose nothing:
/// along each row as it enters the window (its horizontal means rounded to f32, as the GPU's
/// `box_h` stores them: the colour guide's `a` is sensitive to that rounding, see [`ab`]), then
/// per column over the window's rows, which a ring of `2r + 1` rows keeps to be subtracted as
/// they leave. A band starts by summing the `r` rows above its first, so bands are independent
/// and can run on threads.
fn box_means<const N: usize>(
    cells: &[[f32; 4]],
    (w, h, r): (usize, usize, usize),
    rows: Range<usize>,
    stats: impl Fn([f32; 4]) -> [f32; N],
    mut emit: impl FnMut(usize, &[[f32; N]]),
) {
    // 1 / (window width) per column, once: a division per value was most of the grid's time.
    let inverse_x: Vec<f64> = (0..w)
        .map(|x| 1.0 / ((x + r + 1).min(w) - x.saturating_sub(r)) as f64)
        .collect();
    let horizontal = |y: usize, out: &mut [[f32; N]]| {
        let row = cells.get(y * w..(y + 1) * w).unwrap_or_default();
        let mut sum = [0.0f64; N];
        for &cell in row.iter().take(r) {
            for (s, v) in sum.iter_mut().zip(stats(cell)) {
                *s += f64::from(v);
            }
        }
        for (x, (mean, &inverse)) in out.iter_mut().zip(&inverse_x).enumerate() {
            if let Some(&entering) = row.get(x + r) {
                for (s, v) in sum.iter_mut().zip(stats(entering)) {
                    *s += f64::from(v);
                }
            }
            if let Some(&leaving) = x.checked_sub(r + 1).and_then(|i| row.get(i)) {
                for (s, v) in sum.iter_mut().zip(stats(leaving)) {
                    *s -= f64::from(v);
                }
            }
            *mean = sum.map(|s| (s * inverse) as f32);
        }
    };
    // Row `y`'s horizontal means live in slot `y % slots` while it is in the window, which spans
    // at most `2r + 1` rows and at most the grid (a radius larger than the grid needs no more).
    let slots = (2 * r + 1).min(h).max(1);
    let mut ring = vec![[0.0f32; N]; slots * w];
    let slot = |y: usize| (y % slots) * w..(y % slots + 1) * w;
    let mut columns = vec![[0.0f64; N]; w];
    let enter = |ring: &mut [[f32; N]], columns: &mut [[f64; N]], y: usize| {
        if let Some(means) = ring.get_mut(slot(y)) {
            horizontal(y, means);
            for (column, mean) in columns.iter_mut().zip(means.iter()) {
                for (c, &m) in column.iter_mut().zip(mean) {
                    *c += f64::from(m);
                }
            }
        }
    };
    let first = rows.start;
    for y in first.saturating_sub(r)..(first + r).min(h) {
        enter(&mut ring, &mut columns, y);
    }
    let mut means = vec![[0.0f32; N]; w];
    for y in rows {
        // The row leaving was summed only if it was in the band's first window or entered since;
        // it leaves before the entering row takes its slot.
        if y > first
            && let Some(leaving) = y.checked_sub(r + 1)
            && let Some(old) = ring.get(slot(leaving))
        {
            for (column, mean) in columns.iter_mut().zip(old) {
                for (c, &m) in column.iter_mut().zip(mean) {
                    *c -= f64::from(m);
                }
            }
        }
        if y + r < h {
            enter(&mut ring, &mut columns, y + r);
        }
        let inverse_y = 1.0 / ((y + r + 1).min(h) - y.saturating_sub(r)) as f64;
        for (mean, column) in means.iter_mut().zip(&columns) {
            *mean = column.map(|c| (c * inverse_y) as f32);
        }
        emit(y, &means);
    }
}

/// Runs [`box_means`] over bands of the grid's rows on up to `threads` threads, each band writing
/// `out(means) ` per cell of its own rows.
fn box_means_into<const N: usize>(
    cells: &[[f32; 4]],
    plan: &RefinePlan,
    threads: usize,
    out: &mut [[f32; 4]],
    stats: impl Fn([f32; 4]) -> [f32; N] + Sync,
    value: impl Fn(&[f32; N]) -> [f32; 4] + Sync,
) {
    let (w, h, r) = (plan.low_w, plan.low_h, plan.low_radius);
    for_bands(out, w, threads, |band, first_row| {
        let rows = first_row..first_row + band.len() / w.max(1);
        let mut dst = band.chunks_exact_mut(w);
        box_means(cells, (w, h, r), rows, &stats, |_, means| {
            if let Some(dst) = dst.next() {
                for (d, m) in dst.iter_mut().zip(means) {
                    *d = value(m);
                }
            }
        });
    });
}

/// `a` and `b` per grid cell, `[a_r, a_g, a_b, b]` (a luminance guide uses `a_r` alone, the
/// others are 0): the linear fit of `p` to `I` over each window, regularised by ε.
///
/// The statistics are formed and `a`, `b` solved in f32, only the sums are f64: with ε = 1e-4 a
/// variance's rounding is magnified into `a`, and the GPU (f32 throughout) agrees within 1e-4 only
/// while both round the same quantities the same way.
fn ab(grid: &[[f32; 4]], plan: &RefinePlan, threads: usize, out: &mut [[f32; 4]]) {
    let eps = plan.epsilon;
    match plan.guide {
        GuideChannels::Luminance => box_means_into(
            grid,
            plan,
            threads,
            out,
            |[p, i, _, _]| [p, i, i * i, i * p],
            |means| {
                let [mean_p, mean_i, mean_ii, mean_ip] = *means;
                let var = mean_ii - mean_i * mean_i;
                let cov = mean_ip - mean_i * mean_p;
                let a = cov / (var + eps);
                [a, 0.0, 0.0, mean_p - a * mean_i]
            },
        ),
        GuideChannels::Colour => box_means_into(
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
                    r * r,
                    r * g,
                    r * b,
                    g * g,
                    g * b,
                    b * b,
                    r * p,
                    g * p,
                    b * p,
                ]
            },
            |means| {
                let [mean_p, mr, mg, mb, rr, rg, rb, gg, gb, bb, rp, gp, bp] = *means;
                // Σ + εU, symmetric.
                let sigma = [
                    rr - mr * mr + eps,
                    rg - mr * mg,
                    rb - mr * mb,
                    gg - mg * mg + eps,
                    gb - mg * mb,
                    bb - mb * mb + eps,
                ];
                let cov = [rp - mr * mean_p, gp - mg * mean_p, bp - mb * mean_p];
                let [a0, a1, a2] = solve_symmetric3(sigma, cov);
                [a0, a1, a2, mean_p - a0 * mr - a1 * mg - a2 * mb]
            },
        ),
    }
}

/// `ā` and `b̄`: the box means of `a` and `b`. `ā` comes out already multiplied by what turns a
/// guide byte into the guide's value (1/255, and the luminance weights for a luminance guide), so
/// that the full-resolution pass does `ā·bytes + b̄` with no conversion per pixel.
fn coefficient_means(ab: &[[f32; 4]], plan: &RefinePlan, threads: usize, out: &mut [[f32; 4]]) {
    let scale = match plan.guide {
        GuideChannels::Colour => [1.0 / 255.0; 3],
        GuideChannels::Luminance => LUMA.map(|w| f64::from(w) / 255.0),
    };
    let luminance = plan.guide == GuideChannels::Luminance;
    box_means_into(
        ab,
        plan,
        threads,
        out,
        |cell| cell,
        |&[a0, a1, a2, b]| {
            // A luminance guide's single `ā` weighs all three bytes.
            let a = if luminance { [a0; 3] } else { [a0, a1, a2] };
            let mut scaled = [0.0f32; 3];
            for ((s, a), k) in scaled.iter_mut().zip(a).zip(scale) {
                *s = (f64::from(a) * k) as f32;
            }
            let [a0, a1, a2] = scaled;
            [a0, a1, a2, b]
        },
    );
}

/// Solves `S·a = v` for a symmetric positive-definite 3×3 `S` (`[rr, rg, rb, gg, gb, bb]`) by its
/// adjugate, as the reference implementation does. `S` has ε on its diagonal, so it is never
/// singular.
#[inline]
fn solve_symmetric3([rr, rg, rb, gg, gb, bb]: [f32; 6], v: [f32; 3]) -> [f32; 3] {
    let i_rr = gg * bb - gb * gb;
    let i_rg = gb * rb - rg * bb;
    let i_rb = rg * gb - gg * rb;
    let i_gg = rr * bb - rb * rb;
    let i_gb = rb * rg - rr * gb;
    let i_bb = rr * gg - rg * rg;
    let det = i_rr * rr + i_rg * rg + i_rb * rb;
    let inv = 1.0 / det;
    [
        (i_rr * v[0] + i_rg * v[1] + i_rb * v[2]) * inv,
        (i_rg * v[0] + i_gg * v[1] + i_gb * v[2]) * inv,
        (i_rb * v[0] + i_gb * v[1] + i_bb * v[2]) * inv,
    ]
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
    /// sums must not subtract rows they never added) gives the direct sum over the cut window.
    #[test]
    fn box_means_match_a_direct_sum_with_cut_windows_in_any_band() {
        for (w, h, r) in [(7, 9, 2), (4, 3, 5), (5, 6, 3)] {
            box_means_match_a_direct_sum(w, h, r);
        }
    }

    fn box_means_match_a_direct_sum(w: usize, h: usize, r: usize) {
        let cells: Vec<[f32; 4]> = (0..w * h)
            .map(|i| [((i * 37) % 11) as f32 * 0.1, (i % 5) as f32, 0.0, 1.0])
            .collect();
        for start in 0..h {
            for end in start + 1..=h {
                box_means(
                    &cells,
                    (w, h, r),
                    start..end,
                    |c| c,
                    |y, means| {
                        assert!((start..end).contains(&y));
                        for (x, mean) in means.iter().enumerate() {
                            let (mut sum, mut n) = ([0.0f64; 4], 0);
                            for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                                for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                                    for (s, v) in sum.iter_mut().zip(cells[yy * w + xx]) {
                                        *s += f64::from(v);
                                    }
                                    n += 1;
                                }
                            }
                            for (m, s) in mean.iter().zip(sum) {
                                assert!((f64::from(*m) - s / n as f64).abs() < 1e-6, "{y} {x}");
                            }
                        }
                    },
                );
            }
        }
    }
}
