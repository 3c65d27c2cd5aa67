//! The artist's prompts as the host's project stores them: one string parameter per object holding
//! JSON, so that saving and reopening a project restores every point and box, and every edit is a
//! parameter change the host can undo.
//!
//! ```json
//! {"format": "sam2-rotoscope-prompts", "version": 1,
//!  "frames": {"12": {"points": [[120.5, 64.0], [30, 40]], "labels": [1, 0]},
//!             "30": {"box": [10, 20, 60, 80], "points": [], "labels": []}}}
//! ```
//!
//! - Frame keys are the host's frame numbers (integer times), not clip indices, so that the
//!   prompts stay on their frames when the clip's first frame is not 0.
//! - Coordinates are pixels of the full-resolution source, x right and y down from the top-left
//!   corner of the source's region of definition (the engine's and the interaction scripts'
//!   convention, docs/formats.md); a box is `[x0, y0, x1, y1]`.
//! - Labels are 1 (positive) and 0 (negative), one per point.
//! - A box on a frame replaces the clicks made on that frame before it (SAM 2's rule); clicks
//!   after the box are kept with it.
//! - An empty string is an object without prompts.

use std::collections::BTreeMap;

use sam2_engine::script::Label;
use serde::{Deserialize, Serialize};

/// The `format` field of a prompts document.
pub const PROMPTS_FORMAT: &str = "sam2-rotoscope-prompts";
/// The version this build writes and the newest it reads.
pub const PROMPTS_VERSION: u64 = 1;

/// A prompts document that cannot be read; the message names the object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptsError {
    #[error(
        "The prompts of {object} could not be read ({message}); they are left as they are in the project, and the object is not tracked until they are fixed or cleared."
    )]
    Parse { object: String, message: String },
    #[error(
        "The prompts of {object} were saved by a newer version of SAM 2 Rotoscope (version {version}, this one reads up to {PROMPTS_VERSION}); update the plugin to use them."
    )]
    NewerVersion { object: String, version: u64 },
}

/// What is wrong with one frame of a prompts document (the end of a [`PromptsError::Parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum FrameProblem {
    #[error("{points} points with {labels} labels")]
    LabelCount { points: usize, labels: usize },
    #[error("the box has a coordinate that is not a number")]
    BoxNotANumber,
}

/// One click in source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub label: Label,
}

impl Point {
    pub fn new(x: f64, y: f64, label: Label) -> Point {
        Point { x, y, label }
    }

    pub fn xy(&self) -> [f64; 2] {
        [self.x, self.y]
    }
}

/// The prompt of one object on one frame: an optional box, then clicks in the order made.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FramePrompt {
    pub bbox: Option<[f64; 4]>,
    pub points: Vec<Point>,
}

impl FramePrompt {
    pub fn is_empty(&self) -> bool {
        self.bbox.is_none() && self.points.is_empty()
    }

    /// Whether `self` is `earlier` with clicks appended (same box, earlier clicks a prefix): such a
    /// change reaches the engine as the new clicks alone.
    pub fn extends(&self, earlier: &FramePrompt) -> bool {
        self.bbox == earlier.bbox
            && self.points.len() > earlier.points.len()
            && self.points.get(..earlier.points.len()) == Some(earlier.points.as_slice())
    }
}

/// All prompts of one object, by host frame number.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectPrompts {
    pub frames: BTreeMap<i64, FramePrompt>,
}

/// An edit an artist makes on the overlay (or with a button); applied to the object's prompts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PromptEdit {
    /// A click.
    AddPoint { frame: i64, point: Point },
    /// Removes the `index`-th click of the frame.
    RemovePoint { frame: i64, index: usize },
    /// A box; it replaces the frame's earlier clicks (and box).
    SetBox { frame: i64, bbox: [f64; 4] },
    /// Every prompt of the frame.
    ClearFrame { frame: i64 },
}

impl ObjectPrompts {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn frame(&self, frame: i64) -> Option<&FramePrompt> {
        self.frames.get(&frame)
    }

    /// Reads a parameter's value; `object` names the object in messages.
    pub fn parse(text: &str, object: &str) -> Result<ObjectPrompts, PromptsError> {
        if text.trim().is_empty() {
            return Ok(ObjectPrompts::default());
        }
        let parse_error = |message: String| PromptsError::Parse {
            object: object.to_string(),
            message,
        };
        let doc: Document = serde_json::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        if doc.format != PROMPTS_FORMAT {
            return Err(parse_error(format!(
                "its format is \"{}\", not \"{PROMPTS_FORMAT}\"",
                doc.format
            )));
        }
        if doc.version > PROMPTS_VERSION {
            return Err(PromptsError::NewerVersion {
                object: object.to_string(),
                version: doc.version,
            });
        }
        let mut frames = BTreeMap::new();
        for (frame, raw) in doc.frames {
            let prompt = raw
                .into_prompt()
                .map_err(|problem| parse_error(format!("frame {frame}: {problem}")))?;
            if !prompt.is_empty() {
                frames.insert(frame, prompt);
            }
        }
        Ok(ObjectPrompts { frames })
    }

