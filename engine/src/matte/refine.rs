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
