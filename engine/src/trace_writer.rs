//! Writing reference traces (docs/formats.md, "Reference trace") from a session's outputs: what
//! the CLI's `track --trace` produces, so that anyone can compare the engine with a trace made by
//! the official predictor (`bundle/exporter/py reference`) through the same reader and tolerances.
//!
//! A trace is all or nothing: it is written into a [`StagedDir`] and renamed into place by
//! [`TraceWriter::finish`]; a writer dropped before that removes it. Each step's arrays are
//! streamed into its `.npz` file output by output ([`NpzWriter`]), so memory stays at one
//! frame's mask however long the step.

use std::ffi::OsStr;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::masklet::FrameResult;
use crate::model::{Model, Runtime};
use crate::npz::{Dtype, NpzError, NpzWriter};
use crate::predictor::ClipSession;
use crate::replay::StepResult;
use crate::resample::BilinearResize;
use crate::script::ObjectId;
use crate::staged_dir::{
    Existing, StagedDir, WriteError, absolute, first_foreign, io_error, parent_and_name,
};
use crate::trace::{
    NO_OBJECT_LOGIT, TRACE_FILE, TRACE_FORMAT, TRACE_VERSION, TraceHeader, TracePredictor,
    TraceStep,
};

/// A failure to write a trace. Messages are sentences.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceWriteError {
    /// The trace folder: it exists, cannot be created, or a file in it cannot be written.
    #[error(transparent)]
    Folder(#[from] WriteError),

    #[error(transparent)]
    Npz(#[from] NpzError),

    #[error("Could not write the trace file {path}: {message}.")]
    Header { path: PathBuf, message: String },

    #[error(
        "The trace writer was given step {found} when step {expected} was due; steps are written in order, each once."
    )]
    StepOrder { expected: usize, found: usize },

    #[error(
        "Step {step} has {found} logits for object {object} on frame {frame}, but this trace's are {side}×{side}."
    )]
    LogitsSize {
        step: usize,
        frame: usize,
        object: ObjectId,
        found: usize,
        side: usize,
    },
}

