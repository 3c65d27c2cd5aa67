//! `bench gpu`: the table of `bench/gpu.sh` — the engine on one or more execution providers
//! (CUDA, WebGPU, or the CPU in the script's `--cpu` mode) beside the official predictor in fp32
//! and bf16, on one synthetic clip.
//!
//! Per provider: per-graph milliseconds and frames per second with one object (frames from 2 on,
//! as in [`crate::tracking`]), the device memory after the first and the second frame count of
//! `--frames` (GPU: this process's memory in `nvidia-smi`; CPU: the resident set), milliseconds
//! per frame with 1, 3 and 8 objects, and, when the model has its GPU fast set (`fast-gpu/`,
//! float16: what precision fast runs on a GPU), how far that set's low-res logits lie from the
//! exact graphs' over the same propagation. Then the matte upsampling at 1080p
//! and 4K (CPU and GPU paths), and the official predictor's results (`bench_official --device`).
//!
//! `bench gpu-clip --out DIR --frames N --size WxH` writes the synthetic clip both sides track:
//! two shapes moving over a textured background, as PNG frames.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sam2_engine::model::device::Provider;
use sam2_engine::model::{FastSet, FastTarget, GraphSet, GraphTime, GraphTimes, ModelDir, Traffic};
use sam2_engine::script::{Label, ObjectId};
use sam2_engine::{
    ClipSession, Direction, FolderSource, Model, Propagation, Runtime, SessionSettings,
};

use crate::BoxResult;
use crate::machine::memory_kib;
use crate::table::{Row, Section, Verdict};
use crate::upsample;

/// The official predictor's best eager figure on an H100 (tiny at 1024, bf16 autocast).
const FPS_TARGET: f64 = 48.5;
/// Device memory growth per frame below which memory counts as flat in clip length.
const FLAT_MIB_PER_FRAME: f64 = 0.5;
const MIB: f64 = 1024.0 * 1024.0;
/// Cost per frame of the most objects allowed, as a multiple of one object's.
const OBJECTS_RATIO_TARGET: f64 = 3.0;
/// 4K matte upsampling on the card.
const UPSAMPLE_4K_GPU_TARGET_MS: f64 = 1.0;

#[derive(Debug, Clone)]
pub struct Options {
    pub model: PathBuf,
    pub clip: PathBuf,
    pub providers: Vec<Provider>,
    pub threads: usize,
    /// The two frame counts at which memory is read; the clip is tracked over the larger.
    pub frames: (usize, usize),
    pub objects: Vec<usize>,
    /// Frames tracked per object count.
    pub object_frames: usize,
    pub upsample_runs: usize,
    /// `(label, file)` of `bench_official` results.
    pub official: Vec<(String, PathBuf)>,
    pub official_skipped: Option<String>,
    pub report: Option<PathBuf>,
    /// Fail when a provider's row other than the fp16 one could not be measured (the script's
    /// CPU mode in CI, where the CPU provider must always work).
    pub strict: bool,
}

impl Options {
    pub fn new(model: PathBuf, clip: PathBuf) -> Options {
        Options {
            model,
            clip,
            providers: Vec::new(),
            threads: 2,
            frames: (24, 48),
            objects: vec![1, 3, 8],
            object_frames: 10,
            upsample_runs: 15,
            official: Vec::new(),
            official_skipped: None,
            report: None,
            strict: false,
        }
    }
}

/// Writes the synthetic clip: `frames` PNGs of `width`×`height`.
pub fn write_clip(out: &Path, frames: usize, width: u32, height: u32) -> BoxResult<()> {
    std::fs::create_dir_all(out)
        .map_err(|e| format!("The folder {} cannot be created ({e}).", out.display()))?;
    let (w, h) = (f64::from(width), f64::from(height));
    for index in 0..frames {
        let t = index as f64 / frames.max(1) as f64;
        // A disc moving left to right and a square moving down, over a smooth texture.
        let disc = (w * (0.3 + 0.4 * t), h * 0.5, h * 0.18);
        let square = (w * 0.7, h * (0.25 + 0.4 * t), h * 0.12);
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            let (fx, fy) = (f64::from(x), f64::from(y));
            let texture = ((fx * 0.05).sin() * (fy * 0.07).cos() * 20.0) as i32;
            let base = [90 + texture, 110 + texture, 80 - texture / 2];
            let in_disc = (fx - disc.0).hypot(fy - disc.1) < disc.2;
            let in_square = (fx - square.0).abs() < square.2 && (fy - square.1).abs() < square.2;
            let rgb = if in_disc {
                [220, 60 + texture / 4, 50]
            } else if in_square {
                [40, 70, 200 + texture / 4]
            } else {
                base
            };
            image::Rgb(rgb.map(|v| v.clamp(0, 255) as u8))
        });
        let path = out.join(format!("{index:05}.png"));
        image
            .save(&path)
            .map_err(|e| format!("The frame {} cannot be written ({e}).", path.display()))?;
    }
    Ok(())
}

