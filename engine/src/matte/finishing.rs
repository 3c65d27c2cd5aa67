//! Finishing: upsampled logits → the matte an artist asked for.
//!
//! [`finish`] applies, in this order, each step a pure function of its own:
//!
//! 1. **Threshold / softness** ([`threshold`], [`soften`]): logits to matte values in [0, 1].
//! 2. **Fill holes** ([`fill_holes`](super::fill_holes)), then **remove specks**
//!    ([`remove_specks`](super::remove_specks)), SAM 2's own clean-up order.
//! 3. **Choke / expand** ([`expand`](super::expand)).
//! 4. **Feather** ([`feather`](super::feather)).
//!
//! Clean-up comes before choke so that what is removed or filled is decided on the model's mask,
//! and feather comes last so that it softens the final edge rather than being cut by a choke.

use serde::{Deserialize, Serialize};

use super::components::{fill_holes_in_place, remove_specks_in_place};
use super::error::{MatteError, check_buffer};
use super::morphology::{expand_in_place, feather_in_place};

/// How to turn upsampled logits into a matte. The default is SAM 2's own mask: a hard matte at
/// logit > 0 (probability > ½), nothing else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatteSettings {
    /// The logit above which a pixel is foreground. 0 is SAM 2's own (probability ½); positive
    /// values tighten the matte, negative values loosen it. Any finite number.
    pub threshold: f32,
    /// Edge softness, in logits. 0 gives a hard matte. Otherwise the matte is
    /// `sigmoid((logit − threshold) / softness)`: at 1 (with threshold 0) it is exactly the
    /// model's own probability for each pixel; below 1 the edge is crisper, above 1 softer.
    /// Must be 0 or more.
    pub softness: f32,
    /// Fill holes (islands of not fully opaque matte, 8-connected) smaller than this many pixels;
    /// 0 turns it off.
    pub fill_holes_below: u32,
    /// Remove specks (islands of visible matte, 8-connected) smaller than this many pixels;
    /// 0 turns it off.
    pub remove_specks_below: u32,
    /// Grow the matte by this many pixels, or choke it when negative (a square min/max filter).
    pub expand: i32,
    /// Feather radius in pixels: a Gaussian blur with σ = radius / 2, so the edge fades over
    /// about `radius` pixels on each side. 0 turns it off; must be 0 or more. Radii above
    /// [`MAX_FEATHER_RADIUS`](super::MAX_FEATHER_RADIUS) (2²⁴ px) are computed as that radius;
    /// the time taken does not depend on the radius.
    pub feather: f32,
}

impl Default for MatteSettings {
    fn default() -> Self {
        Self {
            threshold: 0.0,
            softness: 0.0,
            fill_holes_below: 0,
            remove_specks_below: 0,
            expand: 0,
            feather: 0.0,
        }
    }
}

impl MatteSettings {
    /// Checks the values a host could get wrong (NaN, negative radii).
    pub fn validate(&self) -> Result<(), MatteError> {
        let invalid = |name, value: f32, requirement| MatteError::InvalidSetting {
            name,
            value: value.to_string(),
            requirement,
        };
        if !self.threshold.is_finite() {
            return Err(invalid("threshold", self.threshold, "a finite number"));
        }
        if !(self.softness.is_finite() && self.softness >= 0.0) {
            return Err(invalid("softness", self.softness, "0 or more"));
        }
        if !(self.feather.is_finite() && self.feather >= 0.0) {
            return Err(invalid("feather", self.feather, "0 or more"));
        }
        Ok(())
    }
}

/// Finishes an upsampled `width × height` logit image into a matte in [0, 1] (see the module
/// documentation for the order of the steps).
pub fn finish(
    logits: &[f32],
    width: usize,
    height: usize,
    settings: &MatteSettings,
) -> Result<Vec<f32>, MatteError> {
    check_buffer("upsampled logits", logits.len(), width, height)?;
    settings.validate()?;
    let mut matte = soften(logits, settings.threshold, settings.softness);
    if settings.fill_holes_below > 0 {
        fill_holes_in_place(
            &mut matte,
            width,
            height,
            settings.fill_holes_below as usize,
        );
    }
    if settings.remove_specks_below > 0 {
        remove_specks_in_place(
            &mut matte,
            width,
            height,
            settings.remove_specks_below as usize,
        );
    }
    if settings.expand != 0 {
        expand_in_place(&mut matte, width, height, settings.expand);
    }
    if settings.feather > 0.0 {
        feather_in_place(&mut matte, width, height, settings.feather);
    }
    Ok(matte)
}

/// A hard matte: 1 where `logit > threshold`, else 0 (NaN counts as background).
pub fn threshold(logits: &[f32], threshold: f32) -> Vec<f32> {
    logits
        .iter()
        .map(|&l| if l > threshold { 1.0 } else { 0.0 })
        .collect()
}

/// A soft matte: `sigmoid((logit − threshold) / softness)`, or [`threshold`] when `softness` is 0
/// (or not a positive number). NaN counts as background.
pub fn soften(logits: &[f32], threshold_logit: f32, softness: f32) -> Vec<f32> {
    if !(softness > 0.0 && softness.is_finite()) {
        return threshold(logits, threshold_logit);
    }
    let inv = 1.0 / softness;
    logits
        .iter()
        .map(|&l| {
            let x = (l - threshold_logit) * inv;
            if x.is_nan() {
                0.0
            } else {
                1.0 / (1.0 + (-x).exp())
            }
        })
        .collect()
}

/// An 8-bit matte: [0, 1] to 0–255, rounded to nearest (ties to even); values outside [0, 1]
/// clamp, NaN becomes 0.
pub fn to_u8(matte: &[f32]) -> Vec<u8> {
    // The low byte of the rounded value, which is at most 255.
    matte.iter().map(|&a| quantize(a, 255.0) as u8).collect()
}

/// A 16-bit matte: [0, 1] to 0–65535, rounded to nearest (ties to even); values outside [0, 1]
/// clamp, NaN becomes 0.
pub fn to_u16(matte: &[f32]) -> Vec<u16> {
    // The low 16 bits of the rounded value, which is at most 65535.
    matte.iter().map(|&a| quantize(a, 65535.0) as u16).collect()
}

/// `a · max` clamped and rounded to an integer, returned in the low bits of a `u32`.
///
/// Adding 2²³ leaves a float whose mantissa holds the rounded integer (for values below 2²³),
/// which the bits then give directly. This replaces `round()` and a saturating float-to-int
/// cast, neither of which the compiler vectorizes on baseline x86-64: a 4K conversion took
/// 21 ms that way and 2 ms this way.
fn quantize(a: f32, max: f32) -> u32 {
    const ROUNDER: f32 = 8_388_608.0; // 2²³
    let clamped = if a >= 0.0 { a.min(1.0) } else { 0.0 }; // NaN fails `>=`
    (clamped * max + ROUNDER).to_bits()
}
