//! Refine Edges: the fast guided filter (He, Sun, Tang; He and Sun 2015) of the upsampled mask
//! probability, with the source frame as the guide.
//!
//! SAM 2 hands over its mask as 256×256 logits for the whole frame, so at 1080p one logit covers
//! about 7 pixels and at 4K about 15: upsampled bilinearly, an edge is a smooth blob that ignores
//! the image. The guided filter fits, in every window of radius `r`, the probability `p` as a
//! linear function of the guide, `q = a·I + b`; where the window straddles an edge of the image,
//! `q` follows that edge at the guide's full resolution. ε sets how strong an edge of the image
//! must be to be followed (a variance in the guide's units, which are [0, 1] here).
//!
//! The fast form computes `a` and `b` on a grid subsampled by `s` (block means of the guide and
//! the probability), with box filters of radius `r / s` made of running sums, so the cost is
//! linear in the pixels and independent of the radius. Only the last step, `q = ā·I + b̄` with `ā`
//! and `b̄` interpolated bilinearly, runs at full resolution.
//!
//! The result goes back to logits (`ln(q / (1 − q))`, within ±[`LOGIT_LIMIT`]), so that threshold,
//! softness and the rest of finishing act on it as on the model's own logits: threshold 0 cuts at
//! q = ½ and softness 1 gives `q` itself.
//!
//! The steps are laid out so that `shaders/guided_filter.wgsl` can run the same arithmetic on the
//! GPU ([`RefinePlan`] is what both share; see `refine_gpu.rs` and
//! [`GpuUpsampler::upsample_refined`](super::GpuUpsampler::upsample_refined)).

use serde::{Deserialize, Serialize};

use super::error::{MatteError, check_buffer};

/// The logits the refined matte is clamped to: sigmoid(±16) is within 1.2e-7 of 0 and 1, below
/// what a 16-bit matte can show.
pub const LOGIT_LIMIT: f32 = 16.0;

/// The default ε (a variance of the guide, whose values are in [0, 1]): 0.01², the usual choice,
/// so that an edge of contrast above about 0.01 is followed. On the ground-truth clips of
/// `./bench.sh` smaller values still score a little higher (their composited edges are crisper
/// and their textures smoother than a camera's), 1e-3 clearly lower; 1e-4 is kept so that real
/// grain and texture are not followed as edges.
pub const DEFAULT_EPSILON: f32 = 1e-4;

/// The default radius per 1024 pixels of the frame's longer side: 15 pixels at 1080p, 30 at 4K,
/// about two of SAM 2's logit cells, which is how far the upsampled edge can be off.
pub const DEFAULT_RADIUS_PER_1024: f32 = 8.0;

/// The longer side of the subsampled grid the coefficients are computed on (about twice the
/// logits' resolution, so the grid is finer than what is being refined).
const GRID_TARGET: f32 = 480.0;

/// Which channels of the frame guide the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuideChannels {
    /// Red, green and blue, with the full 3×3 covariance per window: follows edges between
    /// colours of equal brightness.
    #[default]
    Colour,
    /// Rec. 709 luminance: cheaper, and enough where the object and background differ in
    /// brightness.
    Luminance,
}

/// The Refine Edges settings; a user setting (serde-friendly for the plugin's saved state).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeRefinement {
    /// The guide's channels.
    pub guide: GuideChannels,
    /// Window radius in pixels of the frame; `None` scales with the frame
    /// ([`DEFAULT_RADIUS_PER_1024`] per 1024 pixels of its longer side). Must be 1 or more.
    pub radius: Option<f32>,
    /// ε, the regularisation: larger values follow only stronger edges. Must be above 0.
    pub epsilon: f32,
}

impl Default for EdgeRefinement {
    fn default() -> Self {
        Self {
            guide: GuideChannels::Colour,
            radius: None,
            epsilon: DEFAULT_EPSILON,
        }
    }
}