/// This process's memory on the device, in MiB: `nvidia-smi` for a GPU provider, else the
/// resident set.
fn memory_mib(provider: Provider) -> Result<f64, String> {
    if provider == Provider::Cpu {
        return memory_kib()
            .map(|(_, rss)| rss as f64 / 1024.0)
            .ok_or_else(|| "no /proc/self/status".to_string());
    }
    let output = Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .map_err(|e| format!("nvidia-smi cannot be run ({e})"))?;
    let me = std::process::id().to_string();
    let own = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once(','))
        .find(|(pid, _)| pid.trim() == me)
        .and_then(|(_, mib)| mib.trim().parse::<f64>().ok());
    if let Some(mib) = own {
        return Ok(mib);
    }
    // In a container nvidia-smi often cannot see process ids; then the whole card's use, which
    // is this process's while the bench runs alone on it.
    let card = match provider {
        Provider::Cuda { device_id } | Provider::TensorRt { device_id } => device_id,
        _ => 0,
    };
    let output = Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.used",
            "--format=csv,noheader,nounits",
            &format!("--id={card}"),
        ])
        .output()
        .map_err(|e| format!("nvidia-smi cannot be run ({e})"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse::<f64>()
        .map_err(|_| "nvidia-smi reports neither this process nor the card's memory".to_string())
}

/// The positions of `count` objects: spread over the middle of the frame.
fn object_points(width: u32, height: u32, count: usize) -> Vec<[f64; 2]> {
    (0..count)
        .map(|i| {
            let fx = 0.2 + 0.6 * ((i % 4) as f64 / 3.0);
            let fy = 0.3 + 0.4 * ((i / 4 % 2) as f64);
            [f64::from(width) * fx, f64::from(height) * fy]
        })
        .collect()
}

/// One propagation: wall time and graph time over the frames from 2 on, memory at the given
/// frame counts, and the first object's low-res logits per frame.
struct Run {
    timed_frames: usize,
    wall: Duration,
    graphs: GraphTimes,
    /// Bytes between host memory and the graphs over the timed frames (the bus, on a card).
    traffic: Traffic,
    memory: Vec<Result<f64, String>>,
    logits: Vec<Arc<[f32]>>,
}

impl Run {
    fn ms_per_frame(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e3 / self.timed_frames.max(1) as f64
    }

    fn fps(&self) -> f64 {
        self.timed_frames as f64 / self.wall.as_secs_f64().max(1e-12)
    }
}

fn track(
    model: &Arc<Model>,
    clip: &Path,
    provider: Provider,
    objects: usize,
    frames: usize,
    memory_at: &[usize],
) -> BoxResult<Run> {
    let source = FolderSource::open(clip)?;
    let available = sam2_engine::FrameSource::num_frames(&source);
    if frames > available || frames < 3 {
        return Err(format!(
            "The clip {} has {available} frames; this run needs {frames} (at least 3).",
            clip.display()
        )
        .into());
    }
    let mut session = ClipSession::new(
        Arc::clone(model),
        Box::new(source),
        SessionSettings::for_model(model),
    )?;
    let (w, h) = session.video_size();
    for (i, point) in object_points(w, h, objects).into_iter().enumerate() {
        let id = ObjectId(u64::try_from(i + 1)?);
        session.add_points(0, id, &[point], &[Label::Positive], true)?;
    }
    let mut stamps: Vec<(Instant, GraphTimes, Traffic)> = Vec::with_capacity(frames);
    let mut memory = Vec::new();
    let mut logits = Vec::with_capacity(frames);
    let mut paused = Duration::ZERO;
    session.propagate(
        Propagation {
            start_frame: Some(0),
            direction: Direction::Forward,
            max_frames: Some(frames - 1),
        },
        |masks| {
            stamps.push((Instant::now(), model.graph_times(), model.traffic()));
            if let Some(result) = masks.objects.first().and_then(|o| o.result.as_ref()) {
                logits.push(Arc::clone(&result.low_res_logits));
            }
            if memory_at.contains(&(masks.frame + 1)) {
                let reading = Instant::now();
                memory.push(memory_mib(provider));
                // nvidia-smi takes tens of milliseconds: not the engine's time.
                if masks.frame >= 1 && masks.frame + 1 < frames {
                    paused += reading.elapsed();
                }
            }
            ControlFlow::Continue(())
        },
    )?;
    let (Some(first), Some(last)) = (stamps.get(1), stamps.last()) else {
        return Err("The propagation delivered fewer than two frames.".into());
    };
    Ok(Run {
        timed_frames: stamps.len() - 2,
        wall: (last.0 - first.0).saturating_sub(paused),
        graphs: last.1.since(&first.1),
        traffic: last.2.since(first.2),
        memory,
        logits,
    })
}

/// Largest absolute difference between two logit sequences, and the largest share of pixels on
/// one frame whose sign (mask or not) differs.
fn deviation(a: &[Arc<[f32]>], b: &[Arc<[f32]>]) -> (f32, f64) {
    let mut max_abs = 0.0f32;
    let mut flipped = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        let mut flips = 0usize;
        for (p, q) in x.iter().zip(y.iter()) {
            max_abs = max_abs.max((p - q).abs());
            flips += usize::from((*p > 0.0) != (*q > 0.0));
        }
        flipped = flipped.max(flips as f64 / x.len().max(1) as f64);
    }
    (max_abs, flipped)
}

