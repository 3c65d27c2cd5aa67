//! Host pixels in any supported depth and layout ↔ RGBA `f32`, by rows.
//!
//! One generic path serves every bit depth ([`Sample`] is implemented for `u8`, `u16`, half and
//! `f32`); the depth is dispatched once per row, never per pixel. An image's rows are addressed by
//! their y (y up, as in OpenFX).

use std::hash::{DefaultHasher, Hasher};

use half::f16;

use super::geometry::RectI;

/// Sample types of the host's bit depths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitDepth {
    Byte,
    Short,
    Half,
    Float,
}

impl BitDepth {
    pub fn bytes(self) -> usize {
        match self {
            BitDepth::Byte => 1,
            BitDepth::Short | BitDepth::Half => 2,
            BitDepth::Float => 4,
        }
    }

    /// The normalized value that stores the whole number `n` in this depth: integer depths hold
    /// 0–255 / 0–65535 as 0–1, float depths hold `n` itself. The ID matte writes object numbers
    /// this way, so a pixel's stored value is the object number in every depth.
    pub fn whole_number(self, n: u32) -> f32 {
        match self {
            BitDepth::Byte => n as f32 / 255.0,
            BitDepth::Short => n as f32 / 65535.0,
            BitDepth::Half | BitDepth::Float => n as f32,
        }
    }
}

/// Channel layouts of host images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Components {
    Rgba,
    Rgb,
    Alpha,
}

impl Components {
    pub fn count(self) -> usize {
        match self {
            Components::Rgba => 4,
            Components::Rgb => 3,
            Components::Alpha => 1,
        }
    }
}

/// How an image's pixels are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    pub depth: BitDepth,
    pub components: Components,
}

impl PixelLayout {
    pub fn bytes_per_pixel(&self) -> usize {
        self.depth.bytes() * self.components.count()
    }
}

/// Read access to an image by rows (the host's images, and owned buffers in tests).
pub trait Rows {
    fn bounds(&self) -> RectI;
    fn layout(&self) -> PixelLayout;
    /// Row `y`: `bounds().width() · bytes_per_pixel` bytes; `None` outside the bounds.
    fn row(&self, y: i32) -> Option<&[u8]>;
}

/// Write access to an image by rows.
pub trait RowsMut: Rows {
    fn row_mut(&mut self, y: i32) -> Option<&mut [u8]>;
}

/// One sample of a bit depth, read and written as native-endian bytes (no alignment needed).
trait Sample {
    const BYTES: usize;
    fn load(bytes: &[u8]) -> f32;
    fn store(value: f32, bytes: &mut [u8]);
}

/// Rounds to the nearest step of an integer depth, clamping to its range (NaN to 0).
pub(super) fn quantize(value: f32, max: f32) -> f32 {
    let v = if value >= 0.0 { value.min(1.0) } else { 0.0 };
    (v * max).round()
}

impl Sample for u8 {
    const BYTES: usize = 1;
    fn load(bytes: &[u8]) -> f32 {
        f32::from(bytes.first().copied().unwrap_or(0)) / 255.0
    }
    fn store(value: f32, bytes: &mut [u8]) {
        if let Some(b) = bytes.first_mut() {
            *b = quantize(value, 255.0) as u8;
        }
    }
}

impl Sample for u16 {
    const BYTES: usize = 2;
    fn load(bytes: &[u8]) -> f32 {
        <[u8; 2]>::try_from(bytes).map_or(0.0, |b| f32::from(u16::from_ne_bytes(b)) / 65535.0)
    }
    fn store(value: f32, bytes: &mut [u8]) {
        bytes.copy_from_slice(&(quantize(value, 65535.0) as u16).to_ne_bytes());
    }
}

impl Sample for f16 {
    const BYTES: usize = 2;
    fn load(bytes: &[u8]) -> f32 {
        <[u8; 2]>::try_from(bytes).map_or(0.0, |b| f16::from_ne_bytes(b).to_f32())
    }
    fn store(value: f32, bytes: &mut [u8]) {
        bytes.copy_from_slice(&f16::from_f32(value).to_ne_bytes());
    }
}

impl Sample for f32 {
    const BYTES: usize = 4;
    fn load(bytes: &[u8]) -> f32 {
        <[u8; 4]>::try_from(bytes).map_or(0.0, f32::from_ne_bytes)
    }
    fn store(value: f32, bytes: &mut [u8]) {
        bytes.copy_from_slice(&value.to_ne_bytes());
    }
}

fn load_row<S: Sample>(bytes: &[u8], components: Components, out: &mut [[f32; 4]]) {
    let n = components.count();
    for (pixel, rgba) in bytes.chunks_exact(S::BYTES * n).zip(out.iter_mut()) {
        let mut samples = pixel.chunks_exact(S::BYTES).map(S::load);
        let mut next = || samples.next().unwrap_or(0.0);
        *rgba = match components {
            Components::Rgba => [next(), next(), next(), next()],
            Components::Rgb => [next(), next(), next(), 1.0],
            Components::Alpha => [0.0, 0.0, 0.0, next()],
        };
    }
}