impl EdgeRefinement {
    /// Checks the values a host could get wrong (NaN, a zero radius or ε).
    pub fn validate(&self) -> Result<(), MatteError> {
        if let Some(radius) = self.radius
            && !(radius.is_finite() && radius >= 1.0)
        {
            return Err(MatteError::InvalidSetting {
                name: "edge radius",
                value: radius.to_string(),
                requirement: "1 or more",
            });
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(MatteError::InvalidSetting {
                name: "edge epsilon",
                value: self.epsilon.to_string(),
                requirement: "above 0",
            });
        }
        Ok(())
    }

    /// The radius in pixels of a `width × height` frame.
    pub fn radius_for(&self, width: usize, height: usize) -> f32 {
        self.radius.unwrap_or_else(|| {
            (width.max(height) as f32 / 1024.0 * DEFAULT_RADIUS_PER_1024)
                .round()
                .max(1.0)
        })
    }

    /// The resolved sizes and constants for a `width × height` frame.
    pub fn plan(&self, width: usize, height: usize) -> Result<RefinePlan, MatteError> {
        self.validate()?;
        super::error::check_size("refined matte", width, height)?;
        let longer = width.max(height) as f32;
        let subsample = ((longer / GRID_TARGET).round() as usize).max(1);
        let radius = self.radius_for(width, height);
        Ok(RefinePlan {
            width,
            height,
            subsample,
            low_w: width.div_ceil(subsample),
            low_h: height.div_ceil(subsample),
            low_radius: ((radius / subsample as f32).round() as usize).max(1),
            epsilon: self.epsilon,
            guide: self.guide,
        })
    }
}

/// A frame as the guide: `width · height · 3` bytes of RGB, row-major, top row first (the layout
/// of [`crate::RgbFrame`]).
#[derive(Debug, Clone, Copy)]
pub struct Guide<'a> {
    pub rgb: &'a [u8],
    pub width: usize,
    pub height: usize,
}

/// The filter's parameters resolved for one frame size; the CPU and the GPU run the same plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefinePlan {
    /// The frame's size.
    pub width: usize,
    pub height: usize,
    /// The subsampling factor `s`: each grid cell is the mean of an `s × s` block.
    pub subsample: usize,
    /// The grid's size, `⌈width / s⌉ × ⌈height / s⌉`.
    pub low_w: usize,
    pub low_h: usize,
    /// The box radius on the grid, `round(r / s)`, at least 1.
    pub low_radius: usize,
    /// ε.
    pub epsilon: f32,
    /// The guide's channels.
    pub guide: GuideChannels,
}

/// Refines upsampled `width × height` logits with the frame as the guide and returns logits
/// again (see the module documentation). `threads` splits the full-resolution passes into bands
/// (0: as many as the machine has).
pub fn refine_edges(
    logits: &[f32],
    guide: Guide<'_>,
    settings: &EdgeRefinement,
    threads: usize,
) -> Result<Vec<f32>, MatteError> {
    refine(logits, guide, settings, threads, Output::Logits)
}

/// [`refine_edges`] without the conversion back to logits: the refined probability in [0, 1].
pub fn refine_alpha(
    logits: &[f32],
    guide: Guide<'_>,
    settings: &EdgeRefinement,
    threads: usize,
) -> Result<Vec<f32>, MatteError> {
    refine(logits, guide, settings, threads, Output::Alpha)
}

/// What the full-resolution pass writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Alpha,
    Logits,
}

fn refine(
    logits: &[f32],
    guide: Guide<'_>,
    settings: &EdgeRefinement,
    threads: usize,
    output: Output,
) -> Result<Vec<f32>, MatteError> {
    let plan = settings.plan(guide.width, guide.height)?;
    check_buffer("upsampled logits", logits.len(), plan.width, plan.height)?;
    check_guide(guide, &plan)?;
    let (pixels, _) = guide.rgb.as_chunks::<3>();
    let grid = subsample(logits, pixels, &plan, threads);
    let coefficients = coefficients(&grid, &plan, threads);
    Ok(apply(&coefficients, pixels, &plan, threads, output))
}

pub(crate) fn check_guide(guide: Guide<'_>, plan: &RefinePlan) -> Result<(), MatteError> {
    let expected = plan.width * plan.height * 3;
    if guide.rgb.len() != expected {
        return Err(MatteError::LengthMismatch {
            what: "guide frame (RGB bytes)",
            width: plan.width,
            height: plan.height,
            expected,
            found: guide.rgb.len(),
        });
    }
    Ok(())
}

