//! Propagation speed split by graph, and click-to-mask latency, on a model and clips.
//!
//! The procedure is the one `bundle/exporter/sam2export/bench_official.py` times on the official
//! predictor, so that the two divide: per clip, one positive click at the centre of frame 0
//! (object 1), then a propagation over the clip (or its first frames). Frame 0 comes back from
//! storage and frame 1 is the warm-up (the first memory-attention run), so the frames from 2 on
//! are timed, from the moment frame 1 is delivered to the moment the last one is. Clicks: on the
//! first clip, a new object (2) on the last propagated frame, whose features are cached — one
//! warm-up click, then the timed ones; each should run the mask decoder alone.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sam2_engine::model::{GraphTime, GraphTimes};
use sam2_engine::predictor::SessionStats;
use sam2_engine::resample::sam2_input;
use sam2_engine::script::{Label, ObjectId};
use sam2_engine::{
    ClipSession, Direction, FolderSource, FrameSource, Model, Propagation, RgbFrame,
    SessionSettings,
};

use crate::BoxResult;
use crate::machine::CpuSample;

/// The first `frames` frames of a clip folder.
pub struct Prefix {
    pub inner: FolderSource,
    pub frames: usize,
}

impl FrameSource for Prefix {
    fn num_frames(&self) -> usize {
        self.frames
    }

    fn video_size(&self) -> (u32, u32) {
        self.inner.video_size()
    }

    fn frame(&mut self, index: usize) -> sam2_engine::Result<RgbFrame> {
        self.inner.frame(index)
    }
}

/// What one clip contributed.
#[derive(Debug, Clone)]
pub struct ClipRun {
    pub clip: PathBuf,
    pub frames: usize,
}

/// The measurements of [`run`].
#[derive(Debug, Clone, Default)]
pub struct Tracking {
    pub clips: Vec<ClipRun>,
    /// Frames inside the timed windows.
    pub timed_frames: usize,
    /// Wall time of the timed windows.
    pub wall: Duration,
    /// Graph time inside the timed windows.
    pub graphs: GraphTimes,
    /// Reading and preprocessing the timed frames again, apart from the propagation: the share of
    /// the engine's overhead that is the input pipeline.
    pub input: Duration,
    /// Wall time of each timed click.
    pub clicks: Vec<Duration>,
    /// Mask-decoder graph time of each timed click.
    pub click_decoder: Vec<Duration>,
    /// Graph runs during the timed clicks other than the decoder's (should stay 0).
    pub click_other_runs: u64,
    /// CPU ticks other processes used during the timed windows, and ticks elapsed (all CPUs).
    pub others: (u64, u64),
    /// Object 1's low-res logits on every propagated frame of the first clip, for the track
    /// cache's encoding rows.
    pub logits: crate::cache_quality::Samples,
}

impl Tracking {
    pub fn per_frame(&self, d: Duration) -> Duration {
        d / u32::try_from(self.timed_frames.max(1)).unwrap_or(u32::MAX)
    }

    pub fn fps(&self) -> f64 {
        self.timed_frames as f64 / self.wall.as_secs_f64().max(1e-12)
    }

    /// Share of the CPUs that other processes used while frames were timed.
    pub fn others_share(&self) -> f64 {
        self.others.0 as f64 / self.others.1.max(1) as f64
    }
}

fn add(a: GraphTimes, b: GraphTimes) -> GraphTimes {
    let one = |x: GraphTime, y: GraphTime| GraphTime {
        runs: x.runs + y.runs,
        total: x.total + y.total,
    };
    GraphTimes {
        image_encoder: one(a.image_encoder, b.image_encoder),
        mask_decoder: one(a.mask_decoder, b.mask_decoder),
        memory_encoder: one(a.memory_encoder, b.memory_encoder),
        memory_attention: one(a.memory_attention, b.memory_attention),
    }
}

/// The click positions of the latency test: a grid over the middle of the frame (the same
/// formula as `bench_official.click_points`).
pub fn click_points(width: u32, height: u32, count: usize) -> Vec<[f64; 2]> {
    (0..count)
        .map(|i| {
            let fx = 0.25 + 0.5 * ((i % 5) as f64 / 4.0);
            let fy = 0.25 + 0.5 * (((i / 5) % 4) as f64 / 3.0);
            [f64::from(width) * fx, f64::from(height) * fy]
        })
        .collect()
}

fn graph_runs(s: &SessionStats) -> [u64; 4] {
    [
        s.image_encoder_runs,
        s.memory_attention_runs,
        s.mask_decoder_runs,
        s.memory_encoder_runs,
    ]
}

