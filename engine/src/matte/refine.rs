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
//! The statistics are exact integers, so that the CPU and the GPU agree within 1e-4. With ε as
//! small as 1e-4 the colour guide's 3×3 solve magnifies any rounding of the window's covariance:
//! formed in f32 as `E[I·Iᵀ] − E[I]·E[I]ᵀ`, a difference of numbers near 0.25 whose rounding is
//! 1e-8 against an ε of 1e-4, the two paths' differently rounded sums moved the refined alpha by up
//! to 1.4e-3 on real photographs. Instead each grid cell holds its guide and probability as whole
//! numbers of [`Levels`] (the guide's block sums are integers already: at 1080p the levels are the
//! block's byte sums, exactly), the window sums of the levels and their products are `u32` sums
//! (exact in any order, so a running sum on the CPU and a direct sum on the GPU give the same
//! bits), and each window's covariance is centred on its integer mean in wrapping integer
//! arithmetic (`Σ(x − m)(y − n)`, which fits 32 bits although the raw sums need not) before it is
//! converted to f32. The solve then sees the same numbers on both paths, each accurate relative to
//! the covariance itself rather than to the raw moments ([`window_coefficients`]).
//!
//! The steps are laid out so that `shaders/guided_filter.wgsl` can run the same arithmetic on the
//! GPU ([`RefinePlan`] is what both share; the CPU passes are in `refine_cpu.rs`, the GPU's in
//! `refine_gpu.rs` and [`GpuUpsampler::upsample_refined`](super::GpuUpsampler::upsample_refined)).

use serde::{Deserialize, Serialize};

use super::error::MatteError;
use super::refine_cpu::EdgeRefiner;

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

/// Rec. 709 luminance weights in 1024ths (0.2129, 0.7148, 0.0723: within 4e-4 of 0.2126, 0.7152,
/// 0.0722), so that the luminance of a block's byte sums is an integer; the full-resolution pass
/// weighs the bytes by the same fractions.
pub(crate) const LUMA_WEIGHTS: [u32; 3] = [218, 732, 74];
/// The sum of [`LUMA_WEIGHTS`].
pub(crate) const LUMA_DENOMINATOR: u32 = 1024;

/// The largest subsampling factor: a block's byte sum scaled to a whole block,
/// `2 · 255 · s⁴`, must fit 32 bits. Frames of up to 23,279 pixels on the longer side.
const MAX_SUBSAMPLE: usize = 48;

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
        if subsample > MAX_SUBSAMPLE {
            return Err(MatteError::RefineTooLarge {
                width,
                height,
                max_side: ((MAX_SUBSAMPLE as f32 + 0.5) * GRID_TARGET) as usize - 1,
            });
        }
        let radius = self.radius_for(width, height);
        let (low_w, low_h) = (width.div_ceil(subsample), height.div_ceil(subsample));
        let low_radius = ((radius / subsample as f32).round() as usize).max(1);
        let window = 2 * low_radius + 1;
        let window_cells = (window.min(low_w) * window.min(low_h)) as u64;
        Ok(RefinePlan {
            width,
            height,
            subsample,
            low_w,
            low_h,
            low_radius,
            epsilon: self.epsilon,
            guide: self.guide,
            levels: Levels::new(self.guide, subsample as u64, window_cells),
        })
    }
}

/// How the grid's guide and probability are held as whole numbers (see the module documentation).
///
/// The bound that sets them: a window's centred sum of products, `Σ(x − m)(y − n)` with `m`, `n`
/// the integer parts of the window's means, must fit an `i32`. Over `N` cells of values in
/// `[0, L]` it is at most `N · ((L + 2)² / 4)`, so `L` is the largest with `N · (L + 2)² < 2³³`
/// (10,295 for the default 9 × 9 window), and at most 65,535.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// A cell's guide level is its block's byte sum (scaled up to a whole block where the block is
    /// cut by the frame's edge; weighted by [`LUMA_WEIGHTS`] for a luminance guide) shifted right
    /// by this many bits, rounded half up.
    pub guide_shift: u32,
    /// The guide's levels per unit: a level is `1 / guide` of the guide's [0, 1] range (exact in
    /// f32).
    pub guide: f32,
    /// The probability's levels: a cell's `p` becomes `⌊p · probability + ½⌋`.
    pub probability: u32,
}

