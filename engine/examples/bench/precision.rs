//! Precision fast against the official predictor's best CPU mode (issue 12): on the 1024² model,
//! the same frames and threads, the engine at precision exact and fast, and the official predictor
//! in float32 and under bfloat16 autocast (`bundle/exporter/py bench_precision`).
//!
//! The procedure is `tracking`'s (one click at the centre of frame 0, propagation, frames 2..n−1
//! timed) and the deviation is measured on every frame's low-resolution logits of the clicked
//! object, as `bench_precision.py` measures the official pair: the largest |logit difference| and
//! the fraction of mask pixels (logit > 0) that flip. Fast passes when its deviation from exact is
//! no larger than bfloat16 autocast's from float32 on both measures, and when its frames/s are at
//! least [`FAST_RATIO_TARGET`] × the official bfloat16 autocast's.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sam2_engine::model::{GraphTimes, Precision};
use sam2_engine::script::{Label, ObjectId};
use sam2_engine::{
    ClipSession, Direction, FolderSource, FrameSource, Model, ModelDir, Propagation, Runtime,
    SessionSettings,
};

use crate::BoxResult;
use crate::machine::CpuSample;
use crate::table::{Row, Section};
use crate::tracking::Prefix;

/// Engine fast fps / official bfloat16-autocast fps required.
pub const FAST_RATIO_TARGET: f64 = 1.3;

/// One propagation at one precision.
#[derive(Debug, Clone)]
pub struct PrecisionRun {
    pub timed_frames: usize,
    pub wall: Duration,
    pub graphs: GraphTimes,
    /// Every frame's low-res logits of the clicked object, frame by frame.
    pub logits: Vec<f32>,
    /// CPU ticks other processes used while frames were timed, and ticks elapsed.
    pub others: (u64, u64),
    /// What the fast set changes (`image_encoder int8_dynamic, …`); empty for exact.
    pub summary: String,
}

impl PrecisionRun {
    pub fn seconds_per_frame(&self) -> f64 {
        self.wall.as_secs_f64() / self.timed_frames.max(1) as f64
    }

    fn per_frame_ms(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e3 / self.timed_frames.max(1) as f64
    }
}

/// Largest |logit difference| and the fraction of mask pixels that flip between two runs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct Deviation {
    pub max_abs_logit: f64,
    pub flipped_fraction: f64,
}

impl Deviation {
    pub fn between(reference: &[f32], other: &[f32]) -> BoxResult<Deviation> {
        if reference.len() != other.len() || reference.is_empty() {
            return Err(format!(
                "The two runs' logits differ in size ({} and {} values).",
                reference.len(),
                other.len()
            )
            .into());
        }
        let mut max = 0.0f64;
        let mut flipped = 0usize;
        for (a, b) in reference.iter().zip(other) {
            max = max.max(f64::from((a - b).abs()));
            flipped += usize::from((*a > 0.0) != (*b > 0.0));
        }
        Ok(Deviation {
            max_abs_logit: max,
            flipped_fraction: flipped as f64 / reference.len() as f64,
        })
    }

    /// No larger than `bound` on both measures.
    pub fn within(&self, bound: &Deviation) -> bool {
        self.max_abs_logit <= bound.max_abs_logit && self.flipped_fraction <= bound.flipped_fraction
    }

    fn describe(&self) -> String {
        format!(
            "max |Δlogit| {:.3}, {:.3} % of mask pixels flip",
            self.max_abs_logit,
            self.flipped_fraction * 100.0
        )
    }
}

/// What `bundle/exporter/py bench_precision` wrote.
#[derive(Debug, serde::Deserialize)]
struct Official {
    clip: PathBuf,
    torch: String,
    threads: usize,
    frames: usize,
    timed_frames: usize,
    runs: OfficialRuns,
    deviation: Deviation,
}

#[derive(Debug, serde::Deserialize)]
struct OfficialRuns {
    float32: OfficialRun,
    bfloat16_autocast: OfficialRun,
}

#[derive(Debug, serde::Deserialize)]
struct OfficialRun {
    timed_s: f64,
    others_ticks: u64,
    ticks: u64,
}

impl OfficialRun {
    fn seconds_per_frame(&self, frames: usize) -> f64 {
        self.timed_s / frames.max(1) as f64
    }
}