fn store_row<S: Sample>(pixels: &[[f32; 4]], components: Components, bytes: &mut [u8]) {
    let n = components.count();
    for (rgba, pixel) in pixels.iter().zip(bytes.chunks_exact_mut(S::BYTES * n)) {
        let channels: &[f32] = match components {
            Components::Rgba => rgba,
            Components::Rgb => rgba.get(..3).unwrap_or(rgba),
            Components::Alpha => rgba.get(3..).unwrap_or(rgba),
        };
        for (&value, sample) in channels.iter().zip(pixel.chunks_exact_mut(S::BYTES)) {
            S::store(value, sample);
        }
    }
}

/// Decodes the pixels of a row (`out.len()` of them, or fewer if the row is shorter) to RGBA:
/// RGB gets alpha 1, alpha-only images black with their alpha.
pub fn read_pixels(bytes: &[u8], layout: PixelLayout, out: &mut [[f32; 4]]) {
    match layout.depth {
        BitDepth::Byte => load_row::<u8>(bytes, layout.components, out),
        BitDepth::Short => load_row::<u16>(bytes, layout.components, out),
        BitDepth::Half => load_row::<f16>(bytes, layout.components, out),
        BitDepth::Float => load_row::<f32>(bytes, layout.components, out),
    }
}

/// Encodes RGBA pixels into a row of `layout` (integer depths clamp and round, float depths keep
/// the values).
pub fn write_pixels(pixels: &[[f32; 4]], layout: PixelLayout, bytes: &mut [u8]) {
    match layout.depth {
        BitDepth::Byte => store_row::<u8>(pixels, layout.components, bytes),
        BitDepth::Short => store_row::<u16>(pixels, layout.components, bytes),
        BitDepth::Half => store_row::<f16>(pixels, layout.components, bytes),
        BitDepth::Float => store_row::<f32>(pixels, layout.components, bytes),
    }
}

/// Reads the pixels `x1..x2` of row `y` of `image` as RGBA; pixels outside the image are
/// transparent black (what OpenFX defines outside an image's bounds).
pub fn read_span(image: &dyn Rows, y: i32, x1: i32, x2: i32, out: &mut Vec<[f32; 4]>) {
    let width = usize::try_from(i64::from(x2) - i64::from(x1)).unwrap_or(0);
    out.clear();
    out.resize(width, [0.0; 4]);
    let bounds = image.bounds();
    let Some(row) = image.row(y) else {
        return;
    };
    let lo = x1.max(bounds.x1);
    let hi = x2.min(bounds.x2);
    if lo >= hi {
        return;
    }
    let layout = image.layout();
    let bpp = layout.bytes_per_pixel();
    let skip = (i64::from(lo) - i64::from(bounds.x1)) as usize;
    let count = (i64::from(hi) - i64::from(lo)) as usize;
    let offset = (i64::from(lo) - i64::from(x1)) as usize;
    if let (Some(bytes), Some(dst)) = (
        row.get(skip * bpp..(skip + count) * bpp),
        out.get_mut(offset..offset + count),
    ) {
        read_pixels(bytes, layout, dst);
    }
}

/// A fingerprint of `region` of an image, to notice that the source changed under an encoded
/// frame: the stored bytes of every 4th row (and the layout and region), so it costs a fraction
/// of a conversion and is the same for the same pixels fetched twice. An edit confined to the
/// rows in between goes unnoticed; upstream edits are rarely that thin.
pub fn fingerprint(image: &dyn Rows, region: RectI) -> u64 {
    let mut hasher = DefaultHasher::new();
    let layout = image.layout();
    let bpp = layout.bytes_per_pixel();
    hasher.write_u64(layout.depth.bytes() as u64 * 8 + layout.components.count() as u64);
    for v in [region.x1, region.y1, region.x2, region.y2] {
        hasher.write_i32(v);
    }
    let bounds = image.bounds();
    let span = region.intersect(&bounds);
    let skip = (i64::from(span.x1) - i64::from(bounds.x1)).max(0) as usize;
    for y in (span.y1..span.y2).step_by(4) {
        if let Some(bytes) = image
            .row(y)
            .and_then(|row| row.get(skip * bpp..(skip + span.width()) * bpp))
        {
            hasher.write(bytes);
        }
    }
    hasher.finish()
}

/// An image held in memory (tests, and frames converted before they reach the host).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedImage {
    pub bounds: RectI,
    pub layout: PixelLayout,
    /// Rows bottom-up (row `y1` first), tightly packed.
    pub data: Vec<u8>,
}

impl OwnedImage {
    pub fn new(bounds: RectI, layout: PixelLayout) -> OwnedImage {
        OwnedImage {
            bounds,
            layout,
            data: vec![0; bounds.width() * bounds.height() * layout.bytes_per_pixel()],
        }
    }