impl Levels {
    fn new(guide: GuideChannels, subsample: u64, window_cells: u64) -> Self {
        let limit = 1u64 << 33;
        let mut levels = ((limit as f64 / window_cells.max(1) as f64).sqrt() as u64)
            .saturating_sub(2)
            .min(65_535);
        while levels > 1 && window_cells * (levels + 2) * (levels + 2) >= limit {
            levels -= 1;
        }
        let block_max = 255
            * subsample
            * subsample
            * match guide {
                GuideChannels::Colour => 1,
                GuideChannels::Luminance => u64::from(LUMA_DENOMINATOR),
            };
        let mut guide_shift = 0u32;
        while (block_max + ((1u64 << guide_shift) >> 1)) >> guide_shift > levels {
            guide_shift += 1;
        }
        Self {
            guide_shift,
            guide: (block_max as f64 / f64::from(1u32 << guide_shift)) as f32,
            probability: levels as u32,
        }
    }

    /// ε in the units of a window's summed guide levels squared, per cell of the window.
    pub fn epsilon(&self, epsilon: f32) -> f32 {
        (f64::from(epsilon) * f64::from(self.guide) * f64::from(self.guide)) as f32
    }

    /// What turns `a` from probability levels per guide level into probability per guide unit.
    pub fn a_scale(&self) -> f32 {
        (f64::from(self.guide) / f64::from(self.probability)) as f32
    }

    /// What turns `b` from probability levels into probability.
    pub fn b_scale(&self) -> f32 {
        (1.0 / f64::from(self.probability)) as f32
    }
}

/// The number of window statistics per cell: `[p, r, g, b, rr, rg, rb, gg, gb, bb, rp, gp, bp]`
/// for a colour guide, `[p, y, yy, yp]` for luminance: a statistic is one of the cell's levels
/// (`p`, `r`, `g`, `b`, or `p`, `y`) or the product of two (the shader's `factors`).
pub(crate) const COLOUR_STATS: usize = 13;
pub(crate) const LUMINANCE_STATS: usize = 4;

/// The guided filter's coefficients `[a_r, a_g, a_b, b]` of one window from its integer sums
/// (`[p, r, g, b, rr, rg, rb, gg, gb, bb, rp, gp, bp]`, each mod 2³²) over `n` cells, `a` per unit
/// of the guide and `b` as a probability. `shaders/guided_filter.wgsl`'s `coefficients` is this
/// function line for line: the integer part is exact on both paths, the f32 part the same
/// operations in the same order.
///
/// Each channel's sum `S` splits into its integer mean `m = S / n` and remainder `d = S − m·n`;
/// `Σ(x − m_x)(y − m_y) = S_xy − m_x·S_y − m_y·S_x + n·m_x·m_y` is exact mod 2³² and small enough
/// to be exact as an `i32` (see [`Levels`]); the covariance times `n` is that minus
/// `d_x·d_y / n`. (That term and the remainders' share of the means are below `n`, against an ε
/// of `ε·L²·n`: how `1 / n` is rounded, which a GPU may do to 2.5 ulp, does not matter.)
#[inline]
pub(crate) fn window_coefficients(
    sums: &[u32; COLOUR_STATS],
    n: u32,
    constants: &WindowConstants,
) -> [f32; 4] {
    let n_f = n as f32;
    let inv_n = 1.0 / n_f;
    let inv_n_f64 = 1.0 / f64::from(n.max(1));
    // A channel: its window sum, integer mean and remainder.
    let channel = |s: u32| {
        let m = floor_div(s, n.max(1), inv_n_f64);
        Channel {
            sum: s,
            mean: m,
            rest: s.wrapping_sub(m.wrapping_mul(n)) as f32,
        }
    };
    // `n` times the covariance of two channels from the sum of their products.
    let centred = |s: u32, x: Channel, y: Channel| {
        let c = s
            .wrapping_sub(x.mean.wrapping_mul(y.sum))
            .wrapping_sub(y.mean.wrapping_mul(x.sum))
            .wrapping_add(n.wrapping_mul(x.mean).wrapping_mul(y.mean));
        (c as i32) as f32 - x.rest * y.rest * inv_n
    };
    let mean = |x: Channel| x.mean as f32 + x.rest * inv_n;
    let eps = constants.epsilon * n_f;
    let (a_scale, b_scale) = (constants.a_scale, constants.b_scale);
    match constants.guide {
        GuideChannels::Colour => {
            let [p, r, g, b, rr, rg, rb, gg, gb, bb, rp, gp, bp] = *sums;
            let (p, r, g, b) = (channel(p), channel(r), channel(g), channel(b));
            let sigma = [
                centred(rr, r, r) + eps,
                centred(rg, r, g),
                centred(rb, r, b),
                centred(gg, g, g) + eps,
                centred(gb, g, b),
                centred(bb, b, b) + eps,
            ];
            let v = [centred(rp, r, p), centred(gp, g, p), centred(bp, b, p)];
            let [a0, a1, a2] = solve_symmetric3(sigma, v);
            let offset = mean(p) - a0 * mean(r) - a1 * mean(g) - a2 * mean(b);
            [a0 * a_scale, a1 * a_scale, a2 * a_scale, offset * b_scale]
        }
        GuideChannels::Luminance => {
            let [p, y, yy, yp, ..] = *sums;
            let (p, y) = (channel(p), channel(y));
            let a = centred(yp, y, p) / (centred(yy, y, y) + eps);
            let offset = mean(p) - a * mean(y);
            [a * a_scale, 0.0, 0.0, offset * b_scale]
        }
    }
}

