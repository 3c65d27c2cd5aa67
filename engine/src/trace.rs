//! Reference traces (docs/formats.md): what the official predictor output at each step of a
//! script, to compare the engine against.
//!
//! Reading checks everything a trace can be checked for on its own — array dtypes, one K across a
//! step's arrays, mask size equal to the video size, logits finite, an object score finite or NaN
//! and, where NaN (no output), logits at the no-object value and an empty mask — so that a parity
//! test failing means the engine differs, not that the trace was malformed.

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array3, Ix1, Ix3};
use ndarray_npy::NpzReader;
use serde::{Deserialize, Serialize};

use crate::error::{Error, FileKind, Result};
use crate::exchange::Envelope;
use crate::object::ObjectId;
use crate::script::Op;

/// The `format` of a trace.
pub const TRACE_FORMAT: &str = "sam2-rotoscope-trace";
/// The newest trace version this build reads.
pub const TRACE_VERSION: u64 = 1;
/// The trace's JSON file inside the trace folder.
pub const TRACE_FILE: &str = "trace.json";
/// The logits the predictor holds where an object is absent or has no output.
pub const NO_OBJECT_LOGIT: f32 = -1024.0;

const ENVELOPE: Envelope = Envelope {
    kind: FileKind::Trace,
    format: TRACE_FORMAT,
    version: TRACE_VERSION,
};

/// `trace.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceHeader {
    pub format: String,
    pub version: u64,
    /// Who wrote the trace, e.g. "sam2 1.1.0 SAM2VideoPredictor (cpu)".
    pub producer: String,
    /// SHA-256 of the model's `manifest.json`; ties the trace to one model directory.
    pub model_manifest_sha256: String,
    /// The clip, relative to the trace folder.
    #[serde(default)]
    pub clip: Option<PathBuf>,
    /// The script, relative to the trace folder.
    #[serde(default)]
    pub script: Option<PathBuf>,
    /// `[W, H]`.
    pub video_size: [usize; 2],
    pub num_frames: usize,
    /// S of the model, when the writer records it (not in docs/formats.md yet; the reference tool
    /// writes it). Lets a reader check the logits' size without the model at hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<u32>,
    /// The predictor settings the trace was made with.
    pub predictor: TracePredictor,
    pub steps: Vec<TraceStep>,
}

/// The trace's `predictor` section: the settings of the predictor that made it, under the
/// official names. A reader replays a trace with them (a parity check turns hole filling off
/// where the reference did not apply it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracePredictor {
    pub add_all_frames_to_correct_as_cond: bool,
    /// The hole size the predictor was configured with…
    pub fill_hole_area: u32,
    /// …and whether holes were really filled: the official code skips it without its CUDA
    /// extension, so CPU traces say false.
    pub fill_hole_applied: bool,
    pub non_overlap_masks: bool,
    pub clear_non_cond_mem_around_input: bool,
}

/// One step: one interaction of the script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    pub step: usize,
    pub op: Op,
    /// The `.npz` file, relative to the trace folder; `None` when the step output nothing.
    pub file: Option<String>,
    /// K, the number of outputs.
    pub outputs: usize,
}

/// The K outputs of one step, in the order the predictor produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutputs {
    /// `[K]` frame indices.
    pub frame: Array1<i64>,
    /// `[K]` object ids.
    pub object: Array1<i64>,
    /// `[K, S/4, S/4]` mask logits.
    pub low_res_logits: Array3<f32>,
    /// `[K]`; NaN where the object has no stored output on that frame.
    pub object_score_logits: Array1<f32>,
    /// `[K, H, W]` the video-resolution mask.
    pub mask: Array3<bool>,
}

impl StepOutputs {
    /// K.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    /// Whether the step output nothing.
    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// The side of the low-resolution logits (S/4).
    pub fn low_res_size(&self) -> usize {
        self.low_res_logits.dim().1
    }

    /// The object of output `k`.
    pub fn object_id(&self, k: usize) -> Option<ObjectId> {
        self.object
            .get(k)
            .and_then(|&o| u64::try_from(o).ok())
            .map(ObjectId)
    }
}

/// An opened trace folder.
#[derive(Debug, Clone)]
pub struct Trace {
    dir: PathBuf,
    header: TraceHeader,
}