/// `ln(q / (1 − q))` within ±[`LOGIT_LIMIT`], exactly as the full-resolution pass computes it:
/// the logarithm is a polynomial (error below 2e-6, which moves `sigmoid` of the result by less
/// than 1e-6) because `f32::ln` per pixel was most of the 4K time; its sign is exact, so that the
/// default threshold (logit 0) cuts at q = ½ exactly.
#[inline]
pub fn alpha_to_logit(q: f32) -> f32 {
    // NaN fails `>=` and becomes the lower bound.
    let q = if q >= 1e-7 {
        q.min(1.0 - f32::EPSILON / 2.0)
    } else {
        1e-7
    };
    let ratio = q / (1.0 - q);
    let l = fast_ln(ratio).clamp(-LOGIT_LIMIT, LOGIT_LIMIT);
    if ratio > 1.0 {
        l.max(f32::MIN_POSITIVE)
    } else {
        l.min(0.0)
    }
}

/// `ln x` for a positive normal `x`: the exponent times ln 2 plus `ln m` of the mantissa
/// m ∈ [1, 2) by the series `2·atanh((m − 1) / (m + 1))` to the ninth power.
#[inline]
fn fast_ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = 1.0 + t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    exponent as f32 * std::f32::consts::LN_2 + 2.0 * t * series
}

/// The guide's channel values of one RGB pixel, in [0, 1] (luminance in the first, then zeros).
#[inline]
fn guide_value(rgb: [u8; 3], guide: GuideChannels) -> [f32; 3] {
    const INV: f32 = 1.0 / 255.0;
    let [r, g, b] = rgb.map(|v| f32::from(v) * INV);
    match guide {
        GuideChannels::Colour => [r, g, b],
        GuideChannels::Luminance => [0.2126 * r + 0.7152 * g + 0.0722 * b, 0.0, 0.0],
    }
}

/// `sigmoid(x)`.
#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The subsampled grid, one cell per `s × s` block: `[p, g0, g1, g2]`, the probability and the
/// guide's channels (a luminance guide fills `g0` alone).
///
/// A cell's probability is the sigmoid of its block's mean logit rather than the mean of the
/// block's sigmoids: the upsampled logits are bilinear within a logit cell, which is larger than
/// a block, so the two differ by little, and this spends one exponential per cell instead of one
/// per pixel.
fn subsample(
    logits: &[f32],
    pixels: &[[u8; 3]],
    plan: &RefinePlan,
    threads: usize,
) -> Vec<[f32; 4]> {
    let (w, h, s) = (plan.width, plan.height, plan.subsample);
    let lw = plan.low_w;
    let mut cells = vec![[0.0f32; 4]; lw * plan.low_h];
    for_bands(&mut cells, lw, threads, |band, first_row| {
        let mut sums = vec![[0.0f32; 4]; lw];
        for (row_offset, row) in band.chunks_exact_mut(lw).enumerate() {
            let y0 = (first_row + row_offset) * s;
            let rows = s.min(h.saturating_sub(y0));
            sums.fill([0.0; 4]);
            let logit_rows = logits.chunks_exact(w).skip(y0).take(rows);
            let pixel_rows = pixels.chunks_exact(w).skip(y0).take(rows);
            for (logit_row, pixel_row) in logit_rows.zip(pixel_rows) {
                for ((sum, block_logits), block_pixels) in sums
                    .iter_mut()
                    .zip(logit_row.chunks(s))
                    .zip(pixel_row.chunks(s))
                {
                    let mut acc = [0.0f32; 4];
                    for (&l, &px) in block_logits.iter().zip(block_pixels) {
                        let g = guide_value(px, plan.guide);
                        acc[0] += l;
                        acc[1] += g[0];
                        acc[2] += g[1];
                        acc[3] += g[2];
                    }
                    for (total, a) in sum.iter_mut().zip(acc) {
                        *total += a;
                    }
                }
            }
            for (lx, (cell, sum)) in row.iter_mut().zip(&sums).enumerate() {
                let cols = s.min(w.saturating_sub(lx * s));
                let inv = 1.0 / (cols * rows).max(1) as f32;
                *cell = [
                    sigmoid(sum[0] * inv),
                    sum[1] * inv,
                    sum[2] * inv,
                    sum[3] * inv,
                ];
            }
        }
    });
    cells
}

