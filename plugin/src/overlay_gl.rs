//! Where the overlay draws: the Draw Suite when the host offers one (OpenFX 1.5), else legacy
//! OpenGL in the context the host made current for the draw action — Nuke, Natron and Resolve draw
//! overlays with OpenGL, and Natron has no Draw Suite at all. Both take the same strokes in
//! canonical coordinates, so the overlay's drawing ([`crate::pen::overlay`]) does not know which
//! one it feeds.

use crate::ffi::gl::Gl;
use crate::ffi::interact::Draw;
use crate::ffi::props::PropSet;
use crate::pen::StrokeKind;

/// The backend of one draw action.
#[derive(Debug)]
pub enum Backend {
    DrawSuite(Draw),
    OpenGl(&'static Gl),
}

impl Backend {
    /// The Draw Suite if the host has it (with a draw context in `args`); else OpenGL if the host's
    /// process has it loaded; else nothing to draw with.
    pub fn for_draw_action(args: PropSet) -> Option<Backend> {
        Draw::from_args(args)
            .map(Backend::DrawSuite)
            .or_else(|| Gl::get().map(Backend::OpenGl))
    }

    /// Draws a stroke with whichever backend this is: `points` in canonical coordinates.
    pub fn stroke(
        &self,
        kind: StrokeKind,
        colour: [f32; 4],
        width: f32,
        dashed: bool,
        points: &[[f64; 2]],
    ) {
        match self {
            Backend::DrawSuite(draw) => draw.stroke(kind, colour, width, dashed, points),
            Backend::OpenGl(gl) => gl.stroke(kind, colour, width, dashed, points),
        }
    }
}
