//! The re-track case: a correction click on the middle frame of a clip already tracked, and Track
//! Forward from there to the end — what an artist does most — against the official predictor
//! doing the same (`bundle/exporter/sam2export/bench_retrack.py`, whose docstring gives the
//! procedure). The clip is a fixture clip played forward then backward, so that 12 frames give 24
//! without a cut. The engine reads the encoder features of the frames it saw back from its frame
//! cache (memory, then disk); the official predictor encodes them again.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sam2_engine::model::GraphTimes;
use sam2_engine::predictor::SessionStats;
use sam2_engine::script::{Label, ObjectId};
use sam2_engine::{
    ClipSession, Direction, FolderSource, FrameSource, Model, Propagation, RgbFrame,
    SessionSettings,
};

use crate::BoxResult;
use crate::machine::CpuSample;
use crate::table::{Row, Section};

/// Re-track time allowed, as a share of the official predictor's.
pub const RETRACK_TARGET: f64 = 0.6;

/// A clip played forward, then backward (`bench_retrack.ping_pong`).
struct PingPong {
    inner: FolderSource,
    count: usize,
    frames: usize,
}

impl PingPong {
    fn source(&self, index: usize) -> usize {
        let period = 2 * self.count;
        let k = index % period;
        if k < self.count { k } else { period - 1 - k }
    }
}

impl FrameSource for PingPong {
    fn num_frames(&self) -> usize {
        self.frames
    }

    fn video_size(&self) -> (u32, u32) {
        self.inner.video_size()
    }

    fn frame(&mut self, index: usize) -> sam2_engine::Result<RgbFrame> {
        let source = self.source(index);
        self.inner.frame(source)
    }
}

/// The correction click (`bench_retrack.correction_point`).
fn correction_point(width: u32, height: u32) -> [f64; 2] {
    [f64::from(width) * 0.6, f64::from(height) * 0.45]
}

/// What [`run`] measured.
#[derive(Debug, Clone)]
pub struct Retrack {
    pub clip: PathBuf,
    pub frames: usize,
    pub corrected: usize,
    pub first_pass: Duration,
    pub click: Duration,
    /// Click and Track Forward to the end.
    pub total: Duration,
    pub graphs: GraphTimes,
    /// Model runs and disk reads during the timed part.
    pub stats: SessionStats,
    /// CPU ticks other processes used during the timed part, and ticks elapsed.
    pub others: (u64, u64),
}

/// Tracks `frames` frames of `clip` (forward then backward), then times the correction click on
/// the middle frame and Track Forward to the end.
pub fn run(model: &Arc<Model>, clip: &Path, frames: usize) -> BoxResult<Retrack> {
    let inner = FolderSource::open(clip)?;
    let count = inner.num_frames();
    let source = PingPong {
        inner,
        count,
        frames,
    };
    let mut session = ClipSession::new(
        Arc::clone(model),
        Box::new(source),
        SessionSettings::for_model(model),
    )?;
    let (w, h) = session.video_size();
    let object = ObjectId(1);
    let centre = [f64::from(w) / 2.0, f64::from(h) / 2.0];
    session.add_points(0, object, &[centre], &[Label::Positive], true)?;
    let start = Instant::now();
    session.propagate(Propagation::default(), |_| ControlFlow::Continue(()))?;
    let first_pass = start.elapsed();

    let corrected = frames / 2;
    let (stats, graphs) = (session.stats(), model.graph_times());
    let cpu = CpuSample::now();
    let start = Instant::now();
    session.add_points(
        corrected,
        object,
        &[correction_point(w, h)],
        &[Label::Positive],
        true,
    )?;
    let click = start.elapsed();
    let mut delivered = Vec::new();
    session.propagate(
        Propagation {
            start_frame: Some(corrected),
            direction: Direction::Forward,
            max_frames: None,
        },
        |masks| {
            delivered.push(masks.frame);
            ControlFlow::Continue(())
        },
    )?;
    let total = start.elapsed();
    let others = match (cpu, CpuSample::now()) {
        (Some(a), Some(b)) => b.others_since(&a),
        _ => (0, 0),
    };
    if delivered != (corrected..frames).collect::<Vec<_>>() {
        return Err(format!(
            "The re-track delivered frames {delivered:?}, not {corrected}..{}.",
            frames - 1
        )
        .into());
    }
    let now = session.stats();
    Ok(Retrack {
        clip: clip.to_path_buf(),
        frames,
        corrected,
        first_pass,
        click,
        total,
        graphs: model.graph_times().since(&graphs),
        stats: SessionStats {
            image_encoder_runs: now.image_encoder_runs - stats.image_encoder_runs,
            mask_decoder_runs: now.mask_decoder_runs - stats.mask_decoder_runs,
            memory_encoder_runs: now.memory_encoder_runs - stats.memory_encoder_runs,
            memory_attention_runs: now.memory_attention_runs - stats.memory_attention_runs,
            memory_attention_graph_runs: now.memory_attention_graph_runs
                - stats.memory_attention_graph_runs,
            memories_rebuilt: now.memories_rebuilt - stats.memories_rebuilt,
            frame_cache_disk_reads: now.frame_cache_disk_reads - stats.frame_cache_disk_reads,
        },
        others,
    })
}