/// One propagation of the first `frames` frames of `clip` with `model`.
pub fn track(model: &Arc<Model>, clip: &Path, frames: usize) -> BoxResult<PrecisionRun> {
    let inner = FolderSource::open(clip)?;
    let frames = frames.min(inner.num_frames());
    if frames < 3 {
        return Err(format!(
            "The clip {} has {frames} frames; the benchmark needs at least 3.",
            clip.display()
        )
        .into());
    }
    let mut session = ClipSession::new(
        Arc::clone(model),
        Box::new(Prefix { inner, frames }),
        SessionSettings::for_model(model),
    )?;
    let (w, h) = session.video_size();
    let object = ObjectId(1);
    let centre = [f64::from(w) / 2.0, f64::from(h) / 2.0];
    session.add_points(0, object, &[centre], &[Label::Positive], true)?;
    let mut stamps: Vec<(Instant, GraphTimes)> = Vec::with_capacity(frames);
    let mut cpu = (None, None);
    session.propagate(
        Propagation {
            start_frame: Some(0),
            direction: Direction::Forward,
            max_frames: None,
        },
        |masks| {
            stamps.push((Instant::now(), model.graph_times()));
            if masks.frame == 1 {
                cpu.0 = CpuSample::now();
            } else if masks.frame + 1 == frames {
                cpu.1 = CpuSample::now();
            }
            ControlFlow::Continue(())
        },
    )?;
    let (Some(first), Some(last)) = (stamps.get(1), stamps.last()) else {
        return Err("The propagation delivered fewer than two frames.".into());
    };
    if stamps.len() != frames {
        return Err(format!(
            "The propagation delivered {} frames, not {frames}.",
            stamps.len()
        )
        .into());
    }
    let mut logits = Vec::new();
    for frame in 0..frames {
        let frame_logits = session
            .logits(frame, object)?
            .ok_or_else(|| format!("No logits for frame {frame}."))?;
        logits.extend_from_slice(&frame_logits);
    }
    Ok(PrecisionRun {
        timed_frames: frames - 2,
        wall: last.0 - first.0,
        graphs: last.1.since(&first.1),
        logits,
        others: match cpu {
            (Some(start), Some(end)) => end.others_since(&start),
            _ => (0, 0),
        },
        summary: model
            .graph_set()
            .fast()
            .map(|f| f.summary())
            .unwrap_or_default(),
    })
}

/// The engine's exact and fast runs; the fast one is `Err` with the reason when it cannot run
/// (no fast set).
pub struct EngineRuns {
    pub exact: PrecisionRun,
    pub fast: Result<PrecisionRun, String>,
}

/// Loads `dir` at both precisions and tracks the same frames with each.
pub fn run(
    dir: &Path,
    runtime: &Runtime,
    clip: &Path,
    frames: usize,
    log: &mut dyn FnMut(String),
) -> BoxResult<EngineRuns> {
    let mut one = |precision: Precision| -> BoxResult<PrecisionRun> {
        let model = Model::load_at(ModelDir::open(dir)?, runtime, precision)?;
        let run = track(&model, clip, frames)?;
        log(format!(
            "  precision {precision}: {:.3} s/frame over frames 2..{} (other processes used {:.0} % of the CPU)",
            run.seconds_per_frame(),
            frames - 1,
            run.others.0 as f64 / run.others.1.max(1) as f64 * 100.0
        ));
        Ok(run)
    };
    let exact = one(Precision::Exact)?;
    let fast = one(Precision::Fast).map_err(|e| e.to_string());
    Ok(EngineRuns { exact, fast })
}

