//! The overlay interact: its handle, and drawing through the Draw Suite (OpenFX 1.5) — no OpenGL.

use std::ffi::c_void;

use openfx::sys::generic::core::{OfxPointD, kOfxPropEffectInstance};
use openfx::sys::image_effect_v1::draw_suite::{
    OfxDrawContextHandle, OfxDrawSuiteV1, kOfxDrawLineStipplePatternDash,
    kOfxDrawLineStipplePatternSolid, kOfxDrawPrimitiveLineLoop, kOfxDrawPrimitiveLines,
    kOfxDrawPrimitivePolygon, kOfxInteractPropDrawContext,
};
use openfx::sys::image_effect_v1::interact::OfxInteractHandle;
use openfx::sys::image_effect_v1::pixels::OfxRGBAColourF;

use super::host;
use super::images::{Effect, RawHandle};
use super::props::PropSet;
use crate::pen::StrokeKind;

/// An overlay interact instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interact(OfxInteractHandle);

impl RawHandle {
    /// The handle as an interact (overlay actions).
    pub fn interact(self) -> Option<Interact> {
        (!self.0.is_null()).then_some(Interact(self.0.cast_mut().cast()))
    }
}

impl Interact {
    pub fn props(self) -> Option<PropSet> {
        let get = host::suites()?.interact?.interactGetPropertySet?;
        // SAFETY: a live interact handle and a valid out-pointer.
        let props = super::out_handle(|out| unsafe { get(self.0, out) })?;
        PropSet::from_raw(props)
    }

    /// The effect instance this overlay belongs to.
    pub fn effect(self) -> Option<Effect> {
        Effect::from_raw(self.props()?.pointer(kOfxPropEffectInstance, 0)?)
    }

    /// Asks the host to draw the overlay again.
    pub fn redraw(self) {
        if let Some(redraw) = host::suites()
            .and_then(|s| s.interact)
            .and_then(|i| i.interactRedraw)
        {
            // SAFETY: a live interact handle.
            unsafe {
                redraw(self.0);
            }
        }
    }
}

/// A draw context of the Draw Suite, valid during one draw action.
#[derive(Debug)]
pub struct Draw {
    context: OfxDrawContextHandle,
    suite: &'static OfxDrawSuiteV1,
}

impl Draw {
    /// The draw context of a draw action's arguments, if the host offers the Draw Suite.
    pub fn from_args(args: PropSet) -> Option<Draw> {
        let suite = host::suites()?.draw?;
        let context: *mut c_void = args.pointer(kOfxInteractPropDrawContext, 0)?;
        Some(Draw {
            context: context.cast(),
            suite,
        })
    }

    /// Draws a stroke: `points` in canonical coordinates.
    pub fn stroke(
        &self,
        kind: StrokeKind,
        colour: [f32; 4],
        width: f32,
        dashed: bool,
        points: &[[f64; 2]],
    ) {
        let colour = OfxRGBAColourF {
            r: colour[0],
            g: colour[1],
            b: colour[2],
            a: colour[3],
        };
        let points: Vec<OfxPointD> = points
            .iter()
            .map(|p| OfxPointD { x: p[0], y: p[1] })
            .collect();
        let primitive = match kind {
            StrokeKind::Lines => kOfxDrawPrimitiveLines,
            StrokeKind::LineLoop => kOfxDrawPrimitiveLineLoop,
            StrokeKind::Polygon => kOfxDrawPrimitivePolygon,
        };
        let stipple = if dashed {
            kOfxDrawLineStipplePatternDash
        } else {
            kOfxDrawLineStipplePatternSolid
        };
        let Ok(count) = i32::try_from(points.len()) else {
            return;
        };
        // SAFETY: the context is the host's for this draw action; `colour` and `points` live
        // across the calls, and `count` is the number of points.
        unsafe {
            if let Some(set_colour) = self.suite.setColour {
                set_colour(self.context, &colour);
            }
            if let Some(set_width) = self.suite.setLineWidth {
                set_width(self.context, width);
            }
            if let Some(set_stipple) = self.suite.setLineStipple {
                set_stipple(self.context, stipple);
            }
            if let Some(draw) = self.suite.draw {
                draw(self.context, primitive, points.as_ptr(), count);
            }
        }
    }
}