fn load(options: &Options, dir: &Path, provider: Provider) -> BoxResult<Arc<Model>> {
    let runtime = Runtime::load_default()?
        .with_intra_threads(Some(options.threads))
        .with_providers([provider]);
    Ok(Model::open(dir, &runtime)?)
}

fn graph_ms(run: &Run, t: GraphTime) -> String {
    format!("{:.2} ms", run.ms_per_frame(t.total))
}

fn provider_section(options: &Options, provider: Provider, log: &mut dyn FnMut(String)) -> Section {
    let gpu = provider != Provider::Cpu;
    let image_size = ModelDir::open(&options.model)
        .map(|m| m.manifest().image_size)
        .unwrap_or(0);
    let mut section = Section {
        title: format!("engine on {provider}, {image_size}² model"),
        rows: Vec::new(),
    };
    let model = match load(options, &options.model, provider) {
        Ok(model) => model,
        Err(e) => {
            section
                .rows
                .push(Row::skipped("tracking", e.to_string(), String::new()));
            return section;
        }
    };
    let (a, b) = options.frames;
    log(format!("  {provider}: one object over {b} frames"));
    match track(&model, &options.clip, provider, 1, b, &[a, b]) {
        Ok(run) => {
            let g = run.graphs;
            for (name, t) in [
                ("image encoder", g.image_encoder),
                ("memory attention", g.memory_attention),
                ("mask decoder", g.mask_decoder),
                ("memory encoder", g.memory_encoder),
            ] {
                section
                    .rows
                    .push(Row::info(format!("{name}, per frame"), graph_ms(&run, t)));
            }
            let fps = run.fps();
            let value = format!("{fps:.1} fps ({:.2} ms/frame)", 1e3 / fps.max(1e-9));
            section.rows.push(if gpu && image_size == 1024 {
                Row::target(
                    "frames/s, one object",
                    value,
                    format!("≥ {FPS_TARGET} fps (official bf16 on an H100)"),
                    fps >= FPS_TARGET,
                )
            } else {
                Row::info("frames/s, one object", value)
            });
            let per_frame = |bytes: u64| bytes as f64 / run.timed_frames.max(1) as f64 / MIB;
            section.rows.push(Row::info(
                "host → graphs / graphs → host, per frame",
                format!(
                    "{:.2} / {:.2} MiB",
                    per_frame(run.traffic.to_graphs),
                    per_frame(run.traffic.from_graphs)
                ),
            ));
            let what = format!(
                "{} memory after {a} vs {b} frames",
                if gpu { "GPU" } else { "resident" }
            );
            match (run.memory.first(), run.memory.get(1)) {
                (Some(Ok(x)), Some(Ok(y))) => {
                    let growth = (y - x) / (b - a).max(1) as f64;
                    let value = format!("{x:.0} → {y:.0} MiB ({growth:+.2} MiB/frame)");
                    // The resident set of a short CPU run mostly shows the allocator warming up.
                    section.rows.push(if gpu {
                        Row::target(
                            what,
                            value,
                            format!("flat: < {FLAT_MIB_PER_FRAME} MiB/frame (official +12.8)"),
                            growth < FLAT_MIB_PER_FRAME,
                        )
                    } else {
                        Row::info(what, value)
                    });
                }
                (Some(Err(e)), _) | (_, Some(Err(e))) => {
                    section.rows.push(Row::skipped(what, e.clone(), ""));
                }
                _ => section
                    .rows
                    .push(Row::skipped(what, "not read", String::new())),
            }
            fp16_row(options, provider, &run, &mut section, log);
        }
        Err(e) => section
            .rows
            .push(Row::skipped("tracking", e.to_string(), String::new())),
    }
    let mut per_object = Vec::new();
    for &count in &options.objects {
        log(format!(
            "  {provider}: {count} objects over {} frames",
            options.object_frames
        ));
        match track(
            &model,
            &options.clip,
            provider,
            count,
            options.object_frames,
            &[],
        ) {
            Ok(run) => {
                let ms = run.ms_per_frame(run.wall);
                per_object.push((count, ms));
                section.rows.push(Row::info(
                    format!(
                        "{count} object{}, per frame",
                        if count == 1 { "" } else { "s" }
                    ),
                    format!("{ms:.2} ms"),
                ));
            }
            Err(e) => section.rows.push(Row::skipped(
                format!("{count} objects"),
                e.to_string(),
                String::new(),
            )),
        }
    }
    if let (Some(&(one, base)), Some(&(most, cost))) = (
        per_object.iter().find(|(n, _)| *n == 1),
        per_object.iter().max_by_key(|(n, _)| *n),
    ) && most > one
    {
        let ratio = cost / base.max(1e-9);
        let what = format!("{most} objects / one object");
        section.rows.push(if gpu {
            Row::target(
                what,
                format!("{ratio:.2}×"),
                format!("≤ {OBJECTS_RATIO_TARGET}×"),
                ratio <= OBJECTS_RATIO_TARGET,
            )
        } else {
            Row::info(what, format!("{ratio:.2}×"))
        });
    }
    section
}