    /// The parameter value: compact JSON, frames in ascending order; empty for no prompts (so that
    /// a cleared object reads as the parameter's default).
    pub fn to_json(&self) -> String {
        if self.frames.is_empty() {
            return String::new();
        }
        let doc = Document {
            format: PROMPTS_FORMAT.to_string(),
            version: PROMPTS_VERSION,
            frames: self
                .frames
                .iter()
                .map(|(&frame, p)| (frame, RawFrame::from_prompt(p)))
                .collect(),
        };
        // Serializing plain numbers, strings and maps with integer keys cannot fail; an empty
        // document is the safe answer should it ever.
        serde_json::to_string(&doc).unwrap_or_default()
    }

    /// Applies an edit; returns whether anything changed.
    pub fn apply(&mut self, edit: PromptEdit) -> bool {
        match edit {
            PromptEdit::AddPoint { frame, point } => {
                if !(point.x.is_finite() && point.y.is_finite()) {
                    return false;
                }
                self.frames.entry(frame).or_default().points.push(point);
                true
            }
            PromptEdit::RemovePoint { frame, index } => {
                let Some(prompt) = self.frames.get_mut(&frame) else {
                    return false;
                };
                if index >= prompt.points.len() {
                    return false;
                }
                prompt.points.remove(index);
                if prompt.is_empty() {
                    self.frames.remove(&frame);
                }
                true
            }
            PromptEdit::SetBox { frame, bbox } => {
                let Some(bbox) = normalize_box(bbox) else {
                    return false;
                };
                self.frames.insert(
                    frame,
                    FramePrompt {
                        bbox: Some(bbox),
                        points: Vec::new(),
                    },
                );
                true
            }
            PromptEdit::ClearFrame { frame } => self.frames.remove(&frame).is_some(),
        }
    }
}

