//! Geometry as OpenFX has it: pixel rectangles are half-open (`x1 ≤ x < x2`) with y going up, and
//! canonical rectangles map to pixels through the render scale and the pixel aspect ratio.

/// A rectangle of pixels, `x1 ≤ x < x2`, `y1 ≤ y < y2` (OpenFX's `OfxRectI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RectI {
    pub x1: i32,
    pub y1: i32,
    pub x2: i32,
    pub y2: i32,
}

impl RectI {
    pub fn new(x1: i32, y1: i32, x2: i32, y2: i32) -> RectI {
        RectI { x1, y1, x2, y2 }
    }

    pub fn width(&self) -> usize {
        usize::try_from(i64::from(self.x2) - i64::from(self.x1)).unwrap_or(0)
    }

    pub fn height(&self) -> usize {
        usize::try_from(i64::from(self.y2) - i64::from(self.y1)).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }

    pub fn intersect(&self, other: &RectI) -> RectI {
        RectI {
            x1: self.x1.max(other.x1),
            y1: self.y1.max(other.y1),
            x2: self.x2.min(other.x2),
            y2: self.y2.min(other.y2),
        }
    }
}

/// A rectangle in canonical coordinates (OpenFX's `OfxRectD`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RectD {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
}

/// The pixel rectangle covering a canonical rectangle at a render scale and pixel aspect ratio
/// (pixel x = canonical x · scale / PAR, pixel y = canonical y · scale), widened to whole pixels.
/// Values within 1e-6 of a whole number snap to it, so 1920 · 0.5 does not become 961.
pub fn pixel_rect(canonical: RectD, scale: [f64; 2], par: f64) -> RectI {
    let par = if par.is_finite() && par > 0.0 {
        par
    } else {
        1.0
    };
    let snap = |v: f64| {
        let r = v.round();
        if (v - r).abs() < 1e-6 { r } else { v }
    };
    let to_i = |v: f64| v.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
    RectI {
        x1: to_i(snap(canonical.x1 * scale[0] / par).floor()),
        y1: to_i(snap(canonical.y1 * scale[1]).floor()),
        x2: to_i(snap(canonical.x2 * scale[0] / par).ceil()),
        y2: to_i(snap(canonical.y2 * scale[1]).ceil()),
    }
}
