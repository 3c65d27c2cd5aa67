//! The overlay interact's entry: pen and key events become prompt edits (through
//! [`crate::pen`]), written to the object's prompts parameter as one undoable step; the host then
//! renders the frame again, which runs the decoder (and the encoder only if the frame was never
//! encoded). Drawing goes through the Draw Suite when the host has it, else through the host's
//! OpenGL ([`crate::overlay_gl`]), and is skipped when there is neither.
//!
//! Coordinates: pen positions are canonical; prompts are source pixels from the top-left of the
//! source's region of definition: `x = (cx − rod.x1) / PAR`, `y = rod.y2 − cy`.

use std::ffi::CStr;

use openfx::sys::generic::core::{
    OfxStatus, kOfxActionCreateInstance, kOfxActionDescribe, kOfxActionDestroyInstance,
    kOfxPropTime, kOfxStatFailed, kOfxStatOK, kOfxStatReplyDefault,
};
use openfx::sys::image_effect_v1::interact::{
    kOfxInteractActionDraw, kOfxInteractActionKeyDown, kOfxInteractActionKeyRepeat,
    kOfxInteractActionKeyUp, kOfxInteractActionLoseFocus, kOfxInteractActionPenDown,
    kOfxInteractActionPenMotion, kOfxInteractActionPenUp, kOfxInteractPropPenPosition,
    kOfxInteractPropPixelScale,
};
use openfx::sys::image_effect_v1::key_syms::kOfxPropKeySym;

use crate::ffi::images::RawHandle;
use crate::ffi::interact::Interact;
use crate::ffi::props::PropSet;
use crate::instance::Instance;
use crate::pen::{ObjectView, PenContext, PenOutcome, outline, overlay};
use crate::prompts::ObjectPrompts;
use crate::render::RectD;

/// The source's frame in canonical coordinates.
#[derive(Debug, Clone, Copy)]
struct Canvas {
    rod: RectD,
    par: f64,
}

impl Canvas {
    fn to_source(self, p: [f64; 2]) -> [f64; 2] {
        [(p[0] - self.rod.x1) / self.par, self.rod.y2 - p[1]]
    }

    fn to_canonical(self, p: [f64; 2]) -> [f64; 2] {
        [self.rod.x1 + p[0] * self.par, self.rod.y2 - p[1]]
    }
}

#[derive(Debug, Clone, Copy)]
enum PenEvent {
    Down,
    Motion,
    Up,
}

/// The overlay's main entry (one per viewer the host opens), panic-guarded.
pub fn main_entry(action: &CStr, handle: RawHandle, args: Option<PropSet>) -> OfxStatus {
    crate::guard(None, || {
        if action == kOfxActionDescribe
            || action == kOfxActionCreateInstance
            || action == kOfxActionDestroyInstance
        {
            return kOfxStatOK;
        }
        let (Some(interact), Some(args)) = (handle.interact(), args) else {
            return kOfxStatReplyDefault;
        };
        let Some(effect) = interact.effect() else {
            return kOfxStatReplyDefault;
        };
        effect
            .with_instance(|instance| {
                if action == kOfxInteractActionDraw {
                    instance.draw_overlay(args)
                } else if action == kOfxInteractActionPenDown {
                    instance.pen_event(interact, args, PenEvent::Down)
                } else if action == kOfxInteractActionPenMotion {
                    instance.pen_event(interact, args, PenEvent::Motion)
                } else if action == kOfxInteractActionPenUp {
                    instance.pen_event(interact, args, PenEvent::Up)
                } else if action == kOfxInteractActionKeyDown
                    || action == kOfxInteractActionKeyRepeat
                {
                    instance.key_event(interact, args, true)
                } else if action == kOfxInteractActionKeyUp {
                    instance.key_event(interact, args, false)
                } else if action == kOfxInteractActionLoseFocus {
                    instance.pen.lock().lose_focus();
                    kOfxStatOK
                } else {
                    kOfxStatReplyDefault
                }
            })
            .unwrap_or(kOfxStatReplyDefault)
    })
}

/// The time of an overlay action, which OpenFX requires; logged when the host leaves it out.
fn overlay_time(args: PropSet) -> Option<f64> {
    let time = args.double(kOfxPropTime, 0);
    if time.is_none() {
        log::error!("the host gave an overlay action no time; the action was not carried out");
    }
    time
}

impl Instance {
    fn canvas(&self, time: f64) -> Option<Canvas> {
        let rod = self.source?.region_of_definition(time)?;
        Some(Canvas {
            rod,
            par: self.source_par(),
        })
    }

    /// The selected object's prompts, read from its parameter.
    fn selected_prompts(&self, time: f64) -> Option<(u32, ObjectPrompts)> {
        let slot = self.params.selected(time).ok()?;
        let text = self.params.prompts_text(slot).ok()?;
        ObjectPrompts::parse(&text, "the selected object")
            .ok()
            .map(|p| (slot, p))
    }

    /// Applies what the pen logic decided.
    fn conclude(&self, interact: Interact, time: f64, slot: u32, outcome: PenOutcome) -> OfxStatus {
        match outcome {
            PenOutcome::Ignored => kOfxStatReplyDefault,
            PenOutcome::Redraw => {
                interact.redraw();
                kOfxStatOK
            }
            PenOutcome::Edit(edit) => {
                let edited = self
                    .params
                    .values(time)
                    .and_then(|values| self.apply_edit(slot, edit, &values));
                if let Err(e) = edited {
                    self.show_error(&e);
                }
                interact.redraw();
                kOfxStatOK
            }
        }
    }