/// `⌊s / n⌋`, exactly, by a multiplication (`inv_n` is `1 / n` in f64) and a correction: the
/// integer divisions were most of the coefficients' time.
#[inline]
fn floor_div(s: u32, n: u32, inv_n: f64) -> u32 {
    let m = (f64::from(s) * inv_n) as u32;
    if u64::from(m) * u64::from(n) > u64::from(s) {
        m - 1
    } else if (u64::from(m) + 1) * u64::from(n) <= u64::from(s) {
        m + 1
    } else {
        m
    }
}

/// What [`window_coefficients`] needs of the plan, resolved once per frame (the same values the
/// shader gets as parameters).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowConstants {
    pub guide: GuideChannels,
    /// [`Levels::epsilon`].
    pub epsilon: f32,
    pub a_scale: f32,
    pub b_scale: f32,
}

impl RefinePlan {
    pub(crate) fn window_constants(&self) -> WindowConstants {
        WindowConstants {
            guide: self.guide,
            epsilon: self.levels.epsilon(self.epsilon),
            a_scale: self.levels.a_scale(),
            b_scale: self.levels.b_scale(),
        }
    }
}

/// A channel's window sum, split into its integer mean and the remainder.
#[derive(Clone, Copy)]
struct Channel {
    sum: u32,
    mean: u32,
    rest: f32,
}

/// Solves `S·a = v` for a symmetric positive-definite 3×3 `S` (`[rr, rg, rb, gg, gb, bb]`) by its
/// adjugate, as the reference implementation does. `S` has ε on its diagonal, so it is never
/// singular.
#[inline]
pub(crate) fn solve_symmetric3([rr, rg, rb, gg, gb, bb]: [f32; 6], v: [f32; 3]) -> [f32; 3] {
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
    /// How the grid's values are held as whole numbers.
    pub levels: Levels,
}

/// Refines upsampled `width × height` logits with the frame as the guide and returns logits
/// again (see the module documentation). `threads` splits the passes into bands (0: as many as
/// the machine has). A caller refining frame after frame keeps an [`EdgeRefiner`] instead, which
/// reuses its buffers and refines in place.
pub fn refine_edges(
    logits: &[f32],
    guide: Guide<'_>,
    settings: &EdgeRefinement,
    threads: usize,
) -> Result<Vec<f32>, MatteError> {
    let mut out = logits.to_vec();
    EdgeRefiner::new().refine(&mut out, guide, settings, threads)?;
    Ok(out)
}

/// [`refine_edges`] without the conversion back to logits: the refined probability in [0, 1].
pub fn refine_alpha(
    logits: &[f32],
    guide: Guide<'_>,
    settings: &EdgeRefinement,
    threads: usize,
) -> Result<Vec<f32>, MatteError> {
    let mut out = logits.to_vec();
    EdgeRefiner::new().refine_alpha(&mut out, guide, settings, threads)?;
    Ok(out)
}

/// What the full-resolution pass writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Alpha,
    Logits,
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

