//! The overlay's pen logic — pen and key events → prompt edits — and what the overlay draws, as
//! pure functions over source-pixel coordinates (x right, y down, the prompts' convention). The
//! OpenFX interact entry ([`crate::overlay`]) converts coordinates and calls these.
//!
//! | gesture | edit (on the selected object, current frame) |
//! | --- | --- |
//! | click | a positive point |
//! | Ctrl-click (Cmd on macOS) or Alt-click | a negative point |
//! | click on one of the object's points | removes that point |
//! | drag (more than 4 screen pixels) | a box (replacing the frame's earlier clicks) |
//! | Delete or Backspace | clears the object's prompts on this frame |
//!
//! Ctrl follows Nuke, where Alt-drag pans the viewer; Alt follows Resolve's Magic Mask, where Alt
//! subtracts. Hosts tell plugins about modifier keys only through key events, so the modifiers
//! are tracked from key down/up (and forgotten when the viewer loses focus).

use openfx::sys::image_effect_v1::key_syms::{
    kOfxKey_Alt_L, kOfxKey_Alt_R, kOfxKey_BackSpace, kOfxKey_Control_L, kOfxKey_Control_R,
    kOfxKey_Delete, kOfxKey_Meta_L, kOfxKey_Meta_R, kOfxKey_Shift_L, kOfxKey_Shift_R,
};
use sam2_engine::script::Label;

use crate::prompts::{ObjectPrompts, Point, PromptEdit, normalize_box};

/// A click this close to a point (screen pixels) removes it.
pub const HIT_RADIUS: f64 = 7.0;
/// A press that moves farther than this (screen pixels) draws a box.
pub const DRAG_THRESHOLD: f64 = 4.0;

/// Modifier keys held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Modifiers {
    pub shift: bool,
    pub ctrl: bool,
    pub alt: bool,
}

/// What a pen event sees of the effect.
#[derive(Debug, Clone, Copy)]
pub struct PenContext<'a> {
    /// The host frame shown.
    pub frame: i64,
    /// The selected object's prompts.
    pub prompts: &'a ObjectPrompts,
    /// Source pixels per screen pixel (the viewer's zoom).
    pub source_per_screen: f64,
}

/// What the entry does after an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PenOutcome {
    /// Not ours: let the host handle it.
    Ignored,
    /// Ours; only the overlay changed.
    Redraw,
    /// Ours; apply this edit to the selected object's prompts.
    Edit(PromptEdit),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Press {
    start: [f64; 2],
    current: [f64; 2],
    /// The point under the pen at the press.
    hit: Option<usize>,
    dragging: bool,
    negative: bool,
}

/// The pen's state between events (one per overlay instance).
#[derive(Debug, Clone, Default)]
pub struct Pen {
    modifiers: Modifiers,
    press: Option<Press>,
}

