//! Interaction scripts (docs/formats.md): a list of the official predictor's verbs, so the same
//! session can be replayed by the reference tool, the CLI and a test.
//!
//! Interactions are parsed one by one, so that an error names the interaction by its index rather
//! than by a line and column in a file the reader may not have open.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, FileKind, Result};
use crate::exchange::Envelope;
use crate::mask_decoder::MAX_PROMPT_POINTS;

/// The `format` of an interaction script.
pub const SCRIPT_FORMAT: &str = "sam2-rotoscope-script";
/// The newest script version this build reads.
pub const SCRIPT_VERSION: u64 = 1;

const ENVELOPE: Envelope = Envelope {
    kind: FileKind::Script,
    format: SCRIPT_FORMAT,
    version: SCRIPT_VERSION,
};

/// Scripts name objects by the engine's id (re-exported here, where callers have long found it).
pub use crate::object::ObjectId;

/// The verbs, as the `op` field and the trace's steps spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    AddPoints,
    AddBox,
    AddMask,
    Propagate,
    RemoveObject,
    Reset,
}

impl Op {
    /// The spelling in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::AddPoints => "add_points",
            Op::AddBox => "add_box",
            Op::AddMask => "add_mask",
            Op::Propagate => "propagate",
            Op::RemoveObject => "remove_object",
            Op::Reset => "reset",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A click's label as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "i64", try_from = "i64")]
pub enum Label {
    /// 0: not part of the object.
    Negative,
    /// 1: part of the object.
    Positive,
}

impl From<Label> for i64 {
    fn from(label: Label) -> i64 {
        match label {
            Label::Negative => 0,
            Label::Positive => 1,
        }
    }
}

impl TryFrom<i64> for Label {
    type Error = String;
    fn try_from(value: i64) -> std::result::Result<Label, String> {
        match value {
            0 => Ok(Label::Negative),
            1 => Ok(Label::Positive),
            other => Err(format!(
                "a label is 1 (positive) or 0 (negative), not {other}"
            )),
        }
    }
}

/// Settings of the predictor under test that differ from the model's defaults. Unknown keys are
/// refused: a misspelt setting would otherwise silently test the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictorOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_all_frames_to_correct_as_cond: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_hole_area: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_overlap_masks: Option<bool>,
}

fn yes() -> bool {
    true
}

/// One interaction. Coordinates are source-image pixels, x right, y down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Interaction {
    AddPoints {
        frame: usize,
        object: ObjectId,
        points: Vec<[f64; 2]>,
        labels: Vec<Label>,
        /// The official default: new clicks replace the earlier ones on that frame.
        #[serde(default = "yes")]
        clear_old_points: bool,
    },
    /// A box replaces the object's earlier clicks on that frame; the optional clicks follow it.
    AddBox {
        frame: usize,
        object: ObjectId,
        /// `[x0, y0, x1, y1]`.
        #[serde(rename = "box")]
        bbox: [f64; 4],
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        points: Vec<[f64; 2]>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        labels: Vec<Label>,
    },
    AddMask {
        frame: usize,
        object: ObjectId,
        /// A PNG of the source size, relative to the script's folder.
        mask: PathBuf,
    },
    /// The official `propagate_in_video` arguments.
    Propagate {
        /// Default: the earliest prompted frame of any object.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_frame: Option<usize>,
        #[serde(default)]
        reverse: bool,
        /// Default: the whole clip.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_frames: Option<usize>,
    },
    RemoveObject {
        object: ObjectId,
    },
    Reset,
}

impl Interaction {
    /// The verb.
    pub fn op(&self) -> Op {
        match self {
            Interaction::AddPoints { .. } => Op::AddPoints,
            Interaction::AddBox { .. } => Op::AddBox,
            Interaction::AddMask { .. } => Op::AddMask,
            Interaction::Propagate { .. } => Op::Propagate,
            Interaction::RemoveObject { .. } => Op::RemoveObject,
            Interaction::Reset => Op::Reset,
        }
    }

    /// The frame a prompt is on; `None` for the verbs that are not about one frame.
    pub fn frame(&self) -> Option<usize> {
        match self {
            Interaction::AddPoints { frame, .. }
            | Interaction::AddBox { frame, .. }
            | Interaction::AddMask { frame, .. } => Some(*frame),
            _ => None,
        }
    }