    fn row_range(&self, y: i32) -> Option<std::ops::Range<usize>> {
        if y < self.bounds.y1 || y >= self.bounds.y2 {
            return None;
        }
        let stride = self.bounds.width() * self.layout.bytes_per_pixel();
        let start = (i64::from(y) - i64::from(self.bounds.y1)) as usize * stride;
        Some(start..start + stride)
    }

    /// Fills every pixel from a function of its position.
    pub fn fill(&mut self, f: impl Fn(i32, i32) -> [f32; 4]) {
        let b = self.bounds;
        let layout = self.layout;
        for y in b.y1..b.y2 {
            let pixels: Vec<[f32; 4]> = (b.x1..b.x2).map(|x| f(x, y)).collect();
            if let Some(row) = self.row_mut(y) {
                write_pixels(&pixels, layout, row);
            }
        }
    }

    /// Pixel (x, y) as RGBA.
    pub fn pixel(&self, x: i32, y: i32) -> [f32; 4] {
        let mut span = Vec::new();
        read_span(self, y, x, x + 1, &mut span);
        span.first().copied().unwrap_or_default()
    }
}

impl Rows for OwnedImage {
    fn bounds(&self) -> RectI {
        self.bounds
    }
    fn layout(&self) -> PixelLayout {
        self.layout
    }
    fn row(&self, y: i32) -> Option<&[u8]> {
        self.data.get(self.row_range(y)?)
    }
}

impl RowsMut for OwnedImage {
    fn row_mut(&mut self, y: i32) -> Option<&mut [u8]> {
        let range = self.row_range(y)?;
        self.data.get_mut(range)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn every_depth_and_layout_round_trips_within_its_precision() {
        let bounds = RectI::new(-3, 2, 9, 7);
        for depth in DEPTHS {
            for components in [Components::Rgba, Components::Rgb, Components::Alpha] {
                let mut image = OwnedImage::new(bounds, layout(depth, components));
                assert_eq!(
                    image.data.len(),
                    12 * 5 * depth.bytes() * components.count()
                );
                image.fill(ramp);
                for y in bounds.y1..bounds.y2 {
                    for x in bounds.x1..bounds.x2 {
                        let want = ramp(x, y);
                        let got = image.pixel(x, y);
                        let expect = match components {
                            Components::Rgba => want,
                            Components::Rgb => [want[0], want[1], want[2], 1.0],
                            Components::Alpha => [0.0, 0.0, 0.0, want[3]],
                        };
                        for c in 0..4 {
                            assert!(
                                (got[c] - expect[c]).abs() <= tolerance(depth),
                                "{depth:?} {components:?} ({x},{y}) channel {c}: {} vs {}",
                                got[c],
                                expect[c]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn integer_depths_clamp_and_round_floats_keep_values() {
        let mut out = [0u8; 4];
        write_pixels(
            &[[-0.5, 1.7, f32::NAN, 0.5 / 255.0 * 2.999]],
            layout(BitDepth::Byte, Components::Rgba),
            &mut out,
        );
        assert_eq!(out, [0, 255, 0, 1]);
        let mut out = [0u8; 16];
        write_pixels(
            &[[-0.5, 1.7, 3.0, 0.25]],
            layout(BitDepth::Float, Components::Rgba),
            &mut out,
        );
        let mut back = [[0.0f32; 4]];
        read_pixels(&out, layout(BitDepth::Float, Components::Rgba), &mut back);
        assert_eq!(back[0], [-0.5, 1.7, 3.0, 0.25]);
        // Half keeps values above 1 too (HDR sources), to half precision.
        let mut out = [0u8; 8];
        write_pixels(
            &[[2.5, 0.0, 0.0, 1.0]],
            layout(BitDepth::Half, Components::Rgba),
            &mut out,
        );
        read_pixels(&out, layout(BitDepth::Half, Components::Rgba), &mut back);
        assert_eq!(back[0], [2.5, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn the_fingerprint_sees_a_changed_source_and_not_a_refetched_one() {
        let region = RectI::new(0, 0, 16, 9);
        let mut a = OwnedImage::new(region, layout(BitDepth::Float, Components::Rgba));
        a.fill(ramp);
        let b = a.clone();
        assert_eq!(fingerprint(&a, region), fingerprint(&b, region));
        let mut c = a.clone();
        c.fill(|x, y| {
            let mut p = ramp(x, y);
            if y == 4 && x == 7 {
                p[1] += 0.25;
            }
            p
        });
        assert_ne!(fingerprint(&a, region), fingerprint(&c, region));
        // The same pixels in another depth are another source.
        let mut d = OwnedImage::new(region, layout(BitDepth::Half, Components::Rgba));
        d.fill(ramp);
        assert_ne!(fingerprint(&a, region), fingerprint(&d, region));
    }
}
