//! What the engine's fixture-based integration tests share: where the fixtures are, and how a
//! trace written by the engine is compared with a committed reference trace.
//!
//! The tolerances are those of `tests/parity.rs` (issue "Engine"): low-res logits within 1e-3,
//! the object score's sign identical, masks identical wherever the upsampled logit is at least
//! 1e-3 from zero. A trace the engine writes is also checked against itself: its mask must be
//! exactly its own logits upsampled, > 0.

// Test code unwraps, panics and indexes on purpose (clippy.toml allows it inside #[test] functions;
// the helpers here are test code too).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code // each test file uses part of this
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::Axis;
use sam2_engine::resample::resize_bilinear;
use sam2_engine::trace::StepOutputs;
use sam2_engine::{ModelDir, Trace};

pub const LOGIT_TOLERANCE: f32 = 1e-3;
pub const MASK_MARGIN: f32 = 1e-3;

/// The fixture root: `SAM2_FIXTURES_DIR` if set (as for the tests in tests/), else
/// tests/fixtures of this checkout — found upwards from the crate, as this file serves the engine
/// (engine/) and the CLI (engine/cli/).
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("SAM2_FIXTURES_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            crate_dir
                .ancestors()
                .map(|dir| dir.join("tests/fixtures"))
                .find(|dir| dir.is_dir())
                .unwrap_or_else(|| crate_dir.join("../tests/fixtures"))
        }
    }
}

fn subfolders(kind: &str, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fixtures_dir().join(kind)) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| keep(p))
        .collect();
    found.sort();
    found
}

/// Every reference trace: `traces/*/trace.json`.
pub fn trace_dirs() -> Vec<PathBuf> {
    subfolders("traces", |p| p.join("trace.json").is_file())
}

/// The fixture model directory whose manifest has this SHA-256.
pub fn model_for(manifest_sha256: &str) -> PathBuf {
    subfolders("models", |p| p.join("manifest.json").is_file())
        .into_iter()
        .find(|dir| ModelDir::open(dir).unwrap().manifest_sha256() == manifest_sha256)
        .unwrap_or_else(|| panic!("no fixture model has manifest hash {manifest_sha256}"))
}

/// What a comparison looked at.
#[derive(Debug, Default)]
pub struct Compared {
    pub outputs: usize,
    pub worst_logit: f32,
    pub masks_checked: usize,
}

/// One step's output `k` as the engine held it: logits, and those upsampled to the video size.
pub fn logits(step: &StepOutputs, k: usize) -> Vec<f32> {
    step.low_res_logits
        .index_axis(Axis(0), k)
        .iter()
        .copied()
        .collect()
}

pub fn upsampled(step: &StepOutputs, k: usize, video: [usize; 2]) -> Vec<f32> {
    let side = step.low_res_size();
    resize_bilinear(&logits(step, k), side, side, video[0], video[1])
}

/// [`upsampled`] from the logits at the matte precision, as every matte is made
/// (`sam2_engine::matte::precision`).
pub fn matte_upsampled(step: &StepOutputs, k: usize, video: [usize; 2]) -> Vec<f32> {
    let side = step.low_res_size();
    let rounded = sam2_engine::matte::precision::round_logits(&logits(step, k));
    resize_bilinear(&rounded, side, side, video[0], video[1])
}