fn distance(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

impl Pen {
    pub fn modifiers(&self) -> Modifiers {
        self.modifiers
    }

    /// A key went down (`down`) or up. Modifiers are remembered; Delete/Backspace clears the
    /// frame's prompts of the selected object.
    pub fn key(&mut self, key: u32, down: bool, ctx: &PenContext) -> PenOutcome {
        match key {
            k if k == kOfxKey_Shift_L || k == kOfxKey_Shift_R => self.modifiers.shift = down,
            k if k == kOfxKey_Control_L
                || k == kOfxKey_Control_R
                || k == kOfxKey_Meta_L
                || k == kOfxKey_Meta_R =>
            {
                self.modifiers.ctrl = down
            }
            k if k == kOfxKey_Alt_L || k == kOfxKey_Alt_R => self.modifiers.alt = down,
            k if (k == kOfxKey_Delete || k == kOfxKey_BackSpace) && down => {
                return if ctx.prompts.frame(ctx.frame).is_some() {
                    PenOutcome::Edit(PromptEdit::ClearFrame { frame: ctx.frame })
                } else {
                    PenOutcome::Ignored
                };
            }
            _ => return PenOutcome::Ignored,
        }
        // Modifier keys are shared with the host (Alt-drag pans in Nuke): never claimed.
        PenOutcome::Ignored
    }

    /// The viewer lost focus: keys released elsewhere will not be seen.
    pub fn lose_focus(&mut self) {
        self.modifiers = Modifiers::default();
        self.press = None;
    }

    pub fn pen_down(&mut self, pos: [f64; 2], ctx: &PenContext) -> PenOutcome {
        let radius = HIT_RADIUS * ctx.source_per_screen;
        let hit = ctx.prompts.frame(ctx.frame).and_then(|p| {
            p.points
                .iter()
                .enumerate()
                .map(|(i, pt)| (i, distance(pt.xy(), pos)))
                .filter(|&(_, d)| d <= radius)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
        });
        self.press = Some(Press {
            start: pos,
            current: pos,
            hit,
            dragging: false,
            negative: self.modifiers.ctrl || self.modifiers.alt,
        });
        PenOutcome::Redraw
    }

    pub fn pen_motion(&mut self, pos: [f64; 2], ctx: &PenContext) -> PenOutcome {
        let Some(press) = self.press.as_mut() else {
            return PenOutcome::Ignored;
        };
        press.current = pos;
        if !press.dragging && distance(press.start, pos) > DRAG_THRESHOLD * ctx.source_per_screen {
            press.dragging = true;
        }
        if press.dragging {
            PenOutcome::Redraw
        } else {
            PenOutcome::Ignored
        }
    }

    pub fn pen_up(&mut self, pos: [f64; 2], ctx: &PenContext) -> PenOutcome {
        let Some(mut press) = self.press.take() else {
            return PenOutcome::Ignored;
        };
        press.current = pos;
        if !press.dragging && distance(press.start, pos) > DRAG_THRESHOLD * ctx.source_per_screen {
            press.dragging = true;
        }
        let frame = ctx.frame;
        if press.dragging {
            return match normalize_box([press.start[0], press.start[1], pos[0], pos[1]]) {
                Some(bbox) if bbox[2] > bbox[0] && bbox[3] > bbox[1] => {
                    PenOutcome::Edit(PromptEdit::SetBox { frame, bbox })
                }
                _ => PenOutcome::Redraw,
            };
        }
        if let Some(index) = press.hit {
            return PenOutcome::Edit(PromptEdit::RemovePoint { frame, index });
        }
        let label = if press.negative {
            Label::Negative
        } else {
            Label::Positive
        };
        PenOutcome::Edit(PromptEdit::AddPoint {
            frame,
            point: Point::new(press.start[0], press.start[1], label),
        })
    }

    /// The box being dragged, `[x0, y0, x1, y1]` ordered.
    pub fn rubber_band(&self) -> Option<[f64; 4]> {
        let p = self.press.as_ref().filter(|p| p.dragging)?;
        normalize_box([p.start[0], p.start[1], p.current[0], p.current[1]])
    }
}

/// How a stroke's points connect (the Draw Suite's primitives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrokeKind {
    /// Pairs of points, one segment each.
    Lines,
    /// A closed outline.
    LineLoop,
    /// A filled polygon.
    Polygon,
}

/// One thing the overlay draws, in source pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Stroke {
    pub kind: StrokeKind,
    pub colour: [f32; 4],
    pub width: f32,
    pub dashed: bool,
    pub points: Vec<[f64; 2]>,
}

/// What the overlay knows of one enabled object on the shown frame.
#[derive(Debug, Clone, Copy)]
pub struct ObjectView<'a> {
    pub slot: u32,
    pub colour: [f32; 3],
    pub prompts: &'a ObjectPrompts,
    /// Its mask outline as segment pairs (see [`outline`]), if it has a result here.
    pub outline: Option<&'a [[f64; 2]]>,
}

const POSITIVE: [f32; 4] = [0.2, 0.9, 0.3, 1.0];
const NEGATIVE: [f32; 4] = [0.95, 0.2, 0.2, 1.0];
const RUBBER_BAND: [f32; 4] = [1.0, 1.0, 1.0, 1.0];

fn square(centre: [f64; 2], half: f64) -> Vec<[f64; 2]> {
    let [x, y] = centre;
    vec![
        [x - half, y - half],
        [x + half, y - half],
        [x + half, y + half],
        [x - half, y + half],
    ]
}

fn rectangle(b: [f64; 4]) -> Vec<[f64; 2]> {
    vec![[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]]
}