impl Trace {
    /// Opens the trace folder `dir` (or the folder of `dir` if it names `trace.json`) and checks
    /// `trace.json`. The step files are read by [`Trace::read_step`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Trace> {
        let given = dir.as_ref();
        let dir = if given.file_name().is_some_and(|n| n == TRACE_FILE) && given.is_file() {
            given.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            given.to_path_buf()
        };
        let path = dir.join(TRACE_FILE);
        let (header, _) = ENVELOPE.read::<TraceHeader>(&path)?;
        let trace = Trace { dir, header };
        if let Some(problem) = trace.header_problem() {
            return Err(trace.invalid(problem));
        }
        Ok(trace)
    }

    fn invalid(&self, problem: String) -> Error {
        Error::InvalidTrace {
            path: self.json_path(),
            problem,
        }
    }

    fn header_problem(&self) -> Option<String> {
        let h = &self.header;
        if h.video_size.iter().any(|&side| side == 0 || side > 1 << 16) {
            return Some(format!(
                "video_size {:?} is not a frame size (each side 1 to 65536)",
                h.video_size
            ));
        }
        if h.num_frames == 0 {
            return Some("num_frames is 0".into());
        }
        for (index, step) in h.steps.iter().enumerate() {
            if step.step != index {
                return Some(format!("entry {index} of steps is numbered {}", step.step));
            }
            match &step.file {
                None if step.outputs > 0 => {
                    return Some(format!(
                        "step {index} ({}) has {} outputs but no file",
                        step.op, step.outputs
                    ));
                }
                Some(file) if file.is_empty() => {
                    return Some(format!("step {index} ({}) names an empty file", step.op));
                }
                _ => {}
            }
        }
        None
    }

    /// The trace folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `trace.json`.
    pub fn json_path(&self) -> PathBuf {
        self.dir.join(TRACE_FILE)
    }

    /// The parsed `trace.json`.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// The clip folder, resolved against the trace folder.
    pub fn clip_path(&self) -> Option<PathBuf> {
        self.header.clip.as_deref().map(|c| self.dir.join(c))
    }

    /// The script, resolved against the trace folder.
    pub fn script_path(&self) -> Option<PathBuf> {
        self.header.script.as_deref().map(|s| self.dir.join(s))
    }

    /// Reads and checks the outputs of step `index`; a step without a file has none.
    pub fn read_step(&self, index: usize) -> Result<StepOutputs> {
        let step = self
            .header
            .steps
            .get(index)
            .ok_or_else(|| self.invalid(format!("it has no step {index}")))?;
        let Some(file) = &step.file else {
            return Ok(StepOutputs {
                frame: Array1::zeros(0),
                object: Array1::zeros(0),
                low_res_logits: Array3::zeros((0, 0, 0)),
                object_score_logits: Array1::zeros(0),
                mask: Array3::from_elem(
                    (0, self.header.video_size[1], self.header.video_size[0]),
                    false,
                ),
            });
        };
        let path = self.dir.join(file);
        let invalid = |problem: String| Error::InvalidTrace {
            path: path.clone(),
            problem,
        };
        let reader = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut npz = NpzReader::new(std::io::BufReader::new(reader))
            .map_err(|e| invalid(format!("it is not a readable .npz file ({e})")))?;
        macro_rules! array {
            ($name:literal, $elem:ty, $dim:ty, $what:literal) => {
                npz.by_name::<ndarray::OwnedRepr<$elem>, $dim>($name)
                    .map_err(|e| {
                        invalid(format!(
                            "its array \"{}\" could not be read as {} ({e})",
                            $name, $what
                        ))
                    })?
            };
        }
        let outputs = StepOutputs {
            frame: array!("frame", i64, Ix1, "int64 [K]"),
            object: array!("object", i64, Ix1, "int64 [K]"),
            low_res_logits: array!("low_res_logits", f32, Ix3, "float32 [K, S/4, S/4]"),
            object_score_logits: array!("object_score_logits", f32, Ix1, "float32 [K]"),
            mask: array!("mask", bool, Ix3, "bool [K, H, W]"),
        };
        if let Some(problem) = self.outputs_problem(step, &outputs) {
            return Err(invalid(problem));
        }
        Ok(outputs)
    }

    fn outputs_problem(&self, step: &TraceStep, o: &StepOutputs) -> Option<String> {
        let k = o.frame.len();
        if k != step.outputs {
            return Some(format!(
                "it holds {k} outputs but trace.json says step {} has {}",
                step.step, step.outputs
            ));
        }
        let lengths = [
            ("object", o.object.len()),
            ("low_res_logits", o.low_res_logits.dim().0),
            ("object_score_logits", o.object_score_logits.len()),
            ("mask", o.mask.dim().0),
        ];
        if let Some((name, len)) = lengths.iter().find(|(_, len)| *len != k) {
            return Some(format!(
                "its array \"frame\" has {k} entries but \"{name}\" has {len}"
            ));
        }
        let [w, h] = self.header.video_size;
        if o.mask.shape().get(1..) != Some(&[h, w][..]) {
            return Some(format!(
                "its mask has shape {:?}, but video_size [{w}, {h}] needs [K, {h}, {w}]",
                o.mask.shape()
            ));
        }
        let (_, a, b) = o.low_res_logits.dim();
        if a != b {
            return Some(format!(
                "its low_res_logits are {a}×{b}, but they must be square (S/4 × S/4)"
            ));
        }
        for (i, &f) in o.frame.iter().enumerate() {
            if usize::try_from(f).map_or(true, |f| f >= self.header.num_frames) {
                return Some(format!(
                    "output {i} is on frame {f}, outside the clip's {} frames",
                    self.header.num_frames
                ));
            }
        }
        if let Some((i, id)) = o.object.iter().enumerate().find(|(_, id)| **id < 0) {
            return Some(format!("output {i} has the negative object id {id}"));
        }
        // The lengths were checked equal above.
        for (i, (logits, &score)) in o
            .low_res_logits
            .outer_iter()
            .zip(&o.object_score_logits)
            .enumerate()
        {
            if logits.iter().any(|v| !v.is_finite()) {
                return Some(format!("output {i} has low_res_logits that are not finite"));
            }
            if score.is_infinite() {
                return Some(format!("output {i} has an infinite object score"));
            }
            if score.is_nan() {
                // No stored output: the predictor fills in the no-object logits.
                if logits.iter().any(|&v| v != NO_OBJECT_LOGIT) {
                    return Some(format!(
                        "output {i} has no object score (NaN) but logits other than {NO_OBJECT_LOGIT}"
                    ));
                }
                let empty = o
                    .mask
                    .outer_iter()
                    .nth(i)
                    .is_some_and(|m| m.iter().all(|set| !set));
                if !empty {
                    return Some(format!(
                        "output {i} has no object score (NaN) but a non-empty mask"
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array3};
    use ndarray_npy::NpzWriter;

    use super::*;

    const W: usize = 6;
    const H: usize = 4;
    const L: usize = 8;

    fn good(k: usize) -> StepOutputs {
        StepOutputs {
            frame: Array1::from_iter((0..k).map(|i| i as i64)),
            object: Array1::from_elem(k, 1),
            low_res_logits: Array3::from_elem((k, L, L), 0.5),
            object_score_logits: Array1::from_elem(k, 2.0),
            mask: Array3::from_elem((k, H, W), true),
        }
    }

    /// Writes a trace folder with one step holding `outputs`, declared as `declared` outputs.
    fn write_trace(dir: &Path, outputs: &StepOutputs, declared: usize) {
        let header = serde_json::json!({
            "format": TRACE_FORMAT, "version": 1, "producer": "unit test",
            "model_manifest_sha256": "0".repeat(64), "video_size": [W, H], "num_frames": 3,
            "predictor": {"add_all_frames_to_correct_as_cond": false, "fill_hole_area": 8,
                "fill_hole_applied": false, "non_overlap_masks": false,
                "clear_non_cond_mem_around_input": false},
            "steps": [
                {"step": 0, "op": "propagate", "file": "step_000.npz", "outputs": declared},
                {"step": 1, "op": "reset", "file": null, "outputs": 0}
            ]
        });
        std::fs::write(dir.join(TRACE_FILE), header.to_string()).unwrap();
        let file = std::fs::File::create(dir.join("step_000.npz")).unwrap();
        let mut npz = NpzWriter::new_compressed(file);
        npz.add_array("frame", &outputs.frame).unwrap();
        npz.add_array("object", &outputs.object).unwrap();
        npz.add_array("low_res_logits", &outputs.low_res_logits)
            .unwrap();
        npz.add_array("object_score_logits", &outputs.object_score_logits)
            .unwrap();
        npz.add_array("mask", &outputs.mask).unwrap();
        npz.finish().unwrap();
    }

    fn problem(outputs: StepOutputs, declared: usize) -> String {
        let tmp = tempfile::tempdir().unwrap();
        write_trace(tmp.path(), &outputs, declared);
        let trace = Trace::open(tmp.path()).unwrap();
        match trace.read_step(0) {
            Err(err @ Error::InvalidTrace { .. }) => {
                let text = err.to_string();
                assert!(text.contains("step_000.npz"), "{text}");
                text
            }
            other => panic!("expected InvalidTrace, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_consistent_trace() -> Result<()> {
        let tmp = tempfile::tempdir().unwrap();
        let mut outputs = good(3);
        // An object without output on frame 2: NaN score, no-object logits, empty mask.
        outputs.object_score_logits[2] = f32::NAN;
        outputs
            .low_res_logits
            .index_axis_mut(ndarray::Axis(0), 2)
            .fill(NO_OBJECT_LOGIT);
        outputs.mask.index_axis_mut(ndarray::Axis(0), 2).fill(false);
        write_trace(tmp.path(), &outputs, 3);
        let trace = Trace::open(tmp.path().join(TRACE_FILE))?;
        assert_eq!(trace.header().steps.len(), 2);
        let read = trace.read_step(0)?;
        assert_eq!(read.len(), 3);
        assert_eq!(read.low_res_size(), L);
        assert_eq!(read.object_id(0), Some(ObjectId(1)));
        assert_eq!(read.frame, outputs.frame);
        assert_eq!(read.mask, outputs.mask);
        assert!(read.object_score_logits[2].is_nan());
        let reset = trace.read_step(1)?;
        assert!(reset.is_empty());
        assert!(trace.read_step(2).is_err());
        Ok(())
    }

    #[test]
    fn output_count_must_match_trace_json() {
        let text = problem(good(2), 3);
        assert!(
            text.contains("holds 2 outputs") && text.contains("has 3"),
            "{text}"
        );
    }

    #[test]
    fn arrays_must_agree_on_k() {
        let mut outputs = good(2);
        outputs.object = Array1::from_elem(3, 1);
        let text = problem(outputs, 2);
        assert!(text.contains("\"object\" has 3"), "{text}");
    }

    #[test]
    fn mask_must_have_the_video_size() {
        let mut outputs = good(1);
        outputs.mask = Array3::from_elem((1, W, H), true);
        let text = problem(outputs, 1);
        assert!(text.contains("video_size [6, 4] needs [K, 4, 6]"), "{text}");
    }

    #[test]
    fn missing_score_needs_no_object_logits_and_an_empty_mask() {
        let mut outputs = good(1);
        outputs.object_score_logits[0] = f32::NAN;
        let text = problem(outputs.clone(), 1);
        assert!(text.contains("logits other than -1024"), "{text}");
        outputs.low_res_logits.fill(NO_OBJECT_LOGIT);
        let text = problem(outputs, 1);
        assert!(text.contains("non-empty mask"), "{text}");
    }

    #[test]
    fn infinite_scores_and_frames_outside_the_clip_are_refused() {
        let mut outputs = good(1);
        outputs.object_score_logits[0] = f32::INFINITY;
        assert!(problem(outputs, 1).contains("infinite object score"));
        let mut outputs = good(1);
        outputs.frame[0] = 3;
        assert!(problem(outputs, 1).contains("outside the clip's 3 frames"));
    }

    #[test]
    fn wrong_dtype_names_the_array() {
        let tmp = tempfile::tempdir().unwrap();
        write_trace(tmp.path(), &good(1), 1);
        // Rewrite with int32 frames, as a careless writer might.
        let file = std::fs::File::create(tmp.path().join("step_000.npz")).unwrap();
        let mut npz = NpzWriter::new_compressed(file);
        npz.add_array("frame", &Array1::<i32>::zeros(1)).unwrap();
        npz.finish().unwrap();
        let err = Trace::open(tmp.path()).unwrap().read_step(0).map(|_| ());
        let Err(err) = err else {
            panic!("int32 frames must be refused")
        };
        assert!(
            err.to_string()
                .contains("\"frame\" could not be read as int64 [K]"),
            "{err}"
        );
    }

    #[test]
    fn steps_without_file_must_have_no_outputs() {
        let tmp = tempfile::tempdir().unwrap();
        let header = serde_json::json!({
            "format": TRACE_FORMAT, "version": 1, "producer": "unit test",
            "model_manifest_sha256": "0".repeat(64), "video_size": [W, H], "num_frames": 3,
            "predictor": {"add_all_frames_to_correct_as_cond": false, "fill_hole_area": 8,
                "fill_hole_applied": false, "non_overlap_masks": false,
                "clear_non_cond_mem_around_input": false},
            "steps": [{"step": 0, "op": "propagate", "file": null, "outputs": 2}]
        });
        std::fs::write(tmp.path().join(TRACE_FILE), header.to_string()).unwrap();
        let err = Trace::open(tmp.path()).map(|_| ());
        let Err(err @ Error::InvalidTrace { .. }) = err else {
            panic!("expected InvalidTrace, got {err:?}");
        };
        assert!(err.to_string().contains("2 outputs but no file"), "{err}");
    }
}
