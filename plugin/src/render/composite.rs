//! The outputs: the source composed with the objects' mattes as the output mode says (source +
//! matte as alpha, matte only, tinted overlay, ID matte, selected object only), or the source
//! unchanged. Mattes are stored top row first at the size of the source's region of definition at
//! the render scale; [`MatteFrame`] places them on the output's pixel grid.

use sam2_engine::matte::{EdgeRefinement, MatteSettings};

use super::geometry::RectI;
use super::pixels::{BitDepth, Rows, RowsMut, read_span, write_pixels};

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

/// Refine Edges at render scale `scale`: a radius set in pixels is scaled like the feather (at
/// least the filter's smallest window, 1 pixel); the automatic radius already scales with the
/// frame it is computed for, and ε is a property of the image's values, not its size.
pub fn scaled_refinement(refinement: &EdgeRefinement, scale: f64) -> EdgeRefinement {
    if !(scale.is_finite() && scale > 0.0) || scale == 1.0 {
        return *refinement;
    }
    EdgeRefinement {
        radius: refinement
            .radius
            .map(|r| ((f64::from(r) * scale) as f32).max(1.0)),
        ..*refinement
    }
}

#[cfg(test)]
mod tests {
    use super::super::geometry::{RectD, pixel_rect};
    use super::super::pixels::{Components, OwnedImage};
    use super::super::test_support::*;
    use super::*;

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

    #[test]
    fn a_set_edge_radius_scales_with_the_proxy_and_the_automatic_one_with_the_frame() {
        use sam2_engine::matte::GuideChannels;
        let set = EdgeRefinement {
            guide: GuideChannels::Luminance,
            radius: Some(10.0),
            epsilon: 1e-3,
        };
        assert_eq!(scaled_refinement(&set, 1.0), set);
        let half = scaled_refinement(&set, 0.5);
        assert_eq!(half.radius, Some(5.0));
        assert_eq!((half.guide, half.epsilon), (set.guide, set.epsilon));
        // Never below the filter's smallest window.
        assert_eq!(scaled_refinement(&set, 0.01).radius, Some(1.0));
        // Automatic: computed from the proxy frame's own size.
        let auto = EdgeRefinement::default();
        assert_eq!(scaled_refinement(&auto, 0.25).radius, None);
        assert_eq!(auto.radius_for(1920, 1080), 15.0);
        assert_eq!(auto.radius_for(480, 270), 4.0);
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
}