/// The overlay of `frame`: each object's mask outline and box in its colour, its points (green
/// positive, red negative; the selected object's larger), and the box being dragged.
pub fn overlay(
    objects: &[ObjectView],
    frame: i64,
    selected: u32,
    rubber_band: Option<[f64; 4]>,
    source_per_screen: f64,
) -> Vec<Stroke> {
    let mut strokes = Vec::new();
    for object in objects {
        let [r, g, b] = object.colour;
        let colour = [r, g, b, 1.0];
        let is_selected = object.slot == selected;
        let width = if is_selected { 2.0 } else { 1.0 };
        if let Some(outline) = object.outline.filter(|o| !o.is_empty()) {
            strokes.push(Stroke {
                kind: StrokeKind::Lines,
                colour,
                width,
                dashed: false,
                points: outline.to_vec(),
            });
        }
        let Some(prompt) = object.prompts.frame(frame) else {
            continue;
        };
        if let Some(bbox) = prompt.bbox {
            strokes.push(Stroke {
                kind: StrokeKind::LineLoop,
                colour,
                width,
                dashed: !is_selected,
                points: rectangle(bbox),
            });
        }
        let half = if is_selected { 4.0 } else { 3.0 } * source_per_screen;
        for point in &prompt.points {
            let fill = match point.label {
                Label::Positive => POSITIVE,
                Label::Negative => NEGATIVE,
            };
            strokes.push(Stroke {
                kind: StrokeKind::Polygon,
                colour: fill,
                width: 1.0,
                dashed: false,
                points: square(point.xy(), half),
            });
            strokes.push(Stroke {
                kind: StrokeKind::LineLoop,
                colour,
                width: 1.0,
                dashed: false,
                points: square(point.xy(), half + source_per_screen),
            });
        }
    }
    if let Some(bbox) = rubber_band {
        strokes.push(Stroke {
            kind: StrokeKind::LineLoop,
            colour: RUBBER_BAND,
            width: 1.0,
            dashed: true,
            points: rectangle(bbox),
        });
    }
    strokes
}