/// The mean over the window of radius `r` around every pixel of a `w × h` plane, the window cut
/// at the borders (the mean of what is inside, as in He's reference code). Running sums in f64,
/// so the cost does not depend on `r` and the sums lose nothing.
fn box_mean(plane: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let mut horizontal = vec![0.0f32; w * h];
    // 1 / (window width) per column, once: a division per value was most of the grid's time.
    let inverse: Vec<f64> = (0..w)
        .map(|x| 1.0 / ((x + r + 1).min(w) - x.saturating_sub(r)) as f64)
        .collect();
    for (src, dst) in plane.chunks_exact(w).zip(horizontal.chunks_exact_mut(w)) {
        let mut acc: f64 = src.iter().take(r).map(|&v| f64::from(v)).sum();
        for ((x, d), &inv) in dst.iter_mut().enumerate().zip(&inverse) {
            if let Some(&v) = src.get(x + r) {
                acc += f64::from(v);
            }
            if let Some(&v) = x.checked_sub(r + 1).and_then(|i| src.get(i)) {
                acc -= f64::from(v);
            }
            *d = (acc * inv) as f32;
        }
    }
    // Vertical running sums, a row of accumulators at a time.
    let row = |y: usize| horizontal.get(y * w..(y + 1) * w);
    let mut acc = vec![0.0f64; w];
    for y in 0..r.min(h) {
        for (a, &v) in acc.iter_mut().zip(row(y).unwrap_or_default()) {
            *a += f64::from(v);
        }
    }
    let mut out = vec![0.0f32; w * h];
    for (y, dst) in out.chunks_exact_mut(w).enumerate() {
        if let Some(entering) = row(y + r) {
            for (a, &v) in acc.iter_mut().zip(entering) {
                *a += f64::from(v);
            }
        }
        if let Some(leaving) = y.checked_sub(r + 1).and_then(row) {
            for (a, &v) in acc.iter_mut().zip(leaving) {
                *a -= f64::from(v);
            }
        }
        let (lo, hi) = (y.saturating_sub(r), (y + r + 1).min(h));
        let inv = 1.0 / (hi - lo) as f64;
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = (a * inv) as f32;
        }
    }
    out
}

/// The box means of per-cell vectors of `N` values, spread over up to `threads` threads (one
/// plane per value).
fn box_means<const N: usize>(
    cells: &[[f32; N]],
    w: usize,
    h: usize,
    r: usize,
    threads: usize,
) -> Vec<[f32; N]> {
    let planes: Vec<Vec<f32>> = (0..N)
        .map(|c| {
            cells
                .iter()
                .map(|cell| cell.get(c).copied().unwrap_or(0.0))
                .collect()
        })
        .collect();
    let mut means: Vec<Vec<f32>> = vec![Vec::new(); N];
    let threads = resolve_threads(threads).clamp(1, N.max(1));
    let per = N.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (src, dst) in planes.chunks(per).zip(means.chunks_mut(per)) {
            scope.spawn(move || {
                for (p, d) in src.iter().zip(dst) {
                    *d = box_mean(p, w, h, r);
                }
            });
        }
    });
    let mut out = vec![[0.0f32; N]; cells.len()];
    for (c, plane) in means.iter().enumerate() {
        for (cell, &v) in out.iter_mut().zip(plane) {
            if let Some(slot) = cell.get_mut(c) {
                *slot = v;
            }
        }
    }
    out
}