    fn pen_event(&self, interact: Interact, args: PropSet, event: PenEvent) -> OfxStatus {
        let Some(time) = overlay_time(args) else {
            return kOfxStatFailed;
        };
        let (Some(canvas), Some(pos)) = (
            self.canvas(time),
            args.doubles::<2>(kOfxInteractPropPenPosition),
        ) else {
            return kOfxStatReplyDefault;
        };
        let Some((slot, prompts)) = self.selected_prompts(time) else {
            return kOfxStatReplyDefault;
        };
        // Hosts that do not say draw one canonical unit per screen pixel.
        let pixel_scale = args
            .doubles::<2>(kOfxInteractPropPixelScale)
            .map_or(1.0, |s| s[0]);
        let ctx = PenContext {
            frame: time.round() as i64,
            prompts: &prompts,
            source_per_screen: (pixel_scale / canvas.par).abs().max(1e-6),
        };
        let at = canvas.to_source(pos);
        let outcome = {
            let mut pen = self.pen.lock();
            match event {
                PenEvent::Down => pen.pen_down(at, &ctx),
                PenEvent::Motion => pen.pen_motion(at, &ctx),
                PenEvent::Up => pen.pen_up(at, &ctx),
            }
        };
        self.conclude(interact, time, slot, outcome)
    }

    fn key_event(&self, interact: Interact, args: PropSet, down: bool) -> OfxStatus {
        let Some(time) = overlay_time(args) else {
            return kOfxStatFailed;
        };
        let Some(key) = args
            .int(kOfxPropKeySym, 0)
            .and_then(|k| u32::try_from(k).ok())
        else {
            return kOfxStatReplyDefault;
        };
        let Some((slot, prompts)) = self.selected_prompts(time) else {
            return kOfxStatReplyDefault;
        };
        let ctx = PenContext {
            frame: time.round() as i64,
            prompts: &prompts,
            source_per_screen: 1.0,
        };
        let outcome = self.pen.lock().key(key, down, &ctx);
        self.conclude(interact, time, slot, outcome)
    }

    fn draw_overlay(&self, args: PropSet) -> OfxStatus {
        let Some(draw) = crate::overlay_gl::Backend::for_draw_action(args) else {
            // Neither the Draw Suite nor OpenGL: the overlay edits but does not draw.
            return kOfxStatReplyDefault;
        };
        let Some(time) = overlay_time(args) else {
            return kOfxStatFailed;
        };
        let Some(canvas) = self.canvas(time) else {
            return kOfxStatReplyDefault;
        };
        let frame = time.round() as i64;
        // Nothing to draw from parameters the host does not give (a render says why).
        let Ok(values) = self.params.values(time) else {
            return kOfxStatReplyDefault;
        };
        let Ok((objects, _)) = self.read_prompts(&values) else {
            return kOfxStatReplyDefault;
        };
        // Outlines when the tracker is free and has results here; never wait for it.
        let outlines: Vec<(u32, Vec<[f64; 2]>)> = self
            .tracker
            .try_lock()
            .and_then(|mut tracker| {
                let clip = tracker.clip()?;
                let index = clip.index(frame)?;
                let side = tracker.low_res_side()?;
                Some(
                    tracker
                        .logits(index)
                        .ok()?
                        .into_iter()
                        .map(|(slot, l)| {
                            (
                                slot,
                                outline(&l, side, values.matte.threshold, clip.video_size),
                            )
                        })
                        .collect(),
                )
            })
            .unwrap_or_default();
        let empty = ObjectPrompts::default();
        let views: Vec<ObjectView> = values
            .objects
            .iter()
            .filter(|o| o.enabled)
            .map(|o| ObjectView {
                slot: o.slot,
                colour: o.colour,
                prompts: objects.get(&o.slot).unwrap_or(&empty),
                outline: outlines
                    .iter()
                    .find(|(s, _)| *s == o.slot)
                    .map(|(_, l)| l.as_slice()),
            })
            .collect();
        // Hosts that do not say draw one canonical unit per screen pixel.
        let pixel_scale = args
            .doubles::<2>(kOfxInteractPropPixelScale)
            .map_or(1.0, |s| s[0]);
        let band = self.pen.lock().rubber_band();
        let strokes = overlay(
            &views,
            frame,
            values.selected(),
            band,
            (pixel_scale / canvas.par).abs().max(1e-6),
        );
        for stroke in strokes {
            let points: Vec<[f64; 2]> = stroke
                .points
                .iter()
                .map(|&p| canvas.to_canonical(p))
                .collect();
            draw.stroke(
                stroke.kind,
                stroke.colour,
                stroke.width,
                stroke.dashed,
                &points,
            );
        }
        kOfxStatOK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_and_source_coordinates_round_trip_with_pixel_aspect() {
        let canvas = Canvas {
            rod: RectD {
                x1: 100.0,
                y1: 50.0,
                x2: 100.0 + 1920.0 * 2.0,
                y2: 1130.0,
            },
            par: 2.0,
        };
        // The top-left corner of the source is (0, 0); y grows downwards.
        assert_eq!(canvas.to_source([100.0, 1130.0]), [0.0, 0.0]);
        assert_eq!(
            canvas.to_source([100.0 + 2.0 * 10.0, 1130.0 - 20.0]),
            [10.0, 20.0]
        );
        let p = [123.5, 456.25];
        assert_eq!(canvas.to_source(canvas.to_canonical(p)), p);
    }
}