/// A box with its corners ordered (top-left first); `None` unless every coordinate is finite.
pub fn normalize_box(b: [f64; 4]) -> Option<[f64; 4]> {
    if !b.iter().all(|v| v.is_finite()) {
        return None;
    }
    Some([
        b[0].min(b[2]),
        b[1].min(b[3]),
        b[0].max(b[2]),
        b[1].max(b[3]),
    ])
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    version: u64,
    #[serde(default)]
    frames: BTreeMap<i64, RawFrame>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrame {
    #[serde(default, rename = "box", skip_serializing_if = "Option::is_none")]
    bbox: Option<[f64; 4]>,
    #[serde(default)]
    points: Vec<[f64; 2]>,
    #[serde(default)]
    labels: Vec<Label>,
}

impl RawFrame {
    fn from_prompt(p: &FramePrompt) -> RawFrame {
        RawFrame {
            bbox: p.bbox,
            points: p.points.iter().map(Point::xy).collect(),
            labels: p.points.iter().map(|p| p.label).collect(),
        }
    }

    fn into_prompt(self) -> Result<FramePrompt, FrameProblem> {
        if self.points.len() != self.labels.len() {
            return Err(FrameProblem::LabelCount {
                points: self.points.len(),
                labels: self.labels.len(),
            });
        }
        let bbox = match self.bbox {
            Some(b) => Some(normalize_box(b).ok_or(FrameProblem::BoxNotANumber)?),
            None => None,
        };
        let points = self
            .points
            .iter()
            .zip(&self.labels)
            .map(|(p, &label)| Point::new(p[0], p[1], label))
            .collect();
        Ok(FramePrompt { bbox, points })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ObjectPrompts {
        let mut p = ObjectPrompts::default();
        p.apply(PromptEdit::AddPoint {
            frame: 12,
            point: Point::new(120.5, 64.0, Label::Positive),
        });
        p.apply(PromptEdit::AddPoint {
            frame: 12,
            point: Point::new(30.0, 40.0, Label::Negative),
        });
        p.apply(PromptEdit::SetBox {
            frame: -3,
            bbox: [60.0, 80.0, 10.0, 20.0],
        });
        p.apply(PromptEdit::AddPoint {
            frame: -3,
            point: Point::new(30.0, 50.0, Label::Negative),
        });
        p
    }

    #[test]
    fn prompts_round_trip_through_the_parameter_string() {
        let p = sample();
        let json = p.to_json();
        assert_eq!(ObjectPrompts::parse(&json, "Object 1").unwrap(), p);
        // Boxes are stored with their corners ordered.
        assert_eq!(p.frame(-3).unwrap().bbox, Some([10.0, 20.0, 60.0, 80.0]));
        // Frames in numeric order, integer keys as JSON strings.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&String> = value["frames"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 2);
        assert_eq!(value["format"], PROMPTS_FORMAT);
        assert_eq!(value["frames"]["12"]["labels"], serde_json::json!([1, 0]));
        assert_eq!(
            value["frames"]["-3"]["box"],
            serde_json::json!([10.0, 20.0, 60.0, 80.0])
        );
    }

    #[test]
    fn an_empty_parameter_is_an_object_without_prompts_and_back() {
        assert!(ObjectPrompts::parse("", "x").unwrap().is_empty());
        assert!(ObjectPrompts::parse("  \n", "x").unwrap().is_empty());
        assert_eq!(ObjectPrompts::default().to_json(), "");
        // A document whose frames are all empty reads as no prompts.
        let doc = r#"{"format":"sam2-rotoscope-prompts","version":1,"frames":{"4":{"points":[],"labels":[]}}}"#;
        assert!(ObjectPrompts::parse(doc, "x").unwrap().is_empty());
    }

    #[test]
    fn broken_prompt_documents_are_sentences_naming_the_object() {
        for (doc, needle) in [
            ("{", "could not be read"),
            (r#"{"format":"other","version":1}"#, "\"other\""),
            (
                r#"{"format":"sam2-rotoscope-prompts","version":1,"frames":{"1":{"points":[[1,2]],"labels":[]}}}"#,
                "1 points with 0 labels",
            ),
            (
                r#"{"format":"sam2-rotoscope-prompts","version":1,"frames":{"1":{"points":[[1,2]],"labels":[2]}}}"#,
                "not 2",
            ),
            (
                r#"{"format":"sam2-rotoscope-prompts","version":1,"frames":{"x":{}}}"#,
                "could not be read",
            ),
        ] {
            let e = ObjectPrompts::parse(doc, "Hero").unwrap_err().to_string();
            assert!(e.contains("Hero") && e.contains(needle), "{doc}: {e}");
            assert!(e.ends_with('.'), "{e}");
        }
        let newer = r#"{"format":"sam2-rotoscope-prompts","version":9}"#;
        assert!(matches!(
            ObjectPrompts::parse(newer, "Hero"),
            Err(PromptsError::NewerVersion { version: 9, .. })
        ));
    }

    #[test]
    fn edits_follow_sam2_rules_for_boxes_and_clicks() {
        let mut p = sample();
        // A box replaces the clicks made on its frame before it.
        assert!(p.apply(PromptEdit::SetBox {
            frame: 12,
            bbox: [0.0, 0.0, 5.0, 5.0]
        }));
        assert_eq!(p.frame(12).unwrap().points, vec![]);
        // Removing the last click of a frame without a box drops the frame.
        let mut q = ObjectPrompts::default();
        q.apply(PromptEdit::AddPoint {
            frame: 1,
            point: Point::new(1.0, 1.0, Label::Positive),
        });
        assert!(!q.apply(PromptEdit::RemovePoint { frame: 1, index: 3 }));
        assert!(q.apply(PromptEdit::RemovePoint { frame: 1, index: 0 }));
        assert!(q.is_empty());
        assert!(!q.apply(PromptEdit::ClearFrame { frame: 1 }));
        // Non-finite input changes nothing.
        assert!(!q.apply(PromptEdit::AddPoint {
            frame: 1,
            point: Point::new(f64::NAN, 1.0, Label::Positive),
        }));
        assert!(!q.apply(PromptEdit::SetBox {
            frame: 1,
            bbox: [0.0, f64::INFINITY, 1.0, 1.0]
        }));
        assert!(q.is_empty());
    }

    #[test]
    fn appended_clicks_are_recognised_as_an_extension() {
        let p = sample();
        let before = p.frame(12).unwrap().clone();
        let mut after = before.clone();
        after.points.push(Point::new(1.0, 2.0, Label::Positive));
        assert!(after.extends(&before));
        assert!(!before.extends(&before));
        assert!(!before.extends(&after));
        let mut moved = after.clone();
        moved.points[0].x += 1.0;
        assert!(!moved.extends(&before));
        let mut boxed = after;
        boxed.bbox = Some([0.0, 0.0, 1.0, 1.0]);
        assert!(!boxed.extends(&before));
    }
}
