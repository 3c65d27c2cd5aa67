//! Pixels: host images in any supported depth and layout ↔ RGBA `f32` ([`pixels`]), the output
//! modes ([`composite`]), and the frames the engine reads ([`model_input`]) — pure functions over
//! byte rows, so every path is tested without a host.
//!
//! Geometry follows OpenFX ([`geometry`]): pixel rectangles are half-open (`x1 ≤ x < x2`), y goes
//! up, and an image's rows are addressed by their y. Mattes, like the engine's frames, are stored
//! top row first at the size of the source's region of definition at the render scale;
//! [`MatteFrame`] places them.

pub mod composite;
pub mod geometry;
pub mod model_input;
pub mod pixels;

pub use composite::{
    Look, MatteFrame, ObjectLayer, OutputMode, RenderError, render, scaled_refinement,
    scaled_settings,
};
pub use geometry::{RectD, RectI, pixel_rect};
pub use model_input::model_frame;
pub use pixels::{
    BitDepth, Components, OwnedImage, PixelLayout, Rows, RowsMut, fingerprint, read_pixels,
    read_span, write_pixels,
};

/// What the tests of every part share: depths, tolerances, a test pattern, a default look.
#[cfg(test)]
mod test_support {
    use super::*;

    pub const DEPTHS: [BitDepth; 4] = [
        BitDepth::Byte,
        BitDepth::Short,
        BitDepth::Half,
        BitDepth::Float,
    ];

    pub fn layout(depth: BitDepth, components: Components) -> PixelLayout {
        PixelLayout { depth, components }
    }

    /// The precision a depth keeps for values in [0, 1].
    pub fn tolerance(depth: BitDepth) -> f32 {
        match depth {
            BitDepth::Byte => 0.5 / 255.0 + 1e-6,
            BitDepth::Short => 0.5 / 65535.0 + 1e-7,
            BitDepth::Half => 1e-3,
            BitDepth::Float => 0.0,
        }
    }

    pub fn ramp(x: i32, y: i32) -> [f32; 4] {
        [
            (x as f32 * 0.1).rem_euclid(1.0),
            (y as f32 * 0.07).rem_euclid(1.0),
            0.25,
            0.5 + 0.01 * x as f32,
        ]
    }

    pub const LOOK: Look = Look {
        mode: OutputMode::SourceWithMatte,
        premultiply: false,
        selected: 1,
        overlay_opacity: 0.5,
    };
}