/// The outline of a mask as line segments (pairs of points) in source pixels: marching squares
/// over the `side × side` low-resolution logits at `threshold`, placed as SAM 2 upsamples them
/// (low-res pixel centres at `(i + ½) · size / side`). Outside the grid counts as background, so
/// outlines close at the image's edge. The logits are rounded to the matte precision first, as
/// every matte's are, so the outline follows the rendered matte's edge exactly.
pub fn outline(logits: &[f32], side: usize, threshold: f32, video: (u32, u32)) -> Vec<[f64; 2]> {
    if side == 0 || logits.len() != side * side {
        return Vec::new();
    }
    let logits = sam2_engine::matte::precision::round_logits(logits);
    let outside = threshold - 1.0;
    let at = |i: isize, j: isize| -> f32 {
        if i < 0 || j < 0 || i >= side as isize || j >= side as isize {
            return outside;
        }
        let v = logits
            .get(j as usize * side + i as usize)
            .copied()
            .unwrap_or(outside);
        if v.is_nan() { outside } else { v }
    };
    let (w, h) = (f64::from(video.0), f64::from(video.1));
    let sx = w / side as f64;
    let sy = h / side as f64;
    let place = |u: f64, v: f64| {
        [
            ((u + 0.5) * sx).clamp(0.0, w),
            ((v + 0.5) * sy).clamp(0.0, h),
        ]
    };
    // Where the level crosses between two corners (values a at 0, b at 1).
    let cross = |a: f32, b: f32| -> f64 {
        let d = b - a;
        if d == 0.0 {
            0.5
        } else {
            f64::from(((threshold - a) / d).clamp(0.0, 1.0))
        }
    };
    let mut segments = Vec::new();
    let n = side as isize;
    for j in -1..n {
        for i in -1..n {
            // Corners: top-left, top-right, bottom-right, bottom-left.
            let c = [at(i, j), at(i + 1, j), at(i + 1, j + 1), at(i, j + 1)];
            let inside = c.map(|v| v > threshold);
            let case = inside
                .iter()
                .enumerate()
                .fold(0u8, |acc, (k, &b)| acc | (u8::from(b) << k));
            if case == 0 || case == 15 {
                continue;
            }
            let (x, y) = (i as f64, j as f64);
            // Edge points: top, right, bottom, left.
            let top = place(x + cross(c[0], c[1]), y);
            let right = place(x + 1.0, y + cross(c[1], c[2]));
            let bottom = place(x + cross(c[3], c[2]), y + 1.0);
            let left = place(x, y + cross(c[0], c[3]));
            let pairs: &[([f64; 2], [f64; 2])] = match case {
                1 | 14 => &[(left, top)],
                2 | 13 => &[(top, right)],
                3 | 12 => &[(left, right)],
                4 | 11 => &[(right, bottom)],
                6 | 9 => &[(top, bottom)],
                7 | 8 => &[(left, bottom)],
                // Saddles: resolved as two separate corners.
                5 => &[(left, top), (right, bottom)],
                _ => &[(top, right), (left, bottom)],
            };
            for &(a, b) in pairs {
                segments.push(a);
                segments.push(b);
            }
        }
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(prompts: &ObjectPrompts) -> PenContext<'_> {
        PenContext {
            frame: 7,
            prompts,
            source_per_screen: 2.0,
        }
    }

    fn click(pen: &mut Pen, at: [f64; 2], c: &PenContext) -> PenOutcome {
        assert_eq!(pen.pen_down(at, c), PenOutcome::Redraw);
        pen.pen_up(at, c)
    }

    #[test]
    fn a_click_adds_a_positive_point_and_ctrl_or_alt_a_negative_one() {
        let prompts = ObjectPrompts::default();
        let c = ctx(&prompts);
        let mut pen = Pen::default();
        assert_eq!(
            click(&mut pen, [10.0, 20.0], &c),
            PenOutcome::Edit(PromptEdit::AddPoint {
                frame: 7,
                point: Point::new(10.0, 20.0, Label::Positive)
            })
        );
        for key in [kOfxKey_Control_L, kOfxKey_Alt_R, kOfxKey_Meta_L] {
            let mut pen = Pen::default();
            assert_eq!(pen.key(key, true, &c), PenOutcome::Ignored);
            let PenOutcome::Edit(PromptEdit::AddPoint { point, .. }) =
                click(&mut pen, [1.0, 2.0], &c)
            else {
                panic!("no point");
            };
            assert_eq!(point.label, Label::Negative, "{key}");
            pen.key(key, false, &c);
            let PenOutcome::Edit(PromptEdit::AddPoint { point, .. }) =
                click(&mut pen, [1.0, 2.0], &c)
            else {
                panic!("no point");
            };
            assert_eq!(point.label, Label::Positive);
        }
        // Shift alone changes nothing; losing focus forgets held keys.
        let mut pen = Pen::default();
        pen.key(kOfxKey_Shift_L, true, &c);
        pen.key(kOfxKey_Control_L, true, &c);
        assert!(pen.modifiers().shift && pen.modifiers().ctrl);
        pen.lose_focus();
        assert_eq!(pen.modifiers(), Modifiers::default());
    }

    #[test]
    fn a_small_wobble_is_still_a_click_and_a_drag_draws_a_box() {
        let prompts = ObjectPrompts::default();
        let c = ctx(&prompts);
        let mut pen = Pen::default();
        pen.pen_down([10.0, 10.0], &c);
        // 4 screen pixels at 2 source pixels each: 8 source pixels is not yet a drag.
        assert_eq!(pen.pen_motion([17.0, 10.0], &c), PenOutcome::Ignored);
        assert!(pen.rubber_band().is_none());
        assert!(matches!(
            pen.pen_up([17.0, 10.0], &c),
            PenOutcome::Edit(PromptEdit::AddPoint { .. })
        ));
        pen.pen_down([50.0, 40.0], &c);
        assert_eq!(pen.pen_motion([20.0, 60.0], &c), PenOutcome::Redraw);
        assert_eq!(pen.rubber_band(), Some([20.0, 40.0, 50.0, 60.0]));
        assert_eq!(
            pen.pen_up([10.0, 70.0], &c),
            PenOutcome::Edit(PromptEdit::SetBox {
                frame: 7,
                bbox: [10.0, 40.0, 50.0, 70.0]
            })
        );
        assert!(pen.rubber_band().is_none());
        // A fast drag seen only at pen up is a box too; a flat one is nothing.
        pen.pen_down([0.0, 0.0], &c);
        assert!(matches!(
            pen.pen_up([30.0, 30.0], &c),
            PenOutcome::Edit(PromptEdit::SetBox { .. })
        ));
        pen.pen_down([0.0, 5.0], &c);
        assert_eq!(pen.pen_up([30.0, 5.0], &c), PenOutcome::Redraw);
        // Motion or release without a press is not ours.
        assert_eq!(pen.pen_motion([1.0, 1.0], &c), PenOutcome::Ignored);
        assert_eq!(pen.pen_up([1.0, 1.0], &c), PenOutcome::Ignored);
    }

    #[test]
    fn clicking_a_point_removes_the_nearest_one_and_delete_clears_the_frame() {
        let mut prompts = ObjectPrompts::default();
        for x in [10.0, 20.0] {
            prompts.apply(PromptEdit::AddPoint {
                frame: 7,
                point: Point::new(x, 10.0, Label::Positive),
            });
        }
        let c = ctx(&prompts);
        let mut pen = Pen::default();
        // Within 7 screen pixels (14 source pixels) of both: the nearer one.
        assert_eq!(
            click(&mut pen, [17.0, 12.0], &c),
            PenOutcome::Edit(PromptEdit::RemovePoint { frame: 7, index: 1 })
        );
        assert!(matches!(
            click(&mut pen, [60.0, 10.0], &c),
            PenOutcome::Edit(PromptEdit::AddPoint { .. })
        ));
        // Points on other frames are not hit.
        let other = PenContext { frame: 8, ..c };
        assert!(matches!(
            click(&mut pen, [10.0, 10.0], &other),
            PenOutcome::Edit(PromptEdit::AddPoint { frame: 8, .. })
        ));
        assert_eq!(
            pen.key(kOfxKey_Delete, true, &c),
            PenOutcome::Edit(PromptEdit::ClearFrame { frame: 7 })
        );
        assert_eq!(
            pen.key(kOfxKey_BackSpace, true, &other),
            PenOutcome::Ignored
        );
        assert_eq!(pen.key(kOfxKey_Delete, false, &c), PenOutcome::Ignored);
    }

    #[test]
    fn the_overlay_draws_outlines_boxes_points_and_the_rubber_band() {
        let mut prompts = ObjectPrompts::default();
        prompts.apply(PromptEdit::SetBox {
            frame: 3,
            bbox: [0.0, 0.0, 10.0, 10.0],
        });
        prompts.apply(PromptEdit::AddPoint {
            frame: 3,
            point: Point::new(5.0, 5.0, Label::Negative),
        });
        let segs = [[0.0, 0.0], [1.0, 1.0]];
        let objects = [ObjectView {
            slot: 2,
            colour: [0.0, 0.0, 1.0],
            prompts: &prompts,
            outline: Some(&segs),
        }];
        let strokes = overlay(&objects, 3, 2, Some([1.0, 1.0, 2.0, 2.0]), 1.0);
        let kinds: Vec<StrokeKind> = strokes.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                StrokeKind::Lines,
                StrokeKind::LineLoop,
                StrokeKind::Polygon,
                StrokeKind::LineLoop,
                StrokeKind::LineLoop
            ]
        );
        assert_eq!(strokes[2].colour, NEGATIVE);
        assert!(strokes[4].dashed);
        // Another frame: only the outline.
        assert_eq!(overlay(&objects, 4, 2, None, 1.0).len(), 1);
    }

    #[test]
    fn the_outline_surrounds_the_mask_where_sam2_places_it() {
        // A 4×4 grid with the centre 2×2 set, on a 40×20 video: 10×5 pixels per cell.
        let side = 4;
        let mut logits = vec![-5.0f32; side * side];
        for (i, j) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
            logits[j * side + i] = 5.0;
        }
        let segs = outline(&logits, side, 0.0, (40, 20));
        assert_eq!(segs.len() % 2, 0);
        assert!(!segs.is_empty());
        // Every crossing lies halfway between a set and an unset centre: x at 10 or 30 pixels
        // (centres 1.5·10 = 15 and 0.5·10 = 5 → 10), y at 5 or 15.
        let xs: Vec<f64> = segs.iter().map(|p| p[0]).collect();
        let ys: Vec<f64> = segs.iter().map(|p| p[1]).collect();
        assert!(xs.iter().all(|&x| (10.0..=30.0).contains(&x)), "{xs:?}");
        assert!(ys.iter().all(|&y| (5.0..=15.0).contains(&y)), "{ys:?}");
        assert!(xs.contains(&10.0) && xs.contains(&30.0));
        // The outline is closed: every end point is shared by two segments.
        for p in &segs {
            let shared = segs.iter().filter(|q| *q == p).count();
            assert_eq!(shared, 2, "{p:?}");
        }
        // A mask touching the edge closes along it; an empty mask has no outline.
        let full = outline(&[1.0; 16], side, 0.0, (40, 20));
        assert!(full.iter().all(|p| p[0] >= 0.0 && p[0] <= 40.0));
        assert!(!full.is_empty());
        assert!(outline(&[-1.0; 16], side, 0.0, (40, 20)).is_empty());
        assert!(outline(&[1.0; 3], side, 0.0, (40, 20)).is_empty());
    }
}