    /// What is wrong with the interaction on its own, as a phrase.
    fn problem(&self) -> Option<String> {
        fn clicks(points: &[[f64; 2]], labels: &[Label], corners: usize) -> Option<String> {
            if points.len() + corners > MAX_PROMPT_POINTS {
                return Some(format!(
                    "it has {} points (a box counts as two), more than the {MAX_PROMPT_POINTS} one object can have on one frame",
                    points.len() + corners
                ));
            }
            if points.len() != labels.len() {
                return Some(format!(
                    "it has {} point(s) but {} label(s); give one label per point",
                    points.len(),
                    labels.len()
                ));
            }
            points
                .iter()
                .position(|p| !p.iter().all(|c| c.is_finite()))
                .map(|i| format!("point {i} has a coordinate that is not a finite number"))
        }
        match self {
            Interaction::AddPoints { points, labels, .. } => {
                if points.is_empty() {
                    return Some("it has no points; add_points needs at least one".into());
                }
                clicks(points, labels, 0)
            }
            Interaction::AddBox {
                bbox,
                points,
                labels,
                ..
            } => {
                if !bbox.iter().all(|c| c.is_finite()) {
                    return Some("its box has a coordinate that is not a finite number".into());
                }
                let [x0, y0, x1, y1] = *bbox;
                if x0 > x1 || y0 > y1 {
                    return Some(format!(
                        "its box [{x0}, {y0}, {x1}, {y1}] is not [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1"
                    ));
                }
                clicks(points, labels, 2)
            }
            Interaction::AddMask { mask, .. } => mask
                .as_os_str()
                .is_empty()
                .then(|| "its mask path is empty".to_string()),
            // `max_frames: 0` is valid: like the official `max_frame_num_to_track`, n yields
            // n + 1 frames, so 0 re-yields the start frame alone.
            Interaction::Propagate { .. }
            | Interaction::RemoveObject { .. }
            | Interaction::Reset => None,
        }
    }
}

/// The on-disk shape of a script, before the interactions are parsed one by one. Unknown
/// top-level keys (a description, say) are allowed; they change nothing.
#[derive(Deserialize)]
struct RawScript {
    format: String,
    version: u64,
    #[serde(default)]
    clip: Option<PathBuf>,
    #[serde(default)]
    predictor: PredictorOverrides,
    interactions: Vec<serde_json::Value>,
}

/// A parsed, validated interaction script.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Script {
    pub format: String,
    pub version: u64,
    /// The clip the script was written for, relative to the script's folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip: Option<PathBuf>,
    #[serde(skip_serializing_if = "is_default")]
    pub predictor: PredictorOverrides,
    pub interactions: Vec<Interaction>,
    /// The folder the script's relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn is_default(p: &PredictorOverrides) -> bool {
    *p == PredictorOverrides::default()
}