fn official(
    file: Option<&Path>,
    skipped: Option<&str>,
    clip: &Path,
    runs: &EngineRuns,
    threads: usize,
) -> Result<Official, String> {
    let Some(path) = file else {
        return Err(skipped
            .unwrap_or("no official result given (--official-precision)")
            .to_string());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{} cannot be read ({e})", path.display()))?;
    let official: Official = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a bench_precision result ({e})", path.display()))?;
    let same_clip = std::fs::canonicalize(clip).is_ok_and(|c| c == official.clip);
    if !same_clip || official.timed_frames != runs.exact.timed_frames {
        return Err(format!(
            "{} timed {} frames of {}, not the engine's {} of {}",
            path.display(),
            official.timed_frames,
            official.clip.display(),
            runs.exact.timed_frames,
            clip.display()
        ));
    }
    if official.threads != threads {
        return Err(format!(
            "{} ran with {} threads, the engine with {threads}",
            path.display(),
            official.threads
        ));
    }
    Ok(official)
}

/// The section's rows; `contention` gets each timed part's share of other processes.
pub fn section(
    title: String,
    runs: &EngineRuns,
    official_file: Option<&Path>,
    official_skipped: Option<&str>,
    clip: &Path,
    threads: usize,
    contention: &mut Vec<(String, f64)>,
) -> Section {
    let mut rows = Vec::new();
    let share = |(others, ticks): (u64, u64)| others as f64 / ticks.max(1) as f64;
    let exact = &runs.exact;
    contention.push(("exact engine".into(), share(exact.others)));
    let graphs_row = |label: &str, run: &PrecisionRun| {
        let g = &run.graphs;
        Row::info(
            label.to_string(),
            format!(
                "image encoder {:.0}, memory attention {:.0}, mask decoder {:.0}, memory encoder {:.0} ms/frame",
                run.per_frame_ms(g.image_encoder.total),
                run.per_frame_ms(g.memory_attention.total),
                run.per_frame_ms(g.mask_decoder.total),
                run.per_frame_ms(g.memory_encoder.total)
            ),
        )
    };
    let official = official(official_file, official_skipped, clip, runs, threads);
    if let Ok(o) = &official {
        contention.push((
            "official float32".into(),
            share((o.runs.float32.others_ticks, o.runs.float32.ticks)),
        ));
        contention.push((
            "official bfloat16".into(),
            share((
                o.runs.bfloat16_autocast.others_ticks,
                o.runs.bfloat16_autocast.ticks,
            )),
        ));
        rows.push(Row::info(
            "official, float32",
            format!(
                "{:.3} s/frame (torch {}, frames 2..{})",
                o.runs.float32.seconds_per_frame(o.timed_frames),
                o.torch,
                o.frames - 1
            ),
        ));
        rows.push(Row::info(
            "official, torch.autocast(\"cpu\", bfloat16)",
            format!(
                "{:.3} s/frame",
                o.runs.bfloat16_autocast.seconds_per_frame(o.timed_frames)
            ),
        ));
    }
    rows.push(Row::info(
        "engine, precision exact",
        format!("{:.3} s/frame", exact.seconds_per_frame()),
    ));
    rows.push(graphs_row("  exact graphs", exact));
    let fast_what =
        format!("engine fast fps / official bfloat16-autocast fps ({threads} threads each)");
    let fast_target = format!("≥ {FAST_RATIO_TARGET}×");
    let deviation_what = "deviation, engine fast vs exact";
    let deviation_target = "≤ official bfloat16 vs float32, both measures";
    match &runs.fast {
        Err(why) => {
            rows.push(Row::skipped("engine, precision fast", why.clone(), ""));
            rows.push(Row::skipped(
                deviation_what,
                "no fast run",
                deviation_target,
            ));
            rows.push(Row::skipped(fast_what, "no fast run", fast_target));
        }
        Ok(fast) => {
            contention.push(("fast engine".into(), share(fast.others)));
            rows.push(Row::info(
                "engine, precision fast",
                format!("{:.3} s/frame ({})", fast.seconds_per_frame(), fast.summary),
            ));
            rows.push(graphs_row("  fast graphs", fast));
            let ours = Deviation::between(&exact.logits, &fast.logits);
            match (&official, ours) {
                (Ok(o), Ok(ours)) => {
                    rows.push(Row::info(
                        "deviation, official bfloat16 autocast vs float32",
                        o.deviation.describe(),
                    ));
                    rows.push(Row::target(
                        deviation_what,
                        ours.describe(),
                        deviation_target,
                        ours.within(&o.deviation),
                    ));
                    let bf16 = o.runs.bfloat16_autocast.seconds_per_frame(o.timed_frames);
                    let ratio = bf16 / fast.seconds_per_frame().max(1e-12);
                    rows.push(Row::target(
                        fast_what,
                        format!("{ratio:.2}×"),
                        fast_target,
                        ratio >= FAST_RATIO_TARGET,
                    ));
                }
                (Err(why), Ok(ours)) => {
                    rows.push(Row::skipped(
                        deviation_what,
                        format!("{} ({why})", ours.describe()),
                        deviation_target,
                    ));
                    rows.push(Row::skipped(fast_what, why.clone(), fast_target));
                }
                (_, Err(e)) => {
                    rows.push(Row::skipped(
                        deviation_what,
                        e.to_string(),
                        deviation_target,
                    ));
                    rows.push(Row::skipped(fast_what, "no deviation", fast_target));
                }
            }
        }
    }
    Section { title, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deviation_counts_the_largest_difference_and_the_flips() {
        let d = Deviation::between(&[1.0, -2.0, 0.5, 3.0], &[1.5, -2.0, -0.25, 3.0]).unwrap();
        assert_eq!(d.max_abs_logit, 0.75);
        assert_eq!(d.flipped_fraction, 0.25);
        assert!(d.within(&d));
        let tighter = Deviation {
            max_abs_logit: 0.5,
            ..d
        };
        assert!(!d.within(&tighter));
        assert!(Deviation::between(&[1.0], &[]).is_err());
    }
}
