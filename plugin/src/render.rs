//! Pixels: host images in any supported depth and layout ↔ RGBA `f32`, the output modes, and the
//! frames the engine reads — pure functions over byte rows, so every path is tested without a
//! host.
//!
//! One generic path serves every bit depth ([`Sample`] is implemented for `u8`, `u16`, half and
//! `f32`); the depth is dispatched once per row, never per pixel.
//!
//! Geometry follows OpenFX: pixel rectangles are half-open (`x1 ≤ x < x2`), y goes up, and an
//! image's rows are addressed by their y. Mattes, like the engine's frames, are stored top row
//! first at the size of the source's region of definition at the render scale; [`MatteFrame`]
//! places them.

use std::hash::{DefaultHasher, Hasher};

use half::f16;
use sam2_engine::matte::MatteSettings;

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
fn quantize(value: f32, max: f32) -> f32 {
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

/// What the effect outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// The source with the union of the objects' mattes as alpha.
    #[default]
    SourceWithMatte,
    /// The union matte in every channel.
    MatteOnly,
    /// The source with each object tinted in its colour (alpha: the source's).
    Overlay,
    /// Each pixel holds the number (1–8) of the object that covers it most (at least half),
    /// 0 elsewhere; alpha is 1 where an object is.
    IdMatte,
    /// The source with the selected object's matte as alpha.
    SelectedObject,
}

impl OutputMode {
    /// In the order of the choice parameter.
    pub const ALL: [OutputMode; 5] = [
        OutputMode::SourceWithMatte,
        OutputMode::MatteOnly,
        OutputMode::Overlay,
        OutputMode::IdMatte,
        OutputMode::SelectedObject,
    ];

    pub fn label(self) -> &'static str {
        match self {
            OutputMode::SourceWithMatte => "Source + matte as alpha",
            OutputMode::MatteOnly => "Matte only",
            OutputMode::Overlay => "Overlay (tinted objects)",
            OutputMode::IdMatte => "ID matte (object number)",
            OutputMode::SelectedObject => "Selected object only",
        }
    }

    pub fn from_index(index: i32) -> OutputMode {
        usize::try_from(index)
            .ok()
            .and_then(|i| OutputMode::ALL.get(i).copied())
            .unwrap_or_default()
    }

    /// Whether the output's colour is premultiplied by its alpha (for the clip preferences).
    pub fn premultiplied(self, premultiply: bool) -> bool {
        match self {
            OutputMode::SourceWithMatte | OutputMode::SelectedObject => premultiply,
            // Matte only holds the matte in every channel: premultiplied by itself.
            OutputMode::MatteOnly => true,
            OutputMode::Overlay | OutputMode::IdMatte => false,
        }
    }
}

/// One object's finished matte over the whole frame, top row first.
#[derive(Debug, Clone, Copy)]
pub struct ObjectLayer<'a> {
    /// The object's number, 1–8.
    pub slot: u32,
    /// Its overlay colour (RGB, 0–1).
    pub colour: [f32; 3],
    /// `width · height` values in [0, 1].
    pub matte: &'a [f32],
}

/// The mattes of one frame, placed on the output's pixel grid.
#[derive(Debug, Clone)]
pub struct MatteFrame<'a> {
    /// Where the mattes lie: the source's region of definition in pixels at the render scale.
    pub region: RectI,
    pub layers: Vec<ObjectLayer<'a>>,
}

impl MatteFrame<'_> {
    /// Index of pixel (x, y) in a layer's matte, if inside the region.
    fn index(&self, x: i32, y: i32) -> Option<usize> {
        let r = &self.region;
        if x < r.x1 || x >= r.x2 || y < r.y1 || y >= r.y2 {
            return None;
        }
        let col = (i64::from(x) - i64::from(r.x1)) as usize;
        let row_from_top = (i64::from(r.y2) - 1 - i64::from(y)) as usize;
        Some(row_from_top * r.width() + col)
    }
}