/// Compares `ours` (written by the engine) with `reference` step by step and output by output,
/// in order. Panics, naming the trace, step, frame and object, at the first difference.
pub fn compare_traces(ours: &Trace, reference: &Trace) -> Compared {
    let name = reference.dir().display().to_string();
    let (o, r) = (ours.header(), reference.header());
    assert_eq!(o.model_manifest_sha256, r.model_manifest_sha256, "{name}");
    assert_eq!(o.video_size, r.video_size, "{name}");
    assert_eq!(o.num_frames, r.num_frames, "{name}");
    assert_eq!(o.image_size, r.image_size, "{name}");
    assert_eq!(o.steps.len(), r.steps.len(), "{name}: number of steps");
    let video = r.video_size;
    let mut compared = Compared::default();
    for (a, b) in o.steps.iter().zip(&r.steps) {
        let here = format!("{name}: step {} ({})", b.step, b.op);
        assert_eq!(
            (a.step, a.op, a.outputs),
            (b.step, b.op, b.outputs),
            "{here}"
        );
        assert_eq!(a.file.is_none(), b.file.is_none(), "{here}: file");
        let (got, want) = (
            ours.read_step(a.step).unwrap(),
            reference.read_step(b.step).unwrap(),
        );
        assert_eq!(got.frame, want.frame, "{here}: frames in order");
        assert_eq!(got.object, want.object, "{here}: objects in order");
        for k in 0..got.len() {
            let at = format!("{here}, frame {}, object {}", got.frame[k], got.object[k]);
            let (mine, theirs) = (logits(&got, k), logits(&want, k));
            assert_eq!(
                mine.len(),
                theirs.len(),
                "{at}: low-res logits differ in size"
            );
            let diff = mine
                .iter()
                .zip(theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(diff <= LOGIT_TOLERANCE, "{at}: logits differ by {diff}");
            compared.worst_logit = compared.worst_logit.max(diff);
            let (sa, sb) = (got.object_score_logits[k], want.object_score_logits[k]);
            assert_eq!(sa.is_nan(), sb.is_nan(), "{at}: object score {sa} vs {sb}");
            if !sa.is_nan() {
                assert_eq!(sa > 0.0, sb > 0.0, "{at}: object score {sa} vs {sb}");
            }
            let up = upsampled(&got, k, video);
            let (mine, theirs) = (
                got.mask.index_axis(Axis(0), k),
                want.mask.index_axis(Axis(0), k),
            );
            assert_eq!(
                (up.len(), mine.len()),
                (theirs.len(), theirs.len()),
                "{at}: the masks are not the video's size"
            );
            for ((value, &m), &t) in up.iter().zip(mine.iter()).zip(theirs.iter()) {
                assert_eq!(
                    m,
                    *value > 0.0,
                    "{at}: the mask is not the trace's own logits > 0"
                );
                if value.abs() >= MASK_MARGIN {
                    assert_eq!(m, t, "{at}: mask differs from the reference");
                    compared.masks_checked += 1;
                }
            }
            compared.outputs += 1;
        }
    }
    compared
}

/// The reference trace's predictor settings, for a run that must reproduce it.
pub struct ReferenceSettings {
    /// `add_all_frames_to_correct_as_cond`, when the trace records it.
    pub keep_corrections: Option<bool>,
    /// Whether the reference filled holes (never on a CPU).
    pub fill_hole_applied: bool,
}

pub fn reference_settings(trace: &Trace) -> ReferenceSettings {
    let p = &trace.header().predictor;
    ReferenceSettings {
        keep_corrections: Some(p.add_all_frames_to_correct_as_cond),
        fill_hole_applied: p.fill_hole_applied,
    }
}

/// The latest output of each (frame, object) over a trace, as a session holds it at the end:
/// `reset` forgets everything, `remove_object` its object. Values are (step, k).
pub fn final_outputs(
    trace: &Trace,
    script: &sam2_engine::Script,
) -> HashMap<(usize, u64), (usize, usize)> {
    use sam2_engine::script::Interaction;
    let mut latest = HashMap::new();
    assert_eq!(
        trace.header().steps.len(),
        script.interactions.len(),
        "{}: one step per interaction of the script",
        trace.dir().display()
    );
    for (step, interaction) in trace.header().steps.iter().zip(&script.interactions) {
        match interaction {
            Interaction::Reset => latest.clear(),
            Interaction::RemoveObject { object } => latest.retain(|&(_, o), _| o != object.0),
            _ => {}
        }
        let outputs = trace.read_step(step.step).unwrap();
        for k in 0..outputs.len() {
            latest.insert(
                (outputs.frame[k] as usize, outputs.object[k] as u64),
                (step.step, k),
            );
        }
    }
    latest
}