/// What `bench_retrack.py` wrote.
#[derive(Debug, serde::Deserialize)]
struct Official {
    torch: String,
    threads: usize,
    clip: PathBuf,
    frames: usize,
    corrected_frame: usize,
    click_s: f64,
    retrack_s: f64,
    others_cpu_share: Option<f64>,
}

fn official(path: Option<&Path>, ours: &Retrack, threads: usize) -> Result<Official, String> {
    let path = path.ok_or("no official result given (--official-retrack)")?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{} cannot be read ({e})", path.display()))?;
    let o: Official = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a bench_retrack result ({e})", path.display()))?;
    let same_clip = ours.clip.canonicalize().is_ok_and(|p| p == o.clip);
    if !same_clip || o.frames != ours.frames || o.corrected_frame != ours.corrected {
        return Err(format!("{} timed another clip or frames", path.display()));
    }
    if o.threads != threads {
        return Err(format!(
            "{} ran with {} threads, this run with {threads}",
            path.display(),
            o.threads
        ));
    }
    Ok(o)
}

/// The re-track rows; `official_file` from `bench_retrack.py`, `skipped` why there is none.
pub fn section(
    model: &Model,
    r: &Retrack,
    official_file: Option<&Path>,
    skipped: Option<&str>,
    threads: usize,
    contention: &mut Vec<(String, f64)>,
) -> Section {
    let m = model.manifest();
    let name = crate::tracking::name(&r.clip);
    contention.push((
        format!("{} re-track", m.size),
        r.others.0 as f64 / r.others.1.max(1) as f64,
    ));
    let g = &r.graphs;
    let secs = |d: Duration| d.as_secs_f64();
    let mut rows = vec![
        Row::info(
            format!("first pass over the {} frames (untimed part)", r.frames),
            format!("{:.1} s", secs(r.first_pass)),
        ),
        Row::info(
            format!("correction click on frame {}", r.corrected),
            format!("{:.0} ms", secs(r.click) * 1e3),
        ),
        Row::info(
            format!("click + Track Forward to frame {} (engine)", r.frames - 1),
            format!(
                "{:.2} s; graphs: image encoder {:.2} s ({} runs), memory attention {:.2} s, decoder {:.2} s, memory encoder {:.2} s; features read back from disk {}, memories rebuilt {}",
                secs(r.total),
                secs(g.image_encoder.total),
                g.image_encoder.runs,
                secs(g.memory_attention.total),
                secs(g.mask_decoder.total),
                secs(g.memory_encoder.total),
                r.stats.frame_cache_disk_reads,
                r.stats.memories_rebuilt,
            ),
        ),
    ];
    let what = format!("re-track time, engine / official ({threads} threads each)");
    let target = format!("≤ {RETRACK_TARGET}×");
    match skipped.map_or_else(
        || official(official_file, r, threads),
        |s| Err(s.to_string()),
    ) {
        Ok(o) => {
            if let Some(share) = o.others_cpu_share {
                contention.push((format!("{} official re-track", m.size), share));
            }
            rows.push(Row::info(
                "click + Track Forward (official predictor)",
                format!(
                    "{:.2} s (click {:.0} ms; torch {})",
                    o.retrack_s,
                    o.click_s * 1e3,
                    o.torch
                ),
            ));
            let ratio = secs(r.total) / o.retrack_s.max(1e-12);
            rows.push(Row::target(
                what,
                format!("{ratio:.2}×"),
                target,
                ratio <= RETRACK_TARGET,
            ));
        }
        Err(why) => rows.push(Row::skipped(what, why, target)),
    }
    Section {
        title: format!(
            "re-track, {} {} model at {}², {} frames of {name} (forward then backward), a correction click on frame {} and Track Forward to the end",
            m.family, m.size, m.image_size, r.frames, r.corrected
        ),
        rows,
    }
}