/// How the output looks, read from the parameters at the render time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    pub mode: OutputMode,
    /// Source + matte modes: multiply the colour by the matte.
    pub premultiply: bool,
    /// The object [`OutputMode::SelectedObject`] shows (1–8).
    pub selected: u32,
    /// Strength of the overlay tint, 0–1.
    pub overlay_opacity: f32,
}

/// Composes one output pixel from the source pixel and the objects' matte values there.
fn compose(
    source: [f32; 4],
    mattes: &[(u32, [f32; 3], f32)],
    look: &Look,
    depth: BitDepth,
) -> [f32; 4] {
    let union = |only: Option<u32>| {
        mattes
            .iter()
            .filter(|(slot, _, _)| only.is_none_or(|s| s == *slot))
            .fold(0.0f32, |a, &(_, _, m)| a.max(m))
    };
    let with_alpha = |a: f32| {
        let k = if look.premultiply { a } else { 1.0 };
        [source[0] * k, source[1] * k, source[2] * k, a]
    };
    match look.mode {
        OutputMode::SourceWithMatte => with_alpha(union(None)),
        OutputMode::SelectedObject => with_alpha(union(Some(look.selected))),
        OutputMode::MatteOnly => {
            let a = union(None);
            [a, a, a, a]
        }
        OutputMode::Overlay => {
            let mut rgb = [source[0], source[1], source[2]];
            for &(_, colour, m) in mattes {
                let t = (m * look.overlay_opacity).clamp(0.0, 1.0);
                for (c, k) in rgb.iter_mut().zip(colour) {
                    *c = *c * (1.0 - t) + k * t;
                }
            }
            [rgb[0], rgb[1], rgb[2], source[3]]
        }
        OutputMode::IdMatte => {
            let best = mattes.iter().filter(|&&(_, _, m)| m >= 0.5).fold(
                None,
                |best: Option<(u32, f32)>, &(slot, _, m)| match best {
                    Some((_, b)) if b >= m => best,
                    _ => Some((slot, m)),
                },
            );
            match best {
                Some((slot, _)) => {
                    let v = depth.whole_number(slot);
                    [v, v, v, 1.0]
                }
                None => [0.0; 4],
            }
        }
    }
}

/// A failure to write the output; a sentence for the effect's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "The host's output image does not cover the render window (image {image:?}, window {window:?}); the frame could not be rendered."
    )]
    WindowOutsideImage { image: RectI, window: RectI },
}

/// Renders `window` of `output`: the source composed with `mattes` as `look` says, or the source
/// unchanged when `mattes` is `None` (the pass-through shown when there is no matte to show).
/// `source` may be `None` (not connected), which reads as transparent black.
pub fn render(
    source: Option<&dyn Rows>,
    output: &mut dyn RowsMut,
    window: RectI,
    mattes: Option<&MatteFrame>,
    look: &Look,
) -> Result<(), RenderError> {
    let bounds = output.bounds();
    let area = window.intersect(&bounds);
    if area != window && !window.is_empty() {
        return Err(RenderError::WindowOutsideImage {
            image: bounds,
            window,
        });
    }
    if area.is_empty() {
        return Ok(());
    }
    let layout = output.layout();
    let bpp = layout.bytes_per_pixel();
    let skip = (i64::from(area.x1) - i64::from(bounds.x1)) as usize;
    let mut src = Vec::with_capacity(area.width());
    let mut out = vec![[0.0f32; 4]; area.width()];
    let mut here = Vec::new();
    for y in area.y1..area.y2 {
        match source {
            Some(image) => read_span(image, y, area.x1, area.x2, &mut src),
            None => {
                src.clear();
                src.resize(area.width(), [0.0; 4]);
            }
        }
        match mattes {
            None => out.copy_from_slice(&src),
            Some(frame) => {
                for ((x, s), o) in (area.x1..area.x2).zip(&src).zip(out.iter_mut()) {
                    here.clear();
                    if let Some(i) = frame.index(x, y) {
                        here.extend(
                            frame.layers.iter().map(|l| {
                                (l.slot, l.colour, l.matte.get(i).copied().unwrap_or(0.0))
                            }),
                        );
                    }
                    *o = compose(*s, &here, look, layout.depth);
                }
            }
        }
        if let Some(row) = output.row_mut(y)
            && let Some(bytes) = row.get_mut(skip * bpp..(skip + area.width()) * bpp)
        {
            write_pixels(&out, layout, bytes);
        }
    }
    Ok(())
}