/// The model's GPU fast set (float16) tracked over the same frames on `provider`, against the
/// exact run.
fn fp16_row(
    options: &Options,
    provider: Provider,
    fp32: &Run,
    section: &mut Section,
    log: &mut dyn FnMut(String),
) {
    let what = "fp16 set vs fp32: max |Δ logit|, flipped pixels";
    let opened = match ModelDir::open(&options.model) {
        Ok(dir) if FastTarget::Gpu.is_in(&dir) => dir,
        Ok(_) => {
            section.rows.push(Row::skipped(
                what,
                "the model has no GPU fast set (fast-gpu/; bundle/exporter/py fast adds it)",
                String::new(),
            ));
            return;
        }
        Err(e) => {
            section
                .rows
                .push(Row::skipped(what, e.to_string(), String::new()));
            return;
        }
    };
    log(format!("  {provider}: the fp16 set"));
    let frames = options.frames.1;
    let run = FastSet::open(&opened, FastTarget::Gpu)
        .map_err(Into::into)
        .and_then(|set| {
            let runtime = Runtime::load_default()?
                .with_intra_threads(Some(options.threads))
                .with_providers([provider]);
            Ok(Model::load_set(
                opened,
                &runtime,
                GraphSet::Fast(Box::new(set)),
            )?)
        })
        .and_then(|model| track(&model, &options.clip, provider, 1, frames, &[]));
    match run {
        Ok(run) => {
            let (max_abs, flipped) = deviation(&fp32.logits, &run.logits);
            section.rows.push(Row::info(
                what,
                format!(
                    "{max_abs:.3e}, {:.3} % (worst frame; {:.1} fps)",
                    flipped * 100.0,
                    run.fps()
                ),
            ));
        }
        Err(e) => section
            .rows
            .push(Row::skipped(what, e.to_string(), String::new())),
    }
}

fn upsample_section(runs: usize) -> Section {
    let mut rows = Vec::new();
    match upsample::run(runs) {
        Ok(u) => {
            for ((w, h), t) in &u.cpu {
                rows.push(Row::info(
                    format!("{w}×{h}, CPU"),
                    format!("{:.2} ms", t.as_secs_f64() * 1e3),
                ));
            }
            if let Some((name, software)) = &u.gpu_name {
                let kind = if *software {
                    ", a software renderer"
                } else {
                    ""
                };
                rows.push(Row::info("GPU path's adapter", format!("{name}{kind}")));
            }
            match &u.gpu {
                Ok(times) => {
                    for ((w, h), t) in times {
                        let ms = t.as_secs_f64() * 1e3;
                        let what = format!("{w}×{h}, GPU path (upload, shader, readback)");
                        let software = u.gpu_name.as_ref().is_some_and(|(_, s)| *s);
                        rows.push(if *w == 3840 && !software {
                            Row::target(
                                what,
                                format!("{ms:.2} ms"),
                                format!("≤ {UPSAMPLE_4K_GPU_TARGET_MS} ms"),
                                ms <= UPSAMPLE_4K_GPU_TARGET_MS,
                            )
                        } else {
                            Row::info(what, format!("{ms:.2} ms"))
                        });
                    }
                }
                Err(e) => rows.push(Row::skipped("GPU path", e.clone(), String::new())),
            }
        }
        Err(e) => rows.push(Row::skipped("matte upsampling", e.to_string(), "")),
    }
    Section {
        title: "matte upsampling, 256² logits".into(),
        rows,
    }
}