fn resolve_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The box-filtered coefficients on the grid, per cell: `[ā_r, ā_g, ā_b, b̄]` (a luminance guide
/// uses `ā_r` alone, the others are 0).
fn coefficients(grid: &[[f32; 4]], plan: &RefinePlan, threads: usize) -> Vec<[f32; 4]> {
    let (w, h, r) = (plan.low_w, plan.low_h, plan.low_radius);
    let eps = plan.epsilon;
    let ab: Vec<[f32; 4]> = match plan.guide {
        GuideChannels::Luminance => {
            let stats: Vec<[f32; 4]> = grid
                .iter()
                .map(|&[p, i, _, _]| [p, i, i * i, i * p])
                .collect();
            box_means(&stats, w, h, r, threads)
                .iter()
                .map(|&[mean_p, mean_i, mean_ii, mean_ip]| {
                    let var = mean_ii - mean_i * mean_i;
                    let cov = mean_ip - mean_i * mean_p;
                    let a = cov / (var + eps);
                    [a, 0.0, 0.0, mean_p - a * mean_i]
                })
                .collect()
        }
        GuideChannels::Colour => {
            let stats: Vec<[f32; 13]> = grid
                .iter()
                .map(|&[p, r_, g_, b_]| {
                    [
                        p,
                        r_,
                        g_,
                        b_,
                        r_ * r_,
                        r_ * g_,
                        r_ * b_,
                        g_ * g_,
                        g_ * b_,
                        b_ * b_,
                        r_ * p,
                        g_ * p,
                        b_ * p,
                    ]
                })
                .collect();
            box_means(&stats, w, h, r, threads)
                .iter()
                .map(
                    |&[mean_p, mr, mg, mb, rr, rg, rb, gg, gb, bb, rp, gp, bp]| {
                        // Σ + εU, symmetric.
                        let s_rr = rr - mr * mr + eps;
                        let s_rg = rg - mr * mg;
                        let s_rb = rb - mr * mb;
                        let s_gg = gg - mg * mg + eps;
                        let s_gb = gb - mg * mb;
                        let s_bb = bb - mb * mb + eps;
                        let cov = [rp - mr * mean_p, gp - mg * mean_p, bp - mb * mean_p];
                        let [a0, a1, a2] =
                            solve_symmetric3(s_rr, s_rg, s_rb, s_gg, s_gb, s_bb, cov);
                        [a0, a1, a2, mean_p - a0 * mr - a1 * mg - a2 * mb]
                    },
                )
                .collect()
        }
    };
    // ā and b̄: the box means of the coefficients.
    box_means(&ab, w, h, r, threads)
}

/// Solves `S·a = v` for a symmetric positive-definite 3×3 `S` by its adjugate, as the reference
/// implementation does. `S` has ε on its diagonal, so it is never singular.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn solve_symmetric3(
    rr: f32,
    rg: f32,
    rb: f32,
    gg: f32,
    gb: f32,
    bb: f32,
    v: [f32; 3],
) -> [f32; 3] {
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

/// `q = ā·I + b̄` at full resolution, clamped to [0, 1] (or its logit).
fn apply(
    ab: &[[f32; 4]],
    pixels: &[[u8; 3]],
    plan: &RefinePlan,
    threads: usize,
    output: Output,
) -> Vec<f32> {
    let (w, lw) = (plan.width, plan.low_w);
    let xs = grid_taps(plan.width, plan.low_w, plan.subsample);
    let ys = grid_taps(plan.height, plan.low_h, plan.subsample);
    let grid_row = |i: usize| ab.get(i * lw..(i + 1) * lw).unwrap_or_default();
    // (length, i0, i1) of each run of columns sharing their grid columns, left to right.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for tx in &xs {
        match runs.last_mut() {
            Some((len, i0, i1)) if (*i0, *i1) == (tx.i0, tx.i1) => *len += 1,
            _ => runs.push((1, tx.i0, tx.i1)),
        }
    }
    let mut out = vec![0.0f32; plan.width * plan.height];
    for_bands(&mut out, w, threads, |band, first_row| {
        // The row's coefficients, interpolated vertically once per row.
        let mut row_ab = vec![[0.0f32; 4]; lw];
        let rows = band
            .chunks_exact_mut(w)
            .zip(ys.iter().skip(first_row))
            .zip(pixels.chunks_exact(w).skip(first_row));
        for ((row, ty), pixel_row) in rows {
            for ((v, &t), &b) in row_ab.iter_mut().zip(grid_row(ty.i0)).zip(grid_row(ty.i1)) {
                *v = lerp4(t, b, ty.w1);
            }
            // Pixels come in runs that share their two grid columns: the coefficients are looked
            // up once per run, and the per-pixel loop has no lookups or branches left.
            let (mut qs, mut taps, mut pxs) = (&mut row[..], &xs[..], pixel_row);
            for &(len, i0, i1) in &runs {
                let (Some((q_run, q_rest)), Some((t_run, t_rest)), Some((p_run, p_rest))) = (
                    qs.split_at_mut_checked(len),
                    taps.split_at_checked(len),
                    pxs.split_at_checked(len),
                ) else {
                    break;
                };
                (qs, taps, pxs) = (q_rest, t_rest, p_rest);
                let (Some(&c0), Some(&c1)) = (row_ab.get(i0), row_ab.get(i1)) else {
                    continue;
                };
                for ((q, tx), &px) in q_run.iter_mut().zip(t_run).zip(p_run) {
                    let c = lerp4(c0, c1, tx.w1);
                    let g = guide_value(px, plan.guide);
                    let mut value = c[3];
                    value += c[0] * g[0];
                    value += c[1] * g[1];
                    value += c[2] * g[2];
                    *q = value.clamp(0.0, 1.0);
                }
            }
            if output == Output::Logits {
                for q in row.iter_mut() {
                    *q = alpha_to_logit(*q);
                }
            }
        }
    });
    out
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
        let (rr, rg, rb, gg, gb, bb) = (4.0, 1.0, 0.5, 3.0, 0.25, 2.0);
        let a = solve_symmetric3(rr, rg, rb, gg, gb, bb, [1.0, 2.0, 3.0]);
        let back = [
            rr * a[0] + rg * a[1] + rb * a[2],
            rg * a[0] + gg * a[1] + gb * a[2],
            rb * a[0] + gb * a[1] + bb * a[2],
        ];
        for (b, v) in back.iter().zip([1.0, 2.0, 3.0]) {
            assert!((b - v).abs() < 1e-5, "{back:?}");
        }
    }

    #[test]
    fn box_mean_matches_a_direct_sum_with_cut_windows() {
        let (w, h, r) = (7, 5, 2);
        let plane: Vec<f32> = (0..w * h).map(|i| ((i * 37) % 11) as f32 * 0.1).collect();
        let fast = box_mean(&plane, w, h, r);
        for y in 0..h {
            for x in 0..w {
                let (mut sum, mut n) = (0.0, 0);
                for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                    for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                        sum += plane[yy * w + xx];
                        n += 1;
                    }
                }
                assert!((fast[y * w + x] - sum / n as f32).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn plan_scales_with_resolution() {
        let settings = EdgeRefinement::default();
        let hd = settings.plan(1920, 1080).unwrap();
        let uhd = settings.plan(3840, 2160).unwrap();
        assert_eq!((hd.subsample, hd.low_w, hd.low_h), (4, 480, 270));
        assert_eq!((uhd.subsample, uhd.low_w, uhd.low_h), (8, 480, 270));
        assert_eq!(settings.radius_for(1920, 1080), 15.0);
        assert_eq!(settings.radius_for(3840, 2160), 30.0);
        assert_eq!(hd.low_radius, uhd.low_radius);
    }

    #[test]
    fn logits_round_trip_and_clamp() {
        assert_eq!(alpha_to_logit(0.0), -LOGIT_LIMIT);
        assert_eq!(alpha_to_logit(f32::NAN), -LOGIT_LIMIT);
        assert_eq!(alpha_to_logit(1.0), LOGIT_LIMIT);
        assert_eq!(alpha_to_logit(0.5), 0.0);
        // The sign is exact on both sides of ½.
        assert!(alpha_to_logit(0.5f32.next_up()) > 0.0);
        assert!(alpha_to_logit(0.5f32.next_down()) <= 0.0);
        for i in 1..1000 {
            let q = i as f32 / 1000.0;
            let exact = (q / (1.0 - q)).ln();
            assert!((alpha_to_logit(q) - exact).abs() < 2e-6, "{q}");
            assert!((sigmoid(alpha_to_logit(q)) - q).abs() < 1e-6, "{q}");
        }
    }
}