/// Propagates through every clip (each cut to `max_frames` when given) and times `clicks` clicks
/// on the first one.
pub fn run(
    model: &Arc<Model>,
    clips: &[PathBuf],
    max_frames: Option<usize>,
    clicks: usize,
    log: &mut dyn FnMut(String),
) -> BoxResult<Tracking> {
    let mut out = Tracking::default();
    for (index, clip) in clips.iter().enumerate() {
        let inner = FolderSource::open(clip)?;
        let frames = max_frames.map_or(inner.num_frames(), |m| m.min(inner.num_frames()));
        if frames < 3 {
            return Err(format!(
                "The clip {} has {frames} frames; the benchmark needs at least 3 (one prompted, one warm-up).",
                clip.display()
            )
            .into());
        }
        let source = Prefix { inner, frames };
        let mut session = ClipSession::new(
            Arc::clone(model),
            Box::new(source),
            SessionSettings::for_model(model),
        )?;
        let (w, h) = session.video_size();
        let centre = [f64::from(w) / 2.0, f64::from(h) / 2.0];
        session.add_points(0, ObjectId(1), &[centre], &[Label::Positive], true)?;
        let mut stamps: Vec<(usize, Instant, GraphTimes)> = Vec::with_capacity(frames);
        let mut cpu = (None, None);
        let mut logits = Vec::new();
        session.propagate(
            Propagation {
                start_frame: Some(0),
                direction: Direction::Forward,
                max_frames: None,
            },
            |masks| {
                stamps.push((masks.frame, Instant::now(), model.graph_times()));
                // Only at the ends of the timed window, to stay out of the engine's time.
                if masks.frame == 1 {
                    cpu.0 = CpuSample::now();
                } else if masks.frame + 1 == frames {
                    cpu.1 = CpuSample::now();
                }
                if index == 0 {
                    let first = masks.objects.iter().find(|o| o.object == ObjectId(1));
                    if let Some(result) = first.and_then(|o| o.result.as_ref()) {
                        logits.push(result.low_res_logits.to_vec());
                    }
                }
                ControlFlow::Continue(())
            },
        )?;
        let (others, ticks) = match cpu {
            (Some(start), Some(end)) => end.others_since(&start),
            _ => (0, 0),
        };
        out.others.0 += others;
        out.others.1 += ticks;
        if index == 0 {
            out.logits = crate::cache_quality::Samples {
                side: model.geometry().low_res,
                width: w as usize,
                height: h as usize,
                maps: logits,
            };
        }
        let order: Vec<usize> = stamps.iter().map(|s| s.0).collect();
        if order != (0..frames).collect::<Vec<_>>() {
            return Err(format!(
                "The propagation over {} delivered frames {order:?}, not 0..{}.",
                clip.display(),
                frames - 1
            )
            .into());
        }
        let (Some(first), Some(last)) = (stamps.get(1), stamps.last()) else {
            return Err("The propagation delivered fewer than two frames.".into());
        };
        let wall = last.1 - first.1;
        out.wall += wall;
        out.graphs = add(out.graphs, last.2.since(&first.2));
        out.timed_frames += frames - 2;
        out.clips.push(ClipRun {
            clip: clip.clone(),
            frames,
        });
        log(format!(
            "  {}: {frames} frames, {:.3} fps over frames 2..{} (other processes used {:.0} % of the CPU)",
            name(clip),
            (frames - 2) as f64 / wall.as_secs_f64().max(1e-12),
            frames - 1,
            others as f64 / ticks.max(1) as f64 * 100.0
        ));

        let mut reader = FolderSource::open(clip)?;
        let m = model.manifest();
        let start = Instant::now();
        for frame in 2..frames {
            let image = reader.frame(frame)?;
            std::hint::black_box(sam2_input(
                &image.data,
                image.width,
                image.height,
                m.image_size,
                m.image_mean,
                m.image_std,
            ));
        }
        out.input += start.elapsed();

        if index == 0 && clicks > 0 {
            let frame = frames - 1;
            session.prepare_frame(frame)?;
            for (i, point) in click_points(w, h, clicks + 1).into_iter().enumerate() {
                let (stats, graphs) = (session.stats(), model.graph_times());
                let start = Instant::now();
                session.add_points(frame, ObjectId(2), &[point], &[Label::Positive], true)?;
                let elapsed = start.elapsed();
                let spent = model.graph_times().since(&graphs);
                let runs = graph_runs(&session.stats());
                let before = graph_runs(&stats);
                // Index 2 is the decoder.
                let others: u64 = runs
                    .iter()
                    .zip(before)
                    .enumerate()
                    .filter(|(k, _)| *k != 2)
                    .map(|(_, (now, then))| now - then)
                    .sum();
                if i > 0 {
                    out.clicks.push(elapsed);
                    out.click_decoder.push(spent.mask_decoder.total);
                    out.click_other_runs += others;
                }
            }
            log(format!(
                "  {} clicks on frame {frame} of {}",
                out.clicks.len(),
                name(clip)
            ));
        }
    }
    Ok(out)
}

pub fn name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The median of some durations (the mean of the middle two for an even count, as Python's
/// `statistics.median`; zero for none).
pub fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let n = sorted.len();
    let upper = sorted.get(n / 2).copied().unwrap_or_default();
    if n.is_multiple_of(2) {
        let lower = sorted
            .get((n / 2).wrapping_sub(1))
            .copied()
            .unwrap_or(upper);
        (lower + upper) / 2
    } else {
        upper
    }
}