/// The sRGB transfer function, for sources in scene-linear light (SAM 2 was trained on
/// display-referred 8-bit images).
fn linear_to_srgb(v: f32) -> f32 {
    if v <= 0.003_130_8 {
        v * 12.92
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

/// The frame the engine reads: `region` of `image` (pixels at the image's scale) as packed 8-bit
/// RGB, top row first, resampled bilinearly to `size` when the image is at another scale (a proxy
/// render). Float values are clamped to [0, 1], optionally encoded from linear to sRGB first;
/// 8-bit sources are copied exactly.
pub fn model_frame(image: &dyn Rows, region: RectI, size: (u32, u32), linear: bool) -> Vec<u8> {
    let (w, h) = (region.width(), region.height());
    let mut rgb = vec![0u8; w * h * 3];
    let exact_bytes = image.layout().depth == BitDepth::Byte && !linear;
    let mut span = Vec::new();
    for (row_from_top, dst) in rgb.chunks_exact_mut((w * 3).max(1)).enumerate() {
        let y = region.y2 - 1 - row_from_top as i32;
        read_span(image, y, region.x1, region.x2, &mut span);
        for (px, out) in span.iter().zip(dst.chunks_exact_mut(3)) {
            for (c, o) in px.iter().zip(out.iter_mut()) {
                let v = if linear {
                    linear_to_srgb(c.max(0.0))
                } else {
                    *c
                };
                // Byte sources round-trip exactly through /255 and ·255.
                *o = if exact_bytes {
                    (v * 255.0).round() as u8
                } else {
                    quantize(v, 255.0) as u8
                };
            }
        }
    }
    let (tw, th) = (size.0 as usize, size.1 as usize);
    if (tw, th) == (w, h) {
        rgb
    } else {
        resize_rgb8(&rgb, w, h, tw, th)
    }
}

/// Bilinear resize of packed RGB8 (pixel centres aligned, edges clamped).
fn resize_rgb8(src: &[u8], w: usize, h: usize, tw: usize, th: usize) -> Vec<u8> {
    let mut out = vec![0u8; tw * th * 3];
    if w == 0 || h == 0 {
        return out;
    }
    let axis = |i: usize, from: usize, to: usize| {
        let x = ((i as f64 + 0.5) * from as f64 / to as f64 - 0.5).clamp(0.0, (from - 1) as f64);
        let x0 = x.floor() as usize;
        (x0, (x0 + 1).min(from - 1), (x - x0 as f64) as f32)
    };
    let at = |x: usize, y: usize, c: usize| {
        f32::from(src.get((y * w + x) * 3 + c).copied().unwrap_or(0))
    };
    for (ty, row) in out.chunks_exact_mut((tw * 3).max(1)).enumerate() {
        let (y0, y1, fy) = axis(ty, h, th);
        for (tx, px) in row.chunks_exact_mut(3).enumerate() {
            let (x0, x1, fx) = axis(tx, w, tw);
            for (c, o) in px.iter_mut().enumerate() {
                let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
                let bottom = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
                *o = (top * (1.0 - fy) + bottom * fy).round() as u8;
            }
        }
    }
    out
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

/// The matte settings for a render scale: lengths scale with it, areas with its square, so a
/// proxy render looks like the full one.
pub fn scaled_settings(settings: &MatteSettings, scale: f64) -> MatteSettings {
    if !(scale.is_finite() && scale > 0.0) || scale == 1.0 {
        return settings.clone();
    }
    let area = |a: u32| (f64::from(a) * scale * scale).round() as u32;
    MatteSettings {
        expand: (f64::from(settings.expand) * scale).round() as i32,
        feather: (f64::from(settings.feather) * scale) as f32,
        fill_holes_below: area(settings.fill_holes_below),
        remove_specks_below: area(settings.remove_specks_below),
        ..settings.clone()
    }
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
    use super::*;

    const DEPTHS: [BitDepth; 4] = [
        BitDepth::Byte,
        BitDepth::Short,
        BitDepth::Half,
        BitDepth::Float,
    ];

    fn layout(depth: BitDepth, components: Components) -> PixelLayout {
        PixelLayout { depth, components }
    }

    /// The precision a depth keeps for values in [0, 1].
    fn tolerance(depth: BitDepth) -> f32 {
        match depth {
            BitDepth::Byte => 0.5 / 255.0 + 1e-6,
            BitDepth::Short => 0.5 / 65535.0 + 1e-7,
            BitDepth::Half => 1e-3,
            BitDepth::Float => 0.0,
        }
    }

    fn ramp(x: i32, y: i32) -> [f32; 4] {
        [
            (x as f32 * 0.1).rem_euclid(1.0),
            (y as f32 * 0.07).rem_euclid(1.0),
            0.25,
            0.5 + 0.01 * x as f32,
        ]
    }

    const LOOK: Look = Look {
        mode: OutputMode::SourceWithMatte,
        premultiply: false,
        selected: 1,
        overlay_opacity: 0.5,
    };

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

    /// A matte that is 1 on the left half of the frame and 0 elsewhere, for a region.
    fn left_half(region: RectI) -> Vec<f32> {
        let (w, h) = (region.width(), region.height());
        (0..w * h)
            .map(|i| if i % w < w / 2 { 1.0 } else { 0.0 })
            .collect()
    }

    #[test]
    fn only_the_render_window_is_written_and_the_matte_lands_on_its_pixels() {
        let region = RectI::new(0, 0, 8, 4);
        for depth in DEPTHS {
            for components in [Components::Rgba, Components::Rgb] {
                let mut source = OwnedImage::new(region, layout(depth, components));
                source.fill(|x, y| [0.1 * x as f32, 0.2 * y as f32, 0.5, 1.0]);
                let mut output = OwnedImage::new(region, layout(depth, Components::Rgba));
                output.fill(|_, _| [0.9, 0.9, 0.9, 0.9]);
                let matte = left_half(region);
                let frame = MatteFrame {
                    region,
                    layers: vec![ObjectLayer {
                        slot: 1,
                        colour: [1.0, 0.0, 0.0],
                        matte: &matte,
                    }],
                };
                let window = RectI::new(2, 1, 6, 3);
                render(Some(&source), &mut output, window, Some(&frame), &LOOK).unwrap();
                for y in 0..4 {
                    for x in 0..8 {
                        let got = output.pixel(x, y);
                        let inside = (2..6).contains(&x) && (1..3).contains(&y);
                        let want = if inside {
                            let s = source.pixel(x, y);
                            [s[0], s[1], s[2], if x < 4 { 1.0 } else { 0.0 }]
                        } else {
                            [0.9; 4]
                        };
                        for c in 0..4 {
                            assert!(
                                (got[c] - want[c]).abs() <= 2.0 * tolerance(depth) + 1e-6,
                                "{depth:?} {components:?} ({x},{y}) c{c}: {} vs {}",
                                got[c],
                                want[c]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_matte_is_read_top_row_first_in_a_region_with_an_offset() {
        // Region offset from the origin; a matte whose top row only is set.
        let region = RectI::new(10, 20, 13, 22);
        let matte = vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        let frame = MatteFrame {
            region,
            layers: vec![ObjectLayer {
                slot: 1,
                colour: [0.0; 3],
                matte: &matte,
            }],
        };
        let mut output = OwnedImage::new(
            RectI::new(9, 19, 14, 23),
            layout(BitDepth::Float, Components::Rgba),
        );
        let look = Look {
            mode: OutputMode::MatteOnly,
            ..LOOK
        };
        let bounds = output.bounds;
        render(None, &mut output, bounds, Some(&frame), &look).unwrap();
        for y in 19..23 {
            for x in 9..14 {
                let want = if y == 21 && (10..13).contains(&x) {
                    1.0
                } else {
                    0.0
                };
                assert_eq!(output.pixel(x, y), [want; 4], "({x},{y})");
            }
        }
    }

    #[test]
    fn a_proxy_render_maps_the_scaled_matte_onto_the_scaled_image() {
        // A 1920×1080 source at render scale 0.5 with PAR 2 (anamorphic): canonical width 3840.
        let rod = RectD {
            x1: 0.0,
            y1: 0.0,
            x2: 3840.0,
            y2: 1080.0,
        };
        assert_eq!(
            pixel_rect(rod, [1.0, 1.0], 2.0),
            RectI::new(0, 0, 1920, 1080)
        );
        let half = pixel_rect(rod, [0.5, 0.5], 2.0);
        assert_eq!(half, RectI::new(0, 0, 960, 540));
        // Non-integral edges widen to whole pixels.
        let odd = RectD {
            x1: 0.5,
            y1: -0.5,
            x2: 10.2,
            y2: 3.0,
        };
        assert_eq!(pixel_rect(odd, [1.0, 1.0], 1.0), RectI::new(0, -1, 11, 3));
        // The matte computed for the proxy region covers the proxy output exactly.
        let region = RectI::new(0, 0, 96, 54);
        let matte = left_half(region);
        let frame = MatteFrame {
            region,
            layers: vec![ObjectLayer {
                slot: 1,
                colour: [0.0; 3],
                matte: &matte,
            }],
        };
        let mut output = OwnedImage::new(region, layout(BitDepth::Byte, Components::Rgba));
        let look = Look {
            mode: OutputMode::MatteOnly,
            ..LOOK
        };
        render(None, &mut output, region, Some(&frame), &look).unwrap();
        assert_eq!(output.pixel(47, 0), [1.0; 4]);
        assert_eq!(output.pixel(48, 53), [0.0; 4]);
    }

    #[test]
    fn settings_scale_with_the_render_scale() {
        let s = MatteSettings {
            threshold: 0.5,
            softness: 1.0,
            fill_holes_below: 100,
            remove_specks_below: 40,
            expand: -5,
            feather: 4.0,
        };
        assert_eq!(scaled_settings(&s, 1.0), s);
        let half = scaled_settings(&s, 0.5);
        assert_eq!(half.expand, -3); // −2.5 rounds away from zero
        assert_eq!(half.feather, 2.0);
        assert_eq!(half.fill_holes_below, 25);
        assert_eq!(half.remove_specks_below, 10);
        assert_eq!((half.threshold, half.softness), (0.5, 1.0));
    }

    fn one_pixel(
        look: &Look,
        source: [f32; 4],
        mattes: &[(u32, [f32; 3], f32)],
        depth: BitDepth,
    ) -> [f32; 4] {
        compose(source, mattes, look, depth)
    }

    #[test]
    fn output_modes_compose_as_documented() {
        let src = [0.8, 0.4, 0.2, 1.0];
        let red = [1.0, 0.0, 0.0];
        let blue = [0.0, 0.0, 1.0];
        let m = [(1, red, 0.25), (3, blue, 0.75)];
        let look = |mode| Look { mode, ..LOOK };
        let f = BitDepth::Float;
        assert_eq!(
            one_pixel(&look(OutputMode::SourceWithMatte), src, &m, f),
            [0.8, 0.4, 0.2, 0.75]
        );
        let premult = Look {
            premultiply: true,
            ..look(OutputMode::SourceWithMatte)
        };
        assert_eq!(one_pixel(&premult, src, &m, f), [0.6, 0.3, 0.15, 0.75]);
        assert_eq!(
            one_pixel(&look(OutputMode::MatteOnly), src, &m, f),
            [0.75; 4]
        );
        assert_eq!(
            one_pixel(&look(OutputMode::SelectedObject), src, &m, f),
            [0.8, 0.4, 0.2, 0.25]
        );
        let none = Look {
            selected: 2,
            ..look(OutputMode::SelectedObject)
        };
        assert_eq!(one_pixel(&none, src, &m, f)[3], 0.0);
        // Overlay: each object tints by matte × opacity, in order; alpha stays the source's.
        let o = one_pixel(
            &look(OutputMode::Overlay),
            [0.0, 0.0, 0.0, 0.5],
            &[(1, red, 1.0)],
            f,
        );
        assert_eq!(o, [0.5, 0.0, 0.0, 0.5]);
        // ID matte: the object covering the pixel most, if at least half; the number as stored.
        assert_eq!(
            one_pixel(&look(OutputMode::IdMatte), src, &m, f),
            [3.0, 3.0, 3.0, 1.0]
        );
        let byte = one_pixel(&look(OutputMode::IdMatte), src, &m, BitDepth::Byte);
        let mut stored = [0u8; 4];
        write_pixels(
            &[byte],
            layout(BitDepth::Byte, Components::Rgba),
            &mut stored,
        );
        assert_eq!(stored, [3, 3, 3, 255]);
        assert_eq!(
            one_pixel(&look(OutputMode::IdMatte), src, &[(1, red, 0.4)], f),
            [0.0; 4]
        );
        assert!(OutputMode::MatteOnly.premultiplied(false));
        assert!(!OutputMode::SourceWithMatte.premultiplied(false));
        assert_eq!(OutputMode::from_index(99), OutputMode::SourceWithMatte);
        assert_eq!(OutputMode::from_index(2), OutputMode::Overlay);
    }

    #[test]
    fn pass_through_copies_the_source_and_a_missing_source_is_transparent() {
        let region = RectI::new(0, 0, 4, 3);
        let mut source = OwnedImage::new(
            RectI::new(1, 0, 4, 3),
            layout(BitDepth::Half, Components::Rgb),
        );
        source.fill(|x, _| [0.25 * x as f32, 0.5, 1.0, 0.0]);
        let mut output = OwnedImage::new(region, layout(BitDepth::Half, Components::Rgba));
        render(Some(&source), &mut output, region, None, &LOOK).unwrap();
        assert_eq!(output.pixel(0, 1), [0.0; 4]); // outside the source's bounds
        assert_eq!(output.pixel(2, 1), [0.5, 0.5, 1.0, 1.0]);
        render(None, &mut output, region, None, &LOOK).unwrap();
        assert_eq!(output.pixel(2, 1), [0.0; 4]);
        let err = render(None, &mut output, RectI::new(0, 0, 5, 3), None, &LOOK).unwrap_err();
        assert!(err.to_string().contains("render window"));
    }

    #[test]
    fn the_model_frame_is_top_down_rgb_exact_for_bytes() {
        let region = RectI::new(0, 0, 3, 2);
        let mut image = OwnedImage::new(region, layout(BitDepth::Byte, Components::Rgba));
        image.fill(|x, y| [x as f32 / 255.0, y as f32 / 255.0, 200.0 / 255.0, 0.0]);
        let rgb = model_frame(&image, region, (3, 2), false);
        // Top row first: y = 1 comes first.
        assert_eq!(
            rgb,
            vec![
                0, 1, 200, 1, 1, 200, 2, 1, 200, 0, 0, 200, 1, 0, 200, 2, 0, 200
            ]
        );
        // Float sources clamp; linear sources are sRGB-encoded.
        let mut float = OwnedImage::new(region, layout(BitDepth::Float, Components::Rgb));
        float.fill(|_, _| [-1.0, 2.0, 0.5, 1.0]);
        assert_eq!(
            model_frame(&float, region, (3, 2), false).get(..3),
            Some(&[0u8, 255, 128][..])
        );
        assert_eq!(
            model_frame(&float, region, (3, 2), true).get(..3),
            Some(&[0u8, 255, 188][..])
        );
        // A proxy-scale image is resampled to the session's size.
        let big = model_frame(&image, region, (6, 4), false);
        assert_eq!(big.len(), 6 * 4 * 3);
        assert_eq!(big.get(..3), Some(&[0u8, 1, 200][..]));
        assert_ne!(rgb, big);
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