impl Script {
    /// Reads and validates the script at `path`.
    pub fn read(path: impl AsRef<Path>) -> Result<Script> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let base_dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        Script::parse(path, &bytes, base_dir)
    }

    /// Parses and validates script bytes; `path` is used in messages, `base_dir` resolves the
    /// script's relative paths.
    pub fn parse(path: &Path, bytes: &[u8], base_dir: PathBuf) -> Result<Script> {
        let raw: RawScript = ENVELOPE.parse(path, bytes)?;
        let mut interactions = Vec::with_capacity(raw.interactions.len());
        for (index, value) in raw.interactions.into_iter().enumerate() {
            let op = value
                .get("op")
                .and_then(|op| op.as_str())
                .unwrap_or("no op")
                .to_string();
            let invalid = |problem: String| Error::InvalidInteraction {
                path: path.to_path_buf(),
                index,
                op: op.clone(),
                problem,
            };
            let interaction =
                Interaction::deserialize(value).map_err(|e| invalid(e.to_string()))?;
            if let Some(problem) = interaction.problem() {
                return Err(invalid(problem));
            }
            interactions.push(interaction);
        }
        Ok(Script {
            format: raw.format,
            version: raw.version,
            clip: raw.clip,
            predictor: raw.predictor,
            interactions,
            base_dir,
        })
    }

    /// Resolves a path written in the script (the clip, a mask) against the script's folder.
    pub fn resolve(&self, relative: &Path) -> PathBuf {
        self.base_dir.join(relative)
    }

    /// The clip folder the script names, resolved.
    pub fn clip_path(&self) -> Option<PathBuf> {
        self.clip.as_deref().map(|c| self.resolve(c))
    }

    /// Checks that every frame the script names exists in a clip of `num_frames` frames; `path` is
    /// the script, for messages.
    pub fn check_frames(&self, path: &Path, num_frames: usize) -> Result<()> {
        for (index, interaction) in self.interactions.iter().enumerate() {
            let frame = match interaction {
                Interaction::Propagate { start_frame, .. } => *start_frame,
                other => other.frame(),
            };
            if let Some(frame) = frame.filter(|f| *f >= num_frames) {
                return Err(Error::InvalidInteraction {
                    path: path.to_path_buf(),
                    index,
                    op: interaction.op().to_string(),
                    problem: format!(
                        "it names frame {frame}, but the clip has {num_frames} frames (0 to {})",
                        num_frames.saturating_sub(1)
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of docs/formats.md, verbatim.
    const DOC_EXAMPLE: &str = r#"{
  "format": "sam2-rotoscope-script",
  "version": 1,
  "clip": "../clips/two_objects",
  "predictor": {"add_all_frames_to_correct_as_cond": true},
  "interactions": [
    {"op": "add_points", "frame": 0, "object": 1, "points": [[120.5, 64.0], [30, 40]], "labels": [1, 0]},
    {"op": "add_points", "frame": 0, "object": 1, "points": [[100, 70]], "labels": [1], "clear_old_points": false},
    {"op": "add_box", "frame": 3, "object": 2, "box": [10, 20, 60, 80]},
    {"op": "add_box", "frame": 3, "object": 2, "box": [10, 20, 60, 80], "points": [[30, 50]], "labels": [0]},
    {"op": "add_mask", "frame": 5, "object": 3, "mask": "masks/object3_frame5.png"},
    {"op": "propagate"},
    {"op": "propagate", "start_frame": 7, "reverse": true, "max_frames": 4},
    {"op": "remove_object", "object": 2},
    {"op": "reset"}
  ]
}"#;

    fn parse(json: &str) -> Result<Script> {
        Script::parse(
            Path::new("/s/script.json"),
            json.as_bytes(),
            PathBuf::from("/s"),
        )
    }

    /// Replaces the interactions of a minimal script.
    fn with_interactions(interactions: &str) -> String {
        format!(
            r#"{{"format": "sam2-rotoscope-script", "version": 1, "interactions": [{interactions}]}}"#
        )
    }

    #[test]
    fn parses_the_documented_example() -> Result<()> {
        let script = parse(DOC_EXAMPLE)?;
        assert_eq!(
            script.clip_path(),
            Some(PathBuf::from("/s/../clips/two_objects"))
        );
        assert_eq!(
            script.predictor.add_all_frames_to_correct_as_cond,
            Some(true)
        );
        assert_eq!(script.predictor.fill_hole_area, None);
        let ops: Vec<Op> = script.interactions.iter().map(Interaction::op).collect();
        use Op::*;
        assert_eq!(
            ops,
            [
                AddPoints,
                AddPoints,
                AddBox,
                AddBox,
                AddMask,
                Propagate,
                Propagate,
                RemoveObject,
                Reset
            ]
        );
        assert_eq!(
            script.interactions[0],
            Interaction::AddPoints {
                frame: 0,
                object: ObjectId(1),
                points: vec![[120.5, 64.0], [30.0, 40.0]],
                labels: vec![Label::Positive, Label::Negative],
                clear_old_points: true,
            }
        );
        assert!(matches!(
            script.interactions[1],
            Interaction::AddPoints {
                clear_old_points: false,
                ..
            }
        ));
        assert!(matches!(
            &script.interactions[2],
            Interaction::AddBox { bbox: [10.0, 20.0, 60.0, 80.0], points, .. } if points.is_empty()
        ));
        assert_eq!(
            script.interactions[5],
            Interaction::Propagate {
                start_frame: None,
                reverse: false,
                max_frames: None
            }
        );
        assert_eq!(
            script.interactions[6],
            Interaction::Propagate {
                start_frame: Some(7),
                reverse: true,
                max_frames: Some(4)
            }
        );
        let Interaction::AddMask { mask, .. } = &script.interactions[4] else {
            panic!("interaction 4 must be add_mask");
        };
        assert_eq!(
            script.resolve(mask),
            PathBuf::from("/s/masks/object3_frame5.png")
        );
        Ok(())
    }

    #[test]
    fn round_trips_through_serde() -> Result<()> {
        let script = parse(DOC_EXAMPLE)?;
        let json = serde_json::to_string(&script).map_err(|e| Error::Parse {
            kind: FileKind::Script,
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        let again = parse(&json)?;
        assert_eq!(script, again);
        Ok(())
    }

    fn invalid(interactions: &str) -> (usize, String) {
        match parse(&with_interactions(interactions)) {
            Err(err @ Error::InvalidInteraction { index, .. }) => (index, err.to_string()),
            other => panic!("expected InvalidInteraction for {interactions}, got {other:?}"),
        }
    }

    #[test]
    fn label_count_must_match_points() {
        let (index, text) = invalid(
            r#"{"op": "reset"}, {"op": "add_points", "frame": 0, "object": 1, "points": [[1, 2], [3, 4]], "labels": [1]}"#,
        );
        assert_eq!(index, 1);
        assert!(
            text.starts_with("Interaction 1 (add_points) in the interaction script /s/script.json"),
            "{text}"
        );
        assert!(text.contains("2 point(s) but 1 label(s)"), "{text}");
    }

    #[test]
    fn clicks_are_bounded() {
        let op = |n: usize, with_box: bool| {
            let points = vec!["[1, 2]"; n].join(", ");
            let labels = vec!["1"; n].join(", ");
            if with_box {
                format!(
                    r#"{{"op": "add_box", "frame": 0, "object": 1, "box": [0, 0, 5, 5], "points": [{points}], "labels": [{labels}]}}"#
                )
            } else {
                format!(
                    r#"{{"op": "add_points", "frame": 0, "object": 1, "points": [{points}], "labels": [{labels}]}}"#
                )
            }
        };
        assert!(parse(&with_interactions(&op(MAX_PROMPT_POINTS, false))).is_ok());
        assert!(parse(&with_interactions(&op(MAX_PROMPT_POINTS - 2, true))).is_ok());
        for (n, with_box) in [
            (MAX_PROMPT_POINTS + 1, false),
            (MAX_PROMPT_POINTS - 1, true),
        ] {
            let (index, text) = invalid(&op(n, with_box));
            assert_eq!(index, 0);
            assert!(text.contains("257 points"), "{text}");
            assert!(text.contains("more than the 256"), "{text}");
        }
    }

    #[test]
    fn labels_are_zero_or_one() {
        let (index, text) = invalid(
            r#"{"op": "add_points", "frame": 0, "object": 1, "points": [[1, 2]], "labels": [2]}"#,
        );
        assert_eq!(index, 0);
        assert!(text.contains("not 2"), "{text}");
    }

    #[test]
    fn coordinates_must_be_finite() {
        // JSON cannot hold a non-finite number (Python's json writes a bare NaN, which is not
        // JSON and fails to parse); an interaction built in code can.
        let err = parse(&with_interactions(
            r#"{"op": "add_points", "frame": 0, "object": 1, "points": [[NaN, 2]], "labels": [1]}"#,
        ))
        .map(|_| ());
        assert!(matches!(err, Err(Error::Parse { .. })), "{err:?}");
        let built = Interaction::AddBox {
            frame: 0,
            object: ObjectId(1),
            bbox: [0.0, 0.0, f64::INFINITY, 5.0],
            points: vec![],
            labels: vec![],
        };
        let problem = built.problem().unwrap_or_default();
        assert!(problem.contains("not a finite number"), "{problem}");
        let built = Interaction::AddPoints {
            frame: 0,
            object: ObjectId(1),
            points: vec![[1.0, 2.0], [f64::NAN, 2.0]],
            labels: vec![Label::Positive, Label::Negative],
            clear_old_points: true,
        };
        let problem = built.problem().unwrap_or_default();
        assert!(problem.contains("point 1"), "{problem}");
    }

    #[test]
    fn box_corners_must_be_ordered() {
        let (index, text) = invalid(
            r#"{"op": "propagate"}, {"op": "reset"}, {"op": "add_box", "frame": 0, "object": 1, "box": [60, 20, 10, 80]}"#,
        );
        assert_eq!(index, 2);
        assert!(text.contains("x0 <= x1"), "{text}");
    }

    #[test]
    fn unknown_ops_and_fields_are_refused() {
        let (_, text) = invalid(r#"{"op": "add_scribble", "frame": 0}"#);
        assert!(text.contains("add_scribble"), "{text}");
        let (_, text) = invalid(
            r#"{"op": "add_points", "frame": 0, "object": 1, "points": [[1, 2]], "labels": [1], "clear_old_point": false}"#,
        );
        assert!(text.contains("clear_old_point"), "{text}");
    }

    #[test]
    fn unknown_predictor_settings_are_refused() {
        let json = r#"{"format": "sam2-rotoscope-script", "version": 1, "predictor": {"fill_hole": 8}, "interactions": []}"#;
        let err = parse(json).map(|_| ());
        assert!(matches!(&err, Err(Error::Parse { .. })), "{err:?}");
    }

    #[test]
    fn frames_are_checked_against_the_clip() -> Result<()> {
        let script = parse(&with_interactions(
            r#"{"op": "add_points", "frame": 3, "object": 1, "points": [[1, 2]], "labels": [1]}"#,
        ))?;
        script.check_frames(Path::new("/s/script.json"), 4)?;
        let err = script
            .check_frames(Path::new("/s/script.json"), 3)
            .map(|_| ());
        let Err(err) = err else {
            panic!("frame 3 of 3 must be refused")
        };
        assert!(
            err.to_string()
                .contains("frame 3, but the clip has 3 frames"),
            "{err}"
        );
        Ok(())
    }
}
