//! The frame the engine reads: a host image as SAM 2's input, packed 8-bit RGB, top row first.

use sam2_engine::RgbFrame;

use super::geometry::RectI;
use super::pixels::{BitDepth, Rows, quantize, read_span};

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
/// RGB, top row first, at the region's own size. Float values are clamped to [0, 1], optionally
/// encoded from linear to sRGB first; 8-bit sources are copied exactly.
///
/// A proxy render's image is not resampled here: the engine resizes every frame to SAM 2's square
/// input (bicubic, as SAM 2's own preprocessing), so a proxy frame is resized once, from its own
/// pixels, rather than bilinearly to the full size first and bicubically again.
pub fn model_frame(image: &dyn Rows, region: RectI, linear: bool) -> RgbFrame {
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
    // A RectI's sides are differences of two i32, below 2^32: they fit a u32.
    RgbFrame {
        width: w as u32,
        height: h as u32,
        data: rgb,
    }
}

#[cfg(test)]
mod tests {
    use super::super::pixels::{Components, OwnedImage};
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn the_model_frame_is_top_down_rgb_exact_for_bytes() {
        let region = RectI::new(0, 0, 3, 2);
        let mut image = OwnedImage::new(region, layout(BitDepth::Byte, Components::Rgba));
        image.fill(|x, y| [x as f32 / 255.0, y as f32 / 255.0, 200.0 / 255.0, 0.0]);
        let frame = model_frame(&image, region, false);
        // Top row first: y = 1 comes first.
        assert_eq!((frame.width, frame.height), (3, 2));
        assert_eq!(
            frame.data,
            vec![
                0, 1, 200, 1, 1, 200, 2, 1, 200, 0, 0, 200, 1, 0, 200, 2, 0, 200
            ]
        );
        // Float sources clamp; linear sources are sRGB-encoded.
        let mut float = OwnedImage::new(region, layout(BitDepth::Float, Components::Rgb));
        float.fill(|_, _| [-1.0, 2.0, 0.5, 1.0]);
        assert_eq!(
            model_frame(&float, region, false).data.get(..3),
            Some(&[0u8, 255, 128][..])
        );
        assert_eq!(
            model_frame(&float, region, true).data.get(..3),
            Some(&[0u8, 255, 188][..])
        );
    }

    #[test]
    fn the_model_frame_keeps_the_regions_own_size_for_the_engine_to_resize_once() {
        // A proxy-scale region: read at its own size, not resampled (the engine resizes it to
        // SAM 2's input, as it does every frame); pixels outside the image are black.
        let mut image = OwnedImage::new(
            RectI::new(0, 0, 4, 2),
            layout(BitDepth::Byte, Components::Rgb),
        );
        image.fill(|x, y| [x as f32 * 10.0 / 255.0, y as f32 * 10.0 / 255.0, 0.0, 1.0]);
        let frame = model_frame(&image, RectI::new(2, 0, 5, 2), false);
        assert_eq!((frame.width, frame.height), (3, 2));
        assert_eq!(
            frame.data,
            vec![20, 10, 0, 30, 10, 0, 0, 0, 0, 20, 0, 0, 30, 0, 0, 0, 0, 0]
        );
    }
}