/// Whether a file name belongs in a trace folder (`trace.json`, `step_NNN.npz`).
pub fn is_trace_entry(name: &OsStr) -> bool {
    name.to_str().is_some_and(|name| {
        name == TRACE_FILE
            || name
                .strip_prefix("step_")
                .and_then(|rest| rest.strip_suffix(".npz"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The first entry of a trace folder that is not a trace's file.
fn not_a_trace_file(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    first_foreign(dir, |name, kind| kind.is_file() && is_trace_entry(name))
}

/// How to treat an existing trace folder: refused, or replaced when it holds only a trace's
/// files.
pub fn trace_existing(replace: bool) -> Existing {
    if replace {
        Existing::Replace {
            foreign: not_a_trace_file,
            what: "a reference trace",
        }
    } else {
        Existing::Refuse
    }
}

/// Everything in `trace.json` except the steps.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceInfo {
    /// Who wrote the trace; [`producer`] for the engine.
    pub producer: String,
    pub model_manifest_sha256: String,
    /// The clip folder, as a path usable from the current directory; the writer stores it
    /// relative to the trace folder, as docs/formats.md asks.
    pub clip: Option<PathBuf>,
    /// The script, likewise.
    pub script: Option<PathBuf>,
    /// (width, height).
    pub video_size: (u32, u32),
    pub num_frames: usize,
    /// S.
    pub image_size: u32,
    /// The predictor settings in effect, under the names the reference tool uses.
    pub predictor: TracePredictor,
}

impl TraceInfo {
    /// The trace of `session`, whose model was loaded with `runtime`: its model, clip size and
    /// settings; no clip or script.
    pub fn for_session(session: &ClipSession, runtime: &Runtime) -> TraceInfo {
        let model = session.model();
        let settings = session.settings();
        let predictor = TracePredictor {
            add_all_frames_to_correct_as_cond: settings.add_all_frames_to_correct_as_cond,
            fill_hole_area: settings.fill_hole_area,
            // The engine fills holes on every device (the official code only with its CUDA
            // extension), so whether they were filled follows from the area alone.
            fill_hole_applied: settings.fill_hole_area > 0,
            // What the engine implements; a script asking otherwise is refused before it runs.
            non_overlap_masks: false,
            clear_non_cond_mem_around_input: false,
        };
        TraceInfo {
            producer: producer(model, runtime),
            model_manifest_sha256: model.dir().manifest_sha256().to_string(),
            clip: None,
            script: None,
            video_size: session.video_size(),
            num_frames: session.num_frames(),
            image_size: model.manifest().image_size,
            predictor,
        }
    }
}

/// `"sam2-rotoscope engine <version> (ort <ONNX Runtime version> <provider>)"`: what a reader of
/// a trace needs to reproduce it. The provider is the one the graphs prefer (`CPU`, `CUDA`, …;
/// several joined by `+` when the graphs differ).
pub fn producer(model: &Model, runtime: &Runtime) -> String {
    let mut providers: Vec<String> = Vec::new();
    for graph in [
        &model.image_encoder,
        &model.mask_decoder,
        &model.memory_encoder,
        &model.memory_attention,
    ] {
        let name = graph.lock().provider().to_string();
        if !providers.contains(&name) {
            providers.push(name);
        }
    }
    format!(
        "sam2-rotoscope engine {} (ort {} {})",
        env!("CARGO_PKG_VERSION"),
        onnx_runtime_version(runtime).unwrap_or_else(|| "of unknown version".to_string()),
        providers.join("+")
    )
}

/// The loaded ONNX Runtime's version. `ort` does not expose the library's version call, so it
/// is read from the library's file name (`libonnxruntime.so.1.32.0`, `libonnxruntime.1.32.0.dylib`;
/// [`Runtime::library_path`] has symbolic links resolved), else from the build information where
/// a release build names its branch (`git-branch=rel-1.32.0`).
pub fn onnx_runtime_version(runtime: &Runtime) -> Option<String> {
    runtime
        .library_path()
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(version_from_file_name)
        .or_else(|| version_from_build_info(ort::info()))
}

/// `1.32.0` from `libonnxruntime.so.1.32.0` or `libonnxruntime.1.32.0.dylib`.
fn version_from_file_name(name: &str) -> Option<String> {
    let (_, rest) = name.split_once("onnxruntime")?;
    let parts: Vec<&str> = rest
        .split('.')
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

/// `1.32.0` from `"ORT Build Info: git-branch=rel-1.32.0, git-commit-id=…"`.
fn version_from_build_info(info: &str) -> Option<String> {
    info.split([',', ' '])
        .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// `to` relative to the folder `from` (both absolute), or `to` itself where there is no relative
/// path (another drive on Windows).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    if from.first() != to_parts.first() {
        return to.to_path_buf();
    }
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in to_parts.iter().skip(common) {
        path.push(part);
    }
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

/// `path` with symbolic links and `..` resolved where it exists, else made absolute.
fn resolved(path: &Path) -> Result<PathBuf, WriteError> {
    match path.canonicalize() {
        Ok(path) => Ok(path),
        Err(_) => absolute(path),
    }
}

/// Writes a trace folder step by step; see the module documentation.
#[derive(Debug)]
pub struct TraceWriter {
    staged: StagedDir,
    header: TraceHeader,
    /// S/4.
    side: usize,
    resize: BilinearResize,
    upsampled: Vec<f32>,
    mask: Vec<u8>,
}

/// One output of a step, flattened.
struct Output<'a> {
    frame: usize,
    object: ObjectId,
    result: Option<&'a FrameResult>,
}

impl TraceWriter {
    /// Starts a trace that will appear at `target` when finished.
    pub fn create(
        target: impl AsRef<Path>,
        info: TraceInfo,
        existing: Existing,
    ) -> Result<TraceWriter, TraceWriteError> {
        let staged = StagedDir::create(target, existing)?;
        // The target's parent exists (checked above), so it can be resolved like the clip and
        // the script, and the relative paths survive symbolic links on either side.
        let (parent, name) = parent_and_name(staged.target())?;
        let trace_dir = resolved(parent)?.join(name);
        let relative_to_trace = |path: &Option<PathBuf>| -> Result<Option<PathBuf>, WriteError> {
            path.as_deref()
                .map(|p| Ok(relative(&trace_dir, &resolved(p)?)))
                .transpose()
        };
        let (w, h) = info.video_size;
        let side = (info.image_size / 4) as usize;
        let header = TraceHeader {
            format: TRACE_FORMAT.to_string(),
            version: TRACE_VERSION,
            producer: info.producer,
            model_manifest_sha256: info.model_manifest_sha256,
            clip: relative_to_trace(&info.clip)?,
            script: relative_to_trace(&info.script)?,
            video_size: [w as usize, h as usize],
            num_frames: info.num_frames,
            image_size: Some(info.image_size),
            predictor: info.predictor,
            steps: Vec::new(),
        };
        let pixels = w as usize * h as usize;
        Ok(TraceWriter {
            staged,
            header,
            side,
            resize: BilinearResize::new(side, side, w as usize, h as usize),
            upsampled: vec![0.0; pixels],
            mask: vec![0; pixels],
        })
    }

    /// The staging folder, where files are being written until [`TraceWriter::finish`].
    pub fn staging_path(&self) -> &Path {
        self.staged.path()
    }

    /// Where the trace will be (absolute).
    pub fn target(&self) -> &Path {
        self.staged.target()
    }

    /// `trace.json` as it would be written now.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Writes one step: its `.npz` file when it has outputs, its entry in `trace.json` always.
    /// Steps must come in order, from 0.
    pub fn write_step(&mut self, step: &StepResult) -> Result<(), TraceWriteError> {
        let expected = self.header.steps.len();
        if step.step != expected {
            return Err(TraceWriteError::StepOrder {
                expected,
                found: step.step,
            });
        }
        let outputs: Vec<Output> = step
            .frames
            .iter()
            .flat_map(|frame| {
                frame.objects.iter().map(|o| Output {
                    frame: frame.frame,
                    object: o.object,
                    result: o.result.as_ref(),
                })
            })
            .collect();
        let side = self.side;
        for o in &outputs {
            if let Some(r) = o.result
                && r.low_res_logits.len() != side * side
            {
                return Err(TraceWriteError::LogitsSize {
                    step: step.step,
                    frame: o.frame,
                    object: o.object,
                    found: r.low_res_logits.len(),
                    side,
                });
            }
        }
        let file = if outputs.is_empty() {
            None
        } else {
            let file = format!("step_{:03}.npz", step.step);
            let path = self.staged.path().join(&file);
            self.write_npz(&path, &outputs)?;
            Some(file)
        };
        self.header.steps.push(TraceStep {
            step: step.step,
            op: step.op,
            file,
            outputs: outputs.len(),
        });
        Ok(())
    }

    fn write_npz(&mut self, path: &Path, outputs: &[Output]) -> Result<(), NpzError> {
        let k = outputs.len();
        let (side, (w, h)) = (self.side, self.resize.output_size());
        let mut npz = NpzWriter::create(path)?;
        npz.array("frame", Dtype::I64, &[k], |out| {
            outputs
                .iter()
                .try_for_each(|o| out.write_all(&(o.frame as i64).to_le_bytes()))
        })?;
        npz.array("object", Dtype::I64, &[k], |out| {
            outputs
                .iter()
                .try_for_each(|o| out.write_all(&(o.object.0 as i64).to_le_bytes()))
        })?;
        let absent = vec![NO_OBJECT_LOGIT; side * side];
        npz.array("low_res_logits", Dtype::F32, &[k, side, side], |out| {
            let mut bytes = Vec::with_capacity(side * side * 4);
            for o in outputs {
                let logits = o.result.map_or(&absent[..], |r| &r.low_res_logits[..]);
                bytes.clear();
                bytes.extend(logits.iter().flat_map(|v| v.to_le_bytes()));
                out.write_all(&bytes)?;
            }
            Ok(())
        })?;
        npz.array("object_score_logits", Dtype::F32, &[k], |out| {
            outputs.iter().try_for_each(|o| {
                let score = o.result.map_or(f32::NAN, |r| r.object_score);
                out.write_all(&score.to_le_bytes())
            })
        })?;
        let (resize, upsampled, mask) = (&self.resize, &mut self.upsampled, &mut self.mask);
        npz.array("mask", Dtype::Bool, &[k, h, w], |out| {
            for o in outputs {
                match o.result {
                    // The mask the official predictor returns: logits upsampled as
                    // `F.interpolate` does, > 0.
                    Some(r) => {
                        resize.apply_into(&r.low_res_logits, upsampled);
                        for (m, &v) in mask.iter_mut().zip(upsampled.iter()) {
                            *m = u8::from(v > 0.0);
                        }
                    }
                    None => mask.fill(0),
                }
                out.write_all(mask)?;
            }
            Ok(())
        })?;
        npz.finish()
    }

    /// Writes `trace.json` and moves the folder into place; returns its path.
    pub fn finish(self) -> Result<PathBuf, TraceWriteError> {
        Ok(self.seal()?.commit()?)
    }

    /// Writes `trace.json` and returns the complete folder, still staged: for a caller that
    /// commits several outputs together and wants nothing but renames left at that point.
    pub fn seal(self) -> Result<StagedDir, TraceWriteError> {
        let path = self.staged.path().join(TRACE_FILE);
        let mut json =
            serde_json::to_vec_pretty(&self.header).map_err(|e| TraceWriteError::Header {
                path: path.clone(),
                message: e.to_string(),
            })?;
        json.push(b'\n');
        fs::write(&path, json).map_err(io_error("write", &path))?;
        Ok(self.staged)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::masklet::MemorySource;
    use crate::predictor::{FrameMasks, ObjectOutput};
    use crate::script::Op;
    use crate::trace::Trace;

    const SIDE: usize = 8;

    /// (object id, result) on one frame.
    type ObjectOutputs = Vec<(u64, Option<FrameResult>)>;

    fn result(value: f32, score: f32) -> FrameResult {
        FrameResult {
            low_res_logits: (0..SIDE * SIDE)
                .map(|i| if i % 3 == 0 { value } else { -value })
                .collect::<Vec<_>>()
                .into(),
            object_pointer: Arc::from(vec![0.0f32; 4]),
            object_score: score,
            memory: None,
            memory_source: MemorySource::default(),
            candidates: None,
        }
    }

    fn info(dir: &Path) -> TraceInfo {
        TraceInfo {
            producer: "unit test".into(),
            model_manifest_sha256: "0".repeat(64),
            clip: Some(dir.join("clip")),
            script: Some(dir.join("scripts").join("s.json")),
            video_size: (12, 6),
            num_frames: 3,
            image_size: (SIDE * 4) as u32,
            predictor: TracePredictor {
                add_all_frames_to_correct_as_cond: false,
                fill_hole_area: 0,
                fill_hole_applied: false,
                non_overlap_masks: false,
                clear_non_cond_mem_around_input: false,
            },
        }
    }

    fn step(step: usize, op: Op, frames: Vec<(usize, ObjectOutputs)>) -> StepResult {
        StepResult {
            step,
            op,
            frames: frames
                .into_iter()
                .map(|(frame, objects)| FrameMasks {
                    frame,
                    objects: objects
                        .into_iter()
                        .map(|(id, result)| ObjectOutput {
                            object: ObjectId(id),
                            result,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_written_trace_reads_back_with_the_trace_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("out").join("trace");
        fs::create_dir(tmp.path().join("out")).unwrap();
        let mut writer = TraceWriter::create(&target, info(tmp.path()), Existing::Refuse).unwrap();
        assert!(!target.exists(), "nothing appears before finish");
        writer
            .write_step(&step(
                0,
                Op::AddPoints,
                vec![(1, vec![(7, Some(result(5.0, 2.5)))])],
            ))
            .unwrap();
        writer
            .write_step(&step(
                1,
                Op::Propagate,
                vec![
                    (1, vec![(7, Some(result(5.0, 2.5))), (9, None)]),
                    (2, vec![(7, Some(result(-3.0, -1.0))), (9, None)]),
                ],
            ))
            .unwrap();
        writer.write_step(&step(2, Op::Reset, vec![])).unwrap();
        let staging = writer.staging_path().to_path_buf();
        assert_eq!(writer.finish().unwrap(), target);
        assert!(!staging.exists());

        let trace = Trace::open(&target).unwrap();
        let h = trace.header();
        assert_eq!(h.producer, "unit test");
        assert_eq!(h.video_size, [12, 6]);
        assert_eq!(h.image_size, Some(32));
        assert_eq!(h.clip.as_deref(), Some(Path::new("../../clip")));
        assert_eq!(h.script.as_deref(), Some(Path::new("../../scripts/s.json")));
        let ops: Vec<(Op, Option<&str>, usize)> = h
            .steps
            .iter()
            .map(|s| (s.op, s.file.as_deref(), s.outputs))
            .collect();
        assert_eq!(
            ops,
            [
                (Op::AddPoints, Some("step_000.npz"), 1),
                (Op::Propagate, Some("step_001.npz"), 4),
                (Op::Reset, None, 0)
            ]
        );
        let s = trace.read_step(1).unwrap();
        assert_eq!(s.frame.to_vec(), [1, 1, 2, 2]);
        assert_eq!(s.object.to_vec(), [7, 9, 7, 9]);
        assert_eq!(s.object_score_logits[0], 2.5);
        assert!(s.object_score_logits[1].is_nan());
        assert_eq!(s.low_res_size(), SIDE);
        let first: Vec<f32> = s
            .low_res_logits
            .index_axis(ndarray::Axis(0), 0)
            .iter()
            .copied()
            .collect();
        assert_eq!(first, *result(5.0, 2.5).low_res_logits);
        assert!(
            s.low_res_logits
                .index_axis(ndarray::Axis(0), 1)
                .iter()
                .all(|&v| v == NO_OBJECT_LOGIT)
        );
        let want =
            crate::resample::resize_bilinear(&result(-3.0, -1.0).low_res_logits, SIDE, SIDE, 12, 6);
        let got: Vec<bool> = s
            .mask
            .index_axis(ndarray::Axis(0), 2)
            .iter()
            .copied()
            .collect();
        assert_eq!(got, want.iter().map(|&v| v > 0.0).collect::<Vec<_>>());
        assert!(got.iter().any(|&m| m) && got.iter().any(|&m| !m));
        assert!(s.mask.index_axis(ndarray::Axis(0), 3).iter().all(|&m| !m));
    }

    #[test]
    fn steps_must_come_in_order_and_logits_must_fit() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer =
            TraceWriter::create(tmp.path().join("t"), info(tmp.path()), Existing::Refuse).unwrap();
        let err = writer.write_step(&step(1, Op::Reset, vec![])).unwrap_err();
        assert!(
            matches!(
                err,
                TraceWriteError::StepOrder {
                    expected: 0,
                    found: 1
                }
            ),
            "{err}"
        );
        let mut bad = result(1.0, 1.0);
        bad.low_res_logits = Arc::from(vec![0.0f32; 5]);
        let err = writer
            .write_step(&step(0, Op::AddPoints, vec![(0, vec![(1, Some(bad))])]))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("has 5 logits for object 1 on frame 0"),
            "{err}"
        );
    }

    #[test]
    fn a_dropped_writer_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("t");
        let mut writer = TraceWriter::create(&target, info(tmp.path()), Existing::Refuse).unwrap();
        writer
            .write_step(&step(
                0,
                Op::AddPoints,
                vec![(0, vec![(1, Some(result(1.0, 1.0)))])],
            ))
            .unwrap();
        assert!(writer.staging_path().join("step_000.npz").is_file());
        drop(writer);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn only_a_trace_s_own_files_are_replaced() {
        for name in ["trace.json", "step_000.npz", "step_1234.npz"] {
            assert!(is_trace_entry(OsStr::new(name)), "{name}");
        }
        for name in ["step_.npz", "step_00x.npz", "notes.txt", "step_000.npy"] {
            assert!(!is_trace_entry(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn the_library_s_name_or_build_info_gives_the_version() {
        assert_eq!(
            version_from_build_info(
                "ORT Build Info: git-branch=rel-1.32.0, git-commit-id=abc, build type=Release"
            )
            .as_deref(),
            Some("1.32.0")
        );
        assert_eq!(version_from_build_info("nothing useful"), None);
        assert_eq!(
            version_from_file_name("libonnxruntime.so.1.32.0").as_deref(),
            Some("1.32.0")
        );
        assert_eq!(
            version_from_file_name("libonnxruntime.1.22.1.dylib").as_deref(),
            Some("1.22.1")
        );
        assert_eq!(version_from_file_name("onnxruntime.dll"), None);
    }

    #[test]
    fn relative_paths_climb_to_the_common_folder() {
        assert_eq!(
            relative(Path::new("/a/b/trace"), Path::new("/a/clips/c")),
            Path::new("../../clips/c")
        );
        assert_eq!(relative(Path::new("/a"), Path::new("/a")), Path::new("."));
        assert_eq!(relative(Path::new("/a"), Path::new("/a/x")), Path::new("x"));
    }
}