/// What `bench_official --device` wrote (the fields this table reads).
#[derive(Debug, serde::Deserialize)]
struct Official {
    torch: String,
    device: Option<String>,
    precision: Option<String>,
    fps: f64,
    /// `[frames, MiB]` pairs: memory allocated by torch on the device after that many frames.
    #[serde(default)]
    memory_mib: Vec<(usize, f64)>,
    /// `[objects, ms per frame]` pairs.
    #[serde(default)]
    objects_ms: Vec<(usize, f64)>,
}

fn official_section(options: &Options) -> Section {
    let mut rows = Vec::new();
    if options.official.is_empty() {
        rows.push(Row::skipped(
            "official predictor",
            options
                .official_skipped
                .clone()
                .unwrap_or_else(|| "no result given (--official LABEL=FILE)".into()),
            String::new(),
        ));
    }
    for (label, path) in &options.official {
        let read = std::fs::read_to_string(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "no result in {}: the run failed (its message is in the log above)",
                    path.display()
                ),
                _ => format!("{} cannot be read ({e})", path.display()),
            })
            .and_then(|t| {
                serde_json::from_str::<Official>(&t)
                    .map_err(|e| format!("{} is not a bench_official result ({e})", path.display()))
            });
        let o = match read {
            Ok(o) => o,
            Err(e) => {
                rows.push(Row::skipped(label.clone(), e, String::new()));
                continue;
            }
        };
        let on = format!(
            "{label} ({} {}, torch {})",
            o.device.as_deref().unwrap_or("cpu"),
            o.precision.as_deref().unwrap_or("fp32"),
            o.torch
        );
        rows.push(Row::info(
            format!("{on}: frames/s, one object"),
            format!("{:.1} fps ({:.2} ms/frame)", o.fps, 1e3 / o.fps.max(1e-9)),
        ));
        if let (Some((a, x)), Some((b, y))) = (o.memory_mib.first(), o.memory_mib.last())
            && b > a
        {
            rows.push(Row::info(
                format!("{label}: memory after {a} vs {b} frames"),
                format!(
                    "{x:.0} → {y:.0} MiB ({:+.2} MiB/frame)",
                    (y - x) / (b - a) as f64
                ),
            ));
        }
        for (count, ms) in &o.objects_ms {
            rows.push(Row::info(
                format!(
                    "{label}: {count} object{}, per frame",
                    if *count == 1 { "" } else { "s" }
                ),
                format!("{ms:.2} ms"),
            ));
        }
    }
    Section {
        title: "official predictor, same clip".into(),
        rows,
    }
}

pub fn run(options: &Options) -> BoxResult<()> {
    let mut log = |line: String| eprintln!("{line}");
    let mut sections = Vec::new();
    for &provider in &options.providers {
        sections.push(provider_section(options, provider, &mut log));
    }
    let unmeasured: Vec<String> = sections
        .iter()
        .flat_map(|s| s.rows.iter().map(move |r| (s, r)))
        .filter(|(_, r)| r.verdict == Verdict::Skipped && !r.what.starts_with("fp16"))
        .map(|(s, r)| format!("{}: {}: {}", s.title, r.what, r.value.trim_end_matches('.')))
        .collect();
    log("  matte upsampling".into());
    sections.push(upsample_section(options.upsample_runs));
    sections.push(official_section(options));
    let library = sam2_engine::model::runtime::default_library_path();
    let mut text = format!(
        "SAM 2 Rotoscope on GPUs: clip {}, model {}, ONNX Runtime {}, {} threads\n\n",
        options.clip.display(),
        options.model.display(),
        library.display(),
        options.threads
    );
    text.push_str(&crate::table::render(&sections));
    text.push_str(&crate::table::summary(&sections));
    text.push('\n');
    println!("{text}");
    if let Some(path) = &options.report {
        std::fs::write(path, &text)
            .map_err(|e| format!("The report {} cannot be written ({e}).", path.display()))?;
    }
    if options.strict && !unmeasured.is_empty() {
        return Err(format!(
            "bench gpu --strict: {} engine row(s) could not be measured: {}.",
            unmeasured.len(),
            unmeasured.join("; ")
        )
        .into());
    }
    Ok(())
}