/// `sigmoid(x)`.
#[inline]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn levels_fit_the_window_and_huge_frames_are_refused() {
        let settings = EdgeRefinement::default();
        let hd = settings.plan(1920, 1080).unwrap().levels;
        // At 1080p the guide's levels are the 4 × 4 blocks' byte sums themselves.
        assert_eq!(
            (hd.guide_shift, hd.guide, hd.probability),
            (0, 4080.0, 10_295)
        );
        let uhd = settings.plan(3840, 2160).unwrap().levels;
        assert_eq!((uhd.guide_shift, uhd.guide), (1, 8160.0));
        let luminance = EdgeRefinement {
            guide: GuideChannels::Luminance,
            radius: Some(200.0),
            ..settings
        };
        for (w, h) in [(1920, 1080), (3840, 2160), (23_279, 9000)] {
            let plan = luminance.plan(w, h).unwrap();
            let window = (2 * plan.low_radius + 1).min(plan.low_w)
                * (2 * plan.low_radius + 1).min(plan.low_h);
            let top = u64::from(plan.levels.probability) + 2;
            assert!(window as u64 * top * top < 1 << 33, "{w}×{h}");
            let most = 255 * 1024 * (plan.subsample * plan.subsample) as u64;
            assert!((most >> plan.levels.guide_shift) as f32 <= plan.levels.probability as f32);
        }
        assert!(matches!(
            settings.plan(23_280, 100),
            Err(MatteError::RefineTooLarge {
                max_side: 23_279,
                ..
            })
        ));
    }

    /// The integer window statistics give the guided filter's `a` and `b` as f64 arithmetic on the
    /// same levels does.
    #[test]
    fn window_coefficients_match_a_direct_fit() {
        let plan = EdgeRefinement::default().plan(1920, 1080).unwrap();
        let l = &plan.levels;
        // 81 cells of a soft colour edge with grain, and a probability ramp across it.
        let cells: Vec<[u32; 4]> = (0..81u32)
            .map(|i| {
                let (x, y) = (i % 9, i / 9);
                let grain = (i.wrapping_mul(2_654_435_761) >> 24) % 23;
                let edge = if x < 4 { 0 } else { 1 };
                [
                    (x * 1000 + y * 37).min(l.probability),
                    1200 + edge * 1500 + grain,
                    2100 + edge * 300 + grain * 2 + y,
                    900 + grain * 3,
                ]
            })
            .collect();
        let mut sums = [0u32; COLOUR_STATS];
        for &[p, r, g, b] in &cells {
            let stats = [
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
            ];
            for (s, v) in sums.iter_mut().zip(stats) {
                *s = s.wrapping_add(v);
            }
        }
        let [a0, a1, a2, b] = window_coefficients(&sums, 81, &plan.window_constants());
        for (s, n) in [
            (0, 1),
            (80, 81),
            (81, 81),
            (u32::MAX, 81),
            (u32::MAX, 1),
            (12_345, 7),
        ] {
            assert_eq!(floor_div(s, n, 1.0 / f64::from(n)), s / n, "{s} / {n}");
        }
        // Direct: in the guide's and probability's units, f64.
        let unit = |c: &[u32; 4]| {
            [
                f64::from(c[0]) / f64::from(l.probability),
                f64::from(c[1]) / f64::from(l.guide),
                f64::from(c[2]) / f64::from(l.guide),
                f64::from(c[3]) / f64::from(l.guide),
            ]
        };
        let values: Vec<[f64; 4]> = cells.iter().map(unit).collect();
        let mean = |k: usize| values.iter().map(|v| v[k]).sum::<f64>() / 81.0;
        let cov = |i: usize, j: usize| {
            values.iter().map(|v| v[i] * v[j]).sum::<f64>() / 81.0 - mean(i) * mean(j)
        };
        let e = f64::from(plan.epsilon);
        let m = [
            [cov(1, 1) + e, cov(1, 2), cov(1, 3)],
            [cov(1, 2), cov(2, 2) + e, cov(2, 3)],
            [cov(1, 3), cov(2, 3), cov(3, 3) + e],
        ];
        let v = [cov(1, 0), cov(2, 0), cov(3, 0)];
        // Cramer's rule.
        let det3 = |m: [[f64; 3]; 3]| {
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        };
        let d = det3(m);
        let a: Vec<f64> = (0..3)
            .map(|k| {
                let mut mk = m;
                for (row, vi) in mk.iter_mut().zip(v) {
                    row[k] = vi;
                }
                det3(mk) / d
            })
            .collect();
        let b_direct = mean(0) - a[0] * mean(1) - a[1] * mean(2) - a[2] * mean(3);
        for (got, want) in [a0, a1, a2].iter().zip(&a) {
            assert!(
                (f64::from(*got) - want).abs() < 1e-4 * want.abs().max(1.0),
                "{got} {want}"
            );
        }
        assert!((f64::from(b) - b_direct).abs() < 1e-4, "{b} {b_direct}");
        assert!(a[0].abs() > 0.1, "the fit follows the red edge: {a:?}");
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
