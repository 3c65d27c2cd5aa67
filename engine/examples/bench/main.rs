//! The benchmark behind `./bench.sh`: propagation speed split by graph, the engine's own overhead,
//! the speed ratio to the official PyTorch predictor, click-to-mask latency, peak memory over a
//! long clip, tracking into a track cache and rendering from it, and matte upsampling, each against
//! its target. Run it optimized, from the checkout:
//!
//! ```sh
//! cargo run --release -p sam2-engine --example bench -- [options]
//! ```
//!
//! Options (defaults in brackets):
//!
//! - `--threads N` [2]: ONNX Runtime intra-op threads per graph; the official run must use the same.
//! - `--fixture-model DIR` [tests/fixtures/models/test] and `--clip DIR`, repeatable
//!   [every folder in tests/fixtures/clips, by name]: the 256² model and the clips it tracks.
//! - `--tiny-model DIR` and `--tiny-frames N` [8]: the 1024² model, run on the first N frames of the
//!   first clip; `--tiny-skipped TEXT` says why there is none.
//! - `--official-fixture FILE`, `--official-tiny FILE`: what `bundle/exporter/py bench_official`
//!   measured on the same clips and frames; `--official-skipped TEXT` says why there is none.
//! - `--official-precision FILE`: what `bundle/exporter/py bench_precision` measured (the official
//!   predictor in float32 and under bfloat16 autocast) on the tiny model's frames; the engine then
//!   runs the tiny model at precision exact and fast on the same frames (`precision.rs`).
//! - `--clicks N` [20]: timed clicks for the click-to-mask latency.
//! - `--retrack-frames N` [24]: the re-track case on the 1024² model (retrack.rs): the first clip
//!   played forward then backward to N frames, a correction click on frame N/2 and Track Forward;
//!   0 leaves it out. `--official-retrack FILE`: what `bundle/exporter/py bench_retrack` measured.
//! - `--rss-frames A,B` [50,500]: the short and long synthetic clips of the memory test.
//! - `--cache-rss-frames A,B` [200,2000]: the same with a track cache attached (the cold tier).
//! - `--tiny-rss-frames A,B`: the same on the 1024² tiny model with three objects (hours: off by
//!   default).
//! - `--rss-1024-model DIR` and `--rss-1024-frames A,B` [100,1000]: the memory test with three
//!   objects on a shrunk model at 1024² (the test architecture exported at 1024², seeded random
//!   weights: 256² logits and 64² memories per frame, like any 1024² model) — the session and
//!   the command line's `track --cache`; `--rss-1024-skipped TEXT` says why there is none.
//! - `--cli FILE` [the `sam2-rotoscope` beside this benchmark's folder]: the command line whose
//!   `track --cache` the memory test runs too.
//! - `--report FILE`: also write the table there (Markdown).
//!
//! `bench rss --model DIR --frames N --threads N` is the memory test's child process.
//!
//! `bench gpu --model DIR --clip DIR --provider P [--provider P …] [--frames A,B] [--objects 1,3,8] [--object-frames N] [--threads N] [--upsample-runs N]
//! [--official LABEL=FILE …] [--official-skipped TEXT] [--report FILE] [--strict]` prints the table of
//! `bench/gpu.sh` (see gpu.rs); `bench gpu-clip --out DIR --frames N --size WxH` writes its clip.
//! `bench retrack --model DIR --clip DIR [--frames N] [--threads N] [--official FILE]` prints only
//! the re-track rows.
//!
//! `bench precision --model DIR --clip DIR [--frames N] [--threads N] [--official-precision FILE]`
//! prints only the precision rows (the model at exact and fast on the clip's first frames).
//!
//! `bench encoding --model DIR [--clip DIR] [--frames N] [--threads N]` prints only the track
//! cache's encoding rows (a model's logits on the first frames of a clip, and the mask prompts);
//! `bench memory --model DIR [--frames A,B] [--objects N] [--threads N] [--cli FILE]` only the
//! memory rows with a track cache; `bench batch [--model DIR] [--threads N]` only the batch rows.
//!
//! `bench edges [--threads N] [--runs N] [--radius PX] [--epsilon E] [--guide colour|luminance]`
//! prints only the Refine Edges rows (ground truth in tests/fixtures/edges), for tuning;
//! `--picture FILE` writes the before/after crop of docs/plugin.md instead.

mod cache_quality;
mod edges;
mod gpu;
mod machine;
mod memory;
mod precision;
mod retrack;
mod table;
mod track_cache;
mod tracking;
mod upsample;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sam2_engine::{Model, Runtime};

use crate::machine::{Machine, others_busy};
use crate::table::{Row, Section};
use crate::tracking::{Tracking, median};

pub type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Engine overhead allowed, as a share of the graphs' time.
const OVERHEAD_TARGET: f64 = 0.02;
/// Engine fps / official fps required.
const RATIO_TARGET: f64 = 1.6;
/// Issue 12: precision exact against the official float32 at 1024² and at 256².
const EXACT_RATIO_TARGET_1024: f64 = 1.0;
const EXACT_RATIO_TARGET_256: f64 = 1.3;
/// Click-to-mask latency allowed on the 1024 model.
const CLICK_TARGET_MS: f64 = 150.0;
/// Growth of the peak resident set from the short to the long clip allowed.
const RSS_GROWTH_TARGET: f64 = 0.10;
/// 4K matte upsampling on the CPU allowed.
const UPSAMPLE_4K_TARGET_MS: f64 = 20.0;
/// Timed runs per Refine Edges measurement.
const EDGE_RUNS: usize = 7;
/// Share of the CPUs used by other processes above which the report warns.
const CONTENTION_WARNING: f64 = 0.05;
/// Frames of the track-cache measurement.
const CACHE_FRAMES: usize = 40;
/// A track cache's bytes per frame and object allowed at 1024² (256² logits).
const CACHE_BYTES_TARGET: f64 = 64_000.0;
const CACHE_BYTES_TARGET_TEXT: &str = "≤ 64 KB";
/// Timed runs per upsampling measurement.
const UPSAMPLE_RUNS: usize = 15;

#[derive(Debug, Clone)]
struct Options {
    threads: usize,
    fixture_model: PathBuf,
    clips: Vec<PathBuf>,
    tiny_model: Option<PathBuf>,
    tiny_frames: usize,
    tiny_skipped: Option<String>,
    official_fixture: Option<PathBuf>,
    official_tiny: Option<PathBuf>,
    official_precision: Option<PathBuf>,
    official_skipped: Option<String>,
    clicks: usize,
    /// Frames of the re-track case (0: not run).
    retrack_frames: usize,
    official_retrack: Option<PathBuf>,
    rss_frames: (usize, usize),
    /// Short and long clips of the memory test with a track cache attached.
    cache_rss_frames: (usize, usize),
    /// The same on the 1024² model with three objects (long: optional).
    tiny_rss_frames: Option<(usize, usize)>,
    /// A shrunk model at 1024² for the three-object memory test, and its clip lengths.
    rss_1024_model: Option<PathBuf>,
    rss_1024_frames: (usize, usize),
    rss_1024_skipped: Option<String>,
    /// The command line binary.
    cli: PathBuf,
    report: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            threads: 2,
            fixture_model: checkout().join("tests/fixtures/models/test"),
            clips: Vec::new(),
            tiny_model: None,
            tiny_frames: 8,
            tiny_skipped: None,
            official_fixture: None,
            official_tiny: None,
            official_precision: None,
            official_skipped: None,
            clicks: 20,
            retrack_frames: 24,
            official_retrack: None,
            rss_frames: (50, 500),
            cache_rss_frames: (200, 2000),
            tiny_rss_frames: None,
            rss_1024_model: None,
            rss_1024_frames: (100, 1000),
            rss_1024_skipped: None,
            cli: default_cli(),
            report: None,
        }
    }
}

#[derive(Debug)]
enum Command {
    Bench(Box<Options>),
    Rss {
        model: PathBuf,
        frames: usize,
        threads: usize,
        run: memory::RssRun,
    },
    Gpu(Box<gpu::Options>),
    GpuClip {
        out: PathBuf,
        frames: usize,
        size: (u32, u32),
    },
    Retrack {
        model: PathBuf,
        clip: PathBuf,
        frames: usize,
        threads: usize,
        official: Option<PathBuf>,
    },
    /// Only the batch rows (track a 1080p clip into a cache, render from it) on a model.
    Batch {
        model: PathBuf,
        threads: usize,
    },
    /// Only the track cache's encoding rows: a model's logits on the first frames of a clip, and
    /// the mask prompts.
    Encoding {
        model: PathBuf,
        clip: PathBuf,
        frames: usize,
        threads: usize,
    },
    /// Only the memory rows with a track cache, for one model.
    Memory {
        model: PathBuf,
        frames: (usize, usize),
        objects: usize,
        threads: usize,
        cli: PathBuf,
    },
    Edges {
        threads: usize,
        runs: usize,
        settings: sam2_engine::matte::EdgeRefinement,
        /// Write the docs' before/after picture there instead of measuring.
        picture: Option<PathBuf>,
    },
    /// Only the precision rows, on any model and clip (`bench precision --model DIR --clip DIR`).
    Precision {
        model: PathBuf,
        clip: PathBuf,
        frames: usize,
        threads: usize,
        official: Option<PathBuf>,
    },
}

/// `sam2-rotoscope` in the build folder this benchmark was built in (`…/release/examples/bench`).
fn default_cli() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("sam2-rotoscope")))
        .unwrap_or_else(|| PathBuf::from("sam2-rotoscope"))
}

fn checkout() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    path.canonicalize().unwrap_or(path)
}

fn edges_dir() -> PathBuf {
    checkout().join("tests/fixtures/edges")
}

fn number(flag: &str, value: &str) -> BoxResult<usize> {
    value
        .parse()
        .map_err(|_| format!("{flag} takes a whole number, not \"{value}\".").into())
}

fn pair(flag: &str, v: &str) -> BoxResult<(usize, usize)> {
    let (a, b) = v
        .split_once(',')
        .ok_or_else(|| format!("{flag} takes two counts like 200,2000, not \"{v}\"."))?;
    Ok((number(flag, a)?, number(flag, b)?))
}

/// A subcommand's `--flag value` options, each flag one of those it knows.
struct Flags {
    command: &'static str,
    values: std::collections::BTreeMap<String, String>,
}

impl Flags {
    fn read(
        command: &'static str,
        it: &mut std::slice::Iter<'_, String>,
        known: &[&str],
    ) -> BoxResult<Flags> {
        let mut values = std::collections::BTreeMap::new();
        while let Some(flag) = it.next() {
            if !known.contains(&flag.as_str()) {
                return Err(format!("bench {command} does not know the option {flag}.").into());
            }
            let v = it.next().ok_or_else(|| format!("{flag} needs a value."))?;
            values.insert(flag.clone(), v.clone());
        }
        Ok(Flags { command, values })
    }

    fn value(&self, flag: &str) -> Option<&str> {
        self.values.get(flag).map(String::as_str)
    }

    fn path(&self, flag: &str) -> Option<PathBuf> {
        self.value(flag).map(PathBuf::from)
    }

    fn required(&self, flag: &str) -> BoxResult<PathBuf> {
        self.path(flag)
            .ok_or_else(|| format!("bench {} needs {flag}.", self.command).into())
    }

    fn number_or(&self, flag: &str, default: usize) -> BoxResult<usize> {
        self.value(flag).map_or(Ok(default), |v| number(flag, v))
    }
}

fn parse(args: &[String]) -> BoxResult<Command> {
    let mut it = args.iter();
    let value = |flag: &str, it: &mut std::slice::Iter<'_, String>| {
        it.next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value."))
    };
    if args.first().map(String::as_str) == Some("rss") {
        it.next();
        let (mut model, mut frames, mut threads) = (None, None, 2);
        let mut run = memory::RssRun::default();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--objects" => run.objects = number(flag, &value(flag, &mut it)?)?,
                "--cache" => run.cache = true,
                "--model" => model = Some(PathBuf::from(value(flag, &mut it)?)),
                "--frames" => frames = Some(number(flag, &value(flag, &mut it)?)?),
                "--threads" => threads = number(flag, &value(flag, &mut it)?)?,
                other => return Err(format!("bench rss does not know the option {other}.").into()),
            }
        }
        return Ok(Command::Rss {
            model: model.ok_or("bench rss needs --model.")?,
            frames: frames.ok_or("bench rss needs --frames.")?,
            threads,
            run,
        });
    }
    if args.first().map(String::as_str) == Some("gpu") {
        it.next();
        return parse_gpu(&mut it, value).map(|o| Command::Gpu(Box::new(o)));
    }
    if args.first().map(String::as_str) == Some("gpu-clip") {
        it.next();
        let (mut out, mut frames, mut size) = (None, 48, (1280, 720));
        while let Some(flag) = it.next() {
            let v = value(flag, &mut it)?;
            match flag.as_str() {
                "--out" => out = Some(PathBuf::from(v)),
                "--frames" => frames = number(flag, &v)?,
                "--size" => {
                    let (w, h) = v
                        .split_once('x')
                        .ok_or_else(|| format!("--size takes WIDTHxHEIGHT, not \"{v}\"."))?;
                    size = (
                        u32::try_from(number(flag, w)?)?,
                        u32::try_from(number(flag, h)?)?,
                    );
                }
                other => {
                    return Err(format!("bench gpu-clip does not know the option {other}.").into());
                }
            }
        }
        return Ok(Command::GpuClip {
            out: out.ok_or("bench gpu-clip needs --out.")?,
            frames,
            size,
        });
    }
    if args.first().map(String::as_str) == Some("retrack") {
        it.next();
        let f = Flags::read(
            "retrack",
            &mut it,
            &["--model", "--clip", "--frames", "--threads", "--official"],
        )?;
        let (frames, threads) = (f.number_or("--frames", 24)?, f.number_or("--threads", 2)?);
        if frames < 4 || threads == 0 {
            return Err(
                "bench retrack needs --frames of at least 4 and --threads of at least 1.".into(),
            );
        }
        return Ok(Command::Retrack {
            model: f.required("--model")?,
            clip: f.required("--clip")?,
            frames,
            threads,
            official: f.path("--official"),
        });
    }
    if args.first().map(String::as_str) == Some("precision") {
        it.next();
        let f = Flags::read(
            "precision",
            &mut it,
            &[
                "--model",
                "--clip",
                "--frames",
                "--threads",
                "--official-precision",
            ],
        )?;
        return Ok(Command::Precision {
            model: f.required("--model")?,
            clip: f.required("--clip")?,
            frames: f.number_or("--frames", 8)?,
            threads: f.number_or("--threads", 2)?,
            official: f.path("--official-precision"),
        });
    }
    if args.first().map(String::as_str) == Some("batch") {
        it.next();
        let f = Flags::read("batch", &mut it, &["--model", "--threads"])?;
        return Ok(Command::Batch {
            model: f
                .path("--model")
                .unwrap_or_else(|| checkout().join("tests/fixtures/models/test")),
            threads: f.number_or("--threads", 2)?,
        });
    }
    if args.first().map(String::as_str) == Some("encoding") {
        it.next();
        let f = Flags::read(
            "encoding",
            &mut it,
            &["--model", "--clip", "--frames", "--threads"],
        )?;
        return Ok(Command::Encoding {
            model: f.required("--model")?,
            clip: f
                .path("--clip")
                .unwrap_or_else(|| checkout().join("tests/fixtures/clips/crossing")),
            frames: f.number_or("--frames", 8)?,
            threads: f.number_or("--threads", 2)?,
        });
    }
    if args.first().map(String::as_str) == Some("memory") {
        it.next();
        let f = Flags::read(
            "memory",
            &mut it,
            &["--model", "--frames", "--objects", "--threads", "--cli"],
        )?;
        return Ok(Command::Memory {
            model: f.required("--model")?,
            frames: match f.value("--frames") {
                Some(v) => pair("--frames", v)?,
                None => (200, 2000),
            },
            objects: f.number_or("--objects", 1)?,
            threads: f.number_or("--threads", 2)?,
            cli: f.path("--cli").unwrap_or_else(default_cli),
        });
    }
    if args.first().map(String::as_str) == Some("edges") {
        it.next();
        let (mut threads, mut runs) = (2, EDGE_RUNS);
        let mut settings = sam2_engine::matte::EdgeRefinement::default();
        let mut picture = None;
        while let Some(flag) = it.next() {
            let v = value(flag, &mut it)?;
            let float = |v: &str| {
                v.parse::<f32>()
                    .map_err(|_| format!("{flag} takes a number, not \"{v}\"."))
            };
            match flag.as_str() {
                "--threads" => threads = number(flag, &v)?,
                "--runs" => runs = number(flag, &v)?,
                "--picture" => picture = Some(PathBuf::from(&v)),
                "--radius" => settings.radius = Some(float(&v)?),
                "--epsilon" => settings.epsilon = float(&v)?,
                "--guide" => {
                    settings.guide = serde_json::from_value(serde_json::Value::String(v.clone()))
                        .map_err(|_| format!("--guide takes colour or luminance, not \"{v}\"."))?
                }
                other => {
                    return Err(format!("bench edges does not know the option {other}.").into());
                }
            }
        }
        return Ok(Command::Edges {
            threads,
            runs,
            settings,
            picture,
        });
    }
    let mut o = Options::default();
    while let Some(flag) = it.next() {
        let v = value(flag, &mut it)?;
        match flag.as_str() {
            "--threads" => o.threads = number(flag, &v)?,
            "--fixture-model" => o.fixture_model = v.into(),
            "--clip" => o.clips.push(v.into()),
            "--tiny-model" => o.tiny_model = Some(v.into()),
            "--tiny-frames" => o.tiny_frames = number(flag, &v)?,
            "--tiny-skipped" => o.tiny_skipped = Some(v),
            "--official-fixture" => o.official_fixture = Some(v.into()),
            "--official-tiny" => o.official_tiny = Some(v.into()),
            "--official-precision" => o.official_precision = Some(v.into()),
            "--official-skipped" => o.official_skipped = Some(v),
            "--clicks" => o.clicks = number(flag, &v)?,
            "--retrack-frames" => o.retrack_frames = number(flag, &v)?,
            "--official-retrack" => o.official_retrack = Some(v.into()),
            "--rss-frames" => {
                let (a, b) = v.split_once(',').ok_or_else(|| {
                    format!("--rss-frames takes two counts like 50,500, not \"{v}\".")
                })?;
                o.rss_frames = (number(flag, a)?, number(flag, b)?);
            }
            "--cache-rss-frames" => o.cache_rss_frames = pair(flag, &v)?,
            "--tiny-rss-frames" => o.tiny_rss_frames = Some(pair(flag, &v)?),
            "--rss-1024-model" => o.rss_1024_model = Some(v.into()),
            "--rss-1024-frames" => o.rss_1024_frames = pair(flag, &v)?,
            "--rss-1024-skipped" => o.rss_1024_skipped = Some(v),
            "--cli" => o.cli = v.into(),
            "--report" => o.report = Some(v.into()),
            other => {
                return Err(format!(
                    "The benchmark does not know the option {other}; see engine/examples/bench/main.rs."
                )
                .into());
            }
        }
    }
    if o.threads == 0 {
        return Err("--threads must be at least 1.".into());
    }
    if o.retrack_frames != 0 && o.retrack_frames < 4 {
        return Err("--retrack-frames must be 0 (not run) or at least 4.".into());
    }
    if o.tiny_frames < 3 {
        return Err("--tiny-frames must be at least 3 (one prompted frame, one warm-up).".into());
    }
    if o.clips.is_empty() {
        let dir = checkout().join("tests/fixtures/clips");
        let mut clips: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("The clips folder {} cannot be read ({e}).", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        clips.sort();
        o.clips = clips;
    }
    if o.clips.is_empty() {
        return Err("No clips to track; pass --clip DIR.".into());
    }
    Ok(Command::Bench(Box::new(o)))
}

fn parse_gpu(
    it: &mut std::slice::Iter<'_, String>,
    value: impl Fn(&str, &mut std::slice::Iter<'_, String>) -> Result<String, String>,
) -> BoxResult<gpu::Options> {
    let (mut model, mut clip) = (None, None);
    let mut o = gpu::Options::new(PathBuf::new(), PathBuf::new());
    while let Some(flag) = it.next() {
        if flag == "--strict" {
            o.strict = true;
            continue;
        }
        let v = value(flag, it)?;
        match flag.as_str() {
            "--model" => model = Some(PathBuf::from(v)),
            "--clip" => clip = Some(PathBuf::from(v)),
            "--provider" => o.providers.push(v.parse()?),
            "--threads" => o.threads = number(flag, &v)?,
            "--frames" => o.frames = pair(flag, &v)?,
            "--objects" => {
                o.objects = v
                    .split(',')
                    .map(|n| number(flag, n))
                    .collect::<BoxResult<_>>()?;
            }
            "--object-frames" => o.object_frames = number(flag, &v)?,
            "--upsample-runs" => o.upsample_runs = number(flag, &v)?,
            "--official" => {
                let (label, file) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--official takes LABEL=FILE, not \"{v}\"."))?;
                o.official.push((label.to_string(), file.into()));
            }
            "--official-skipped" => o.official_skipped = Some(v),
            "--report" => o.report = Some(v.into()),
            other => return Err(format!("bench gpu does not know the option {other}.").into()),
        }
    }
    o.model = model.ok_or("bench gpu needs --model.")?;
    o.clip = clip.ok_or("bench gpu needs --clip (bench gpu-clip writes one).")?;
    if o.providers.is_empty() {
        return Err("bench gpu needs at least one --provider (cpu, cuda, webgpu, …).".into());
    }
    if o.frames.0 >= o.frames.1 || o.frames.0 < 3 {
        return Err("--frames takes two counts A,B with 3 ≤ A < B.".into());
    }
    if o.threads == 0 || o.object_frames < 3 || o.objects.contains(&0) {
        return Err(
            "--threads and object counts must be at least 1, --object-frames at least 3.".into(),
        );
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&args).and_then(|command| match command {
        Command::Rss {
            model,
            frames,
            threads,
            run,
        } => memory::child(&model, frames, threads, run),
        Command::Edges {
            threads,
            runs,
            settings,
            picture: Some(path),
        } => edges::picture(&edges_dir(), &settings, &path).map(|()| {
            let _ = (threads, runs);
        }),
        Command::Edges {
            threads,
            runs,
            settings,
            picture: None,
        } => {
            let result = edges::run(&edges_dir(), settings, threads, runs)?;
            let sections = [edges::section(&result, threads, runs)];
            println!("{}", table::render(&sections));
            Ok(())
        }
        Command::Retrack {
            model,
            clip,
            frames,
            threads,
            official,
        } => {
            let runtime = Runtime::load_default()?.with_intra_threads(Some(threads));
            let model = load_model(&model, &runtime)?;
            let r = retrack::run(&model, &clip, frames)?;
            let mut contention = Vec::new();
            let section = retrack::section(
                &model,
                &r,
                official.as_deref(),
                None,
                threads,
                &mut contention,
            );
            println!("{}", table::render(&[section]));
            for (what, share) in contention {
                println!(
                    "CPU used by other processes during the {what}: {:.0} %",
                    share * 100.0
                );
            }
            Ok(())
        }
        Command::Precision {
            model,
            clip,
            frames,
            threads,
            official,
        } => {
            let runtime = Runtime::load_default()?.with_intra_threads(Some(threads));
            let runs = precision::run(&model, &runtime, &clip, frames, &mut |line| {
                eprintln!("{line}")
            })?;
            let mut contention = Vec::new();
            let section = precision::section(
                format!(
                    "precision exact and fast, {}, first {frames} frames of {}",
                    model.display(),
                    tracking::name(&clip)
                ),
                &runs,
                official.as_deref(),
                None,
                &clip,
                threads,
                &mut contention,
            );
            println!("{}", table::render(&[section]));
            println!(
                "CPU used by other processes: {}",
                contention
                    .iter()
                    .map(|(when, share)| format!("{:.0} % {when}", share * 100.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Command::Batch { model, threads } => {
            let runtime = Runtime::load_default()?.with_intra_threads(Some(threads));
            let model = load_model(&model, &runtime)?;
            println!("{}", table::render(&[batch_section(&model)?]));
            Ok(())
        }
        Command::Encoding {
            model,
            clip,
            frames,
            threads,
        } => {
            let runtime = Runtime::load_default()?.with_intra_threads(Some(threads));
            let model = load_model(&model, &runtime)?;
            let t = tracking::run(&model, std::slice::from_ref(&clip), Some(frames), 0, &mut |line| {
                eprintln!("{line}")
            })?;
            let mut rows = encoding(
                &format!(
                    "{}, object 1 on the first {} frames of {}",
                    m_size(&model),
                    t.logits.maps.len(),
                    tracking::name(&clip)
                ),
                &t.logits,
                model.geometry().low_res == 256,
            )?;
            rows.extend(encoding(
                "mask prompts at 1024² from real-photo ground truth (tests/fixtures/edges), 1920×1080",
                &cache_quality::mask_prompts(&edges_dir(), 1024)?,
                true,
            )?);
            let section = Section {
                title: "track cache encoding (format 2), against f32 logits".into(),
                rows,
            };
            println!("{}", table::render(&[section]));
            Ok(())
        }
        Command::Memory {
            model,
            frames,
            objects,
            threads,
            cli,
        } => {
            let options = Options {
                threads,
                cli,
                ..Options::default()
            };
            let section = cached_rss_section(
                format!(
                    "peak resident memory (VmHWM) with a track cache, {}, synthetic 320×180 clip, {objects} object(s)",
                    model.display()
                ),
                &model,
                frames,
                &options,
                objects,
            )?;
            println!("{}", table::render(&[section]));
            Ok(())
        }
        Command::Bench(options) => bench(&options),
        Command::Gpu(options) => gpu::run(&options),
        Command::GpuClip { out, frames, size } => gpu::write_clip(&out, frames, size.0, size.1),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What `bench_official.py` wrote.
#[derive(Debug, serde::Deserialize)]
struct Official {
    torch: String,
    threads: usize,
    clips: Vec<OfficialClip>,
    timed_frames: usize,
    timed_s: f64,
    fps: f64,
    click_median_ms: Option<f64>,
    others_cpu_share: Option<f64>,
}

#[derive(Debug, serde::Deserialize)]
struct OfficialClip {
    clip: PathBuf,
    frames: usize,
}

/// Reads an official result and checks that it timed what the engine timed.
fn official(
    path: Option<&Path>,
    skipped: Option<&str>,
    ours: &Tracking,
    threads: usize,
) -> Result<Official, String> {
    let Some(path) = path else {
        return Err(skipped
            .unwrap_or("no official result given (--official-fixture / --official-tiny)")
            .to_string());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{} cannot be read ({e})", path.display()))?;
    let official: Official = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a bench_official result ({e})", path.display()))?;
    let same_clips =
        official.clips.len() == ours.clips.len()
            && official.clips.iter().zip(&ours.clips).all(|(o, e)| {
                o.frames == e.frames && e.clip.canonicalize().is_ok_and(|p| p == o.clip)
            });
    if !same_clips || official.timed_frames != ours.timed_frames {
        return Err(format!(
            "{} timed other clips or frames than this run",
            path.display()
        ));
    }
    if official.threads != threads {
        return Err(format!(
            "{} ran with {} threads, this run with {threads}",
            path.display(),
            official.threads
        ));
    }
    Ok(official)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Propagation, overhead, official ratio and clicks for one model.
fn model_rows(
    model: &Arc<Model>,
    clips: &[PathBuf],
    max_frames: Option<usize>,
    options: &Options,
    official_file: Option<&Path>,
    click_target: bool,
    contention: &mut Vec<(String, f64)>,
) -> BoxResult<(Vec<Row>, cache_quality::Samples)> {
    let t = tracking::run(model, clips, max_frames, options.clicks, &mut |line| {
        eprintln!("{line}")
    })?;
    let label = format!("{} engine", model.manifest().size);
    contention.push((label, t.others_share()));
    let g = &t.graphs;
    let per = |d: Duration| ms(t.per_frame(d));
    let mut rows = Vec::new();
    for (name, graph) in [
        ("image encoder", g.image_encoder),
        ("memory attention", g.memory_attention),
        ("mask decoder", g.mask_decoder),
        ("memory encoder", g.memory_encoder),
    ] {
        rows.push(Row::info(
            format!("  {name}"),
            format!("{:.2} ms/frame ({} runs)", per(graph.total), graph.runs),
        ));
    }
    let graphs = g.total();
    rows.push(Row::info(
        "  all four graphs",
        format!("{:.2} ms/frame", per(graphs)),
    ));
    rows.push(Row::info(
        format!("propagation, {} timed frames", t.timed_frames),
        format!("{:.2} ms/frame ({:.3} fps)", per(t.wall), t.fps()),
    ));
    let overhead = t.wall.saturating_sub(graphs);
    let share = overhead.as_secs_f64() / graphs.as_secs_f64().max(1e-12);
    rows.push(Row::target(
        "engine overhead (wall − graphs)",
        format!("{:.3} ms/frame = {:.2} %", per(overhead), share * 100.0),
        format!("≤ {:.0} % of graph time", OVERHEAD_TARGET * 100.0),
        share <= OVERHEAD_TARGET,
    ));
    rows.push(Row::info(
        "  of which reading + preprocessing frames",
        format!(
            "{:.3} ms/frame (PNG decode and resize to {}², timed apart)",
            per(t.input),
            model.manifest().image_size
        ),
    ));
    let ratio_what = format!(
        "engine fps / official fps ({} threads each)",
        options.threads
    );
    let ratio_target = format!("≥ {RATIO_TARGET}×");
    match official(
        official_file,
        options.official_skipped.as_deref(),
        &t,
        options.threads,
    ) {
        Ok(o) => {
            if let Some(share) = o.others_cpu_share {
                contention.push((format!("{} official", model.manifest().size), share));
            }
            rows.push(Row::info(
                "official PyTorch predictor",
                format!(
                    "{:.2} ms/frame ({:.3} fps; torch {})",
                    o.timed_s * 1e3 / o.timed_frames.max(1) as f64,
                    o.fps,
                    o.torch
                ),
            ));
            let ratio = t.fps() / o.fps.max(1e-12);
            rows.push(Row::target(
                ratio_what,
                format!("{ratio:.2}×"),
                ratio_target,
                ratio >= RATIO_TARGET,
            ));
            // Issue 12's bar for precision exact: at least the official float32's speed at 1024²,
            // clearly above it at 256² (where the engine's per-frame work is a larger share).
            let exact_target = if model.manifest().image_size >= 1024 {
                EXACT_RATIO_TARGET_1024
            } else {
                EXACT_RATIO_TARGET_256
            };
            rows.push(Row::target(
                "precision exact: engine fps / official float32 fps",
                format!("{ratio:.2}×"),
                format!("≥ {exact_target}×"),
                ratio >= exact_target,
            ));
            if let Some(c) = o.click_median_ms {
                rows.push(Row::info(
                    "official click-to-mask, median",
                    format!("{c:.2} ms"),
                ));
            }
        }
        Err(why) => rows.push(Row::skipped(ratio_what, why, ratio_target)),
    }
    if !t.clicks.is_empty() {
        let click = ms(median(&t.clicks));
        let mut value = format!(
            "{click:.2} ms (decoder graph {:.2} ms)",
            ms(median(&t.click_decoder))
        );
        if t.click_other_runs > 0 {
            value.push_str(&format!("; other graphs ran {} times", t.click_other_runs));
        }
        let what = format!(
            "click-to-mask on an encoded frame, median of {}",
            t.clicks.len()
        );
        rows.push(if click_target {
            Row::target(
                what,
                value,
                format!("≤ {CLICK_TARGET_MS:.0} ms"),
                click <= CLICK_TARGET_MS,
            )
        } else {
            Row::info(what, value)
        });
    }
    Ok((rows, t.logits))
}

/// The re-track case on `model` (retrack.rs), unless `--retrack-frames 0`.
fn retrack_rows(
    model: &Arc<Model>,
    clip: Option<&PathBuf>,
    o: &Options,
    contention: &mut Vec<(String, f64)>,
) -> BoxResult<Option<Section>> {
    let Some(clip) = clip.filter(|_| o.retrack_frames > 0) else {
        return Ok(None);
    };
    eprintln!(
        "re-track: {} frames of {} (forward then backward), a correction click on frame {} and Track Forward",
        o.retrack_frames,
        tracking::name(clip),
        o.retrack_frames / 2
    );
    let r = retrack::run(model, clip, o.retrack_frames)?;
    Ok(Some(retrack::section(
        model,
        &r,
        o.official_retrack.as_deref(),
        o.official_skipped.as_deref(),
        o.threads,
        contention,
    )))
}

/// Precision exact and fast on the tiny model against the official float32 and bfloat16 autocast.
fn precision_section(
    o: &Options,
    dir: &Path,
    runtime: &Runtime,
    contention: &mut Vec<(String, f64)>,
) -> BoxResult<Section> {
    let clip = o
        .clips
        .first()
        .ok_or("No clips to track; pass --clip DIR.")?;
    eprintln!(
        "precision: the tiny model exact and fast on the first {} frames of {}",
        o.tiny_frames,
        tracking::name(clip)
    );
    let runs = precision::run(dir, runtime, clip, o.tiny_frames, &mut |line| {
        eprintln!("{line}")
    })?;
    Ok(precision::section(
        format!(
            "precision exact and fast vs the official float32 and bfloat16 autocast, tiny at 1024², first {} frames of {}",
            o.tiny_frames,
            tracking::name(clip)
        ),
        &runs,
        o.official_precision.as_deref(),
        o.official_skipped.as_deref(),
        clip,
        o.threads,
        contention,
    ))
}

fn load_model(dir: &Path, runtime: &Runtime) -> BoxResult<Arc<Model>> {
    let start = Instant::now();
    let model = Model::open(dir, runtime)?;
    eprintln!(
        "loaded {} in {:.1} s",
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(model)
}

fn bench(o: &Options) -> BoxResult<()> {
    let busy_before = others_busy(Duration::from_secs(1));
    let runtime = Runtime::load_default()?.with_intra_threads(Some(o.threads));
    let machine = Machine::describe(runtime.library_path());
    let mut sections = Vec::new();
    let mut contention: Vec<(String, f64)> = Vec::new();
    if let Some(share) = busy_before {
        contention.push(("before".into(), share));
    }

    let names: Vec<String> = o.clips.iter().map(|c| tracking::name(c)).collect();
    eprintln!("fixture model: propagating through {}", names.join(", "));
    let fixture = load_model(&o.fixture_model, &runtime)?;
    let m = fixture.manifest();
    let (rows, fixture_logits) = model_rows(
        &fixture,
        &o.clips,
        None,
        o,
        o.official_fixture.as_deref(),
        false,
        &mut contention,
    )?;
    sections.push(Section {
        title: format!(
            "{} {} model at {}² ({}), clips {}",
            m.family,
            m.size,
            m.image_size,
            o.fixture_model.display(),
            names.join(", ")
        ),
        rows,
    });
    let mut encoding_rows = Vec::new();

    let first_clip: Vec<PathBuf> = o.clips.iter().take(1).cloned().collect();
    let first_name = names.first().cloned().unwrap_or_default();
    match &o.tiny_model {
        Some(dir) => {
            eprintln!(
                "tiny model: propagating through the first {} frames of {first_name}",
                o.tiny_frames
            );
            let tiny = load_model(dir, &runtime)?;
            let m = tiny.manifest();
            let (rows, tiny_logits) = model_rows(
                &tiny,
                &first_clip,
                Some(o.tiny_frames),
                o,
                o.official_tiny.as_deref(),
                true,
                &mut contention,
            )?;
            sections.push(Section {
                title: format!(
                    "{} {} model at {}² ({}), first {} frames of {first_name}",
                    m.family,
                    m.size,
                    m.image_size,
                    dir.display(),
                    o.tiny_frames
                ),
                rows,
            });
            if let Some(section) = retrack_rows(&tiny, first_clip.first(), o, &mut contention)? {
                sections.push(section);
            }
            sections.push(precision_section(o, dir, &runtime, &mut contention)?);
            encoding_rows.extend(encoding(
                &format!(
                    "{} {} at 1024² (random weights), object 1 on the first {} frames of {first_name}",
                    m.family,
                    m.size,
                    tiny_logits.maps.len()
                ),
                &tiny_logits,
                true,
            )?);
        }
        None => {
            sections.push(Section {
                title: "tiny model at 1024²".into(),
                rows: vec![Row::skipped(
                    "propagation, overhead, official ratio, clicks",
                    o.tiny_skipped
                        .clone()
                        .unwrap_or_else(|| "no --tiny-model given".into()),
                    format!("≤ {CLICK_TARGET_MS:.0} ms click, ≥ {RATIO_TARGET}×, ≤ 2 % overhead"),
                )],
            });
            encoding_rows.push(Row::skipped(
                "cache per frame and object at 1024², tracked",
                "no tiny model (--tiny-model)",
                CACHE_BYTES_TARGET_TEXT,
            ));
        }
    }
    eprintln!("track cache encoding: sizes and matte differences");
    let prompts = cache_quality::mask_prompts(&edges_dir(), 1024)?;
    encoding_rows.extend(encoding(
        "mask prompts at 1024² from real-photo ground truth (tests/fixtures/edges), as output on their frame, 1920×1080",
        &prompts,
        true,
    )?);
    encoding_rows.extend(encoding(
        &format!(
            "{} (random weights), object 1 on every frame of {first_name}",
            m_size(&fixture)
        ),
        &fixture_logits,
        false,
    )?);
    sections.push(Section {
        title: "track cache encoding: 16-bit codes of 1/256 logit, predicted, deflated (format 2), against f32 logits".into(),
        rows: encoding_rows,
    });

    let (short, long) = o.rss_frames;
    eprintln!("peak memory: {short} and {long} synthetic frames, each in its own process");
    let plain = memory::RssRun::default();
    let a = memory::measure(&o.fixture_model, short, o.threads, plain)?;
    let b = memory::measure(&o.fixture_model, long, o.threads, plain)?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let growth = b.after as f64 / a.after.max(1) as f64 - 1.0;
    sections.push(Section {
        title: format!(
            "peak resident memory (VmHWM), {}, synthetic 320×180 clip, one object",
            m_size(&fixture)
        ),
        rows: vec![
            Row::info(
                "after loading and the first click",
                format!("{:.1} MiB", mib(a.before)),
            ),
            Row::info(
                format!("after propagating {short} frames"),
                format!("{:.1} MiB", mib(a.after)),
            ),
            Row::target(
                format!("after propagating {long} frames"),
                format!(
                    "{:.1} MiB ({:+.1} %, {:.1} KiB per extra frame)",
                    mib(b.after),
                    growth * 100.0,
                    b.after.saturating_sub(a.after) as f64
                        / (long.saturating_sub(short).max(1)) as f64
                ),
                format!(
                    "within {:.0} % of {short} frames",
                    RSS_GROWTH_TARGET * 100.0
                ),
                growth <= RSS_GROWTH_TARGET,
            ),
        ],
    });

    let (short, long) = o.cache_rss_frames;
    eprintln!("peak memory with the track cache: {short} and {long} synthetic frames");
    sections.push(cached_rss_section(
        format!(
            "peak resident memory (VmHWM) with a track cache (cold tier), {}, synthetic 320×180 clip, one object",
            m_size(&fixture)
        ),
        &o.fixture_model,
        (short, long),
        o,
        1,
    )?);
    match &o.rss_1024_model {
        Some(dir) => {
            let (short, long) = o.rss_1024_frames;
            eprintln!(
                "peak memory with the track cache, shrunk 1024² model, 3 objects: {short} and {long} frames"
            );
            sections.push(cached_rss_section(
                format!(
                    "peak resident memory (VmHWM) with a track cache, test architecture exported at 1024² ({}; seeded random weights; per frame and object 256² logits and 64² memories, as any 1024² model), synthetic 320×180 clip, three objects",
                    dir.display()
                ),
                dir,
                (short, long),
                o,
                3,
            )?);
        }
        None => sections.push(Section {
            title: "peak resident memory with a track cache, 1024², three objects".into(),
            rows: vec![Row::skipped(
                format!("{} vs {} frames", o.rss_1024_frames.0, o.rss_1024_frames.1),
                o.rss_1024_skipped
                    .clone()
                    .unwrap_or_else(|| "no --rss-1024-model given".into()),
                "within 10 %",
            )],
        }),
    }
    if let (Some(dir), Some((short, long))) = (&o.tiny_model, o.tiny_rss_frames) {
        eprintln!(
            "peak memory with the track cache, tiny 1024² model, 3 objects: {short} and {long} frames"
        );
        sections.push(rss_section(
            format!(
                "peak resident memory (VmHWM) with a track cache attached, {}, synthetic 320×180 clip, three objects",
                dir.display()
            ),
            dir,
            (short, long),
            o.threads,
            memory::RssRun {
                objects: 3,
                cache: true,
            },
        )?);
    }

    eprintln!(
        "track cache: tracking {CACHE_FRAMES} synthetic 1080p frames into it, rendering from it"
    );
    sections.push(batch_section(&fixture)?);

    eprintln!("matte upsampling");
    let up = upsample::run(UPSAMPLE_RUNS)?;
    let mut rows = Vec::new();
    for ((w, h), d) in &up.cpu {
        let what = format!("CPU → {w}×{h} (MatteUpsampler, fresh buffer)");
        let value = format!("{:.2} ms", ms(*d));
        rows.push(if *w == 3840 {
            Row::target(
                what,
                value,
                format!("≤ {UPSAMPLE_4K_TARGET_MS:.0} ms"),
                ms(*d) <= UPSAMPLE_4K_TARGET_MS,
            )
        } else {
            Row::info(what, value)
        });
    }
    for ((w, h), d) in &up.cpu_reused {
        rows.push(Row::info(
            format!("CPU → {w}×{h} (tables and buffer reused)"),
            format!("{:.2} ms", ms(*d)),
        ));
    }
    if let Some((name, software)) = &up.gpu_name {
        rows.push(Row::info(
            "GPU adapter",
            if *software {
                format!("{name}: a software rasterizer running on the CPU, not a GPU")
            } else {
                name.clone()
            },
        ));
    }
    match &up.gpu {
        Ok(times) => {
            for ((w, h), d) in times {
                rows.push(Row::info(
                    format!("GPU → {w}×{h} (upload, shader, readback)"),
                    format!("{:.2} ms", ms(*d)),
                ));
            }
        }
        Err(why) => rows.push(Row::skipped("GPU path", why.clone(), "")),
    }
    rows.push(Row::info(
        "model input from a 3840×2160 frame (sam2_input → 1024²)",
        format!("{:.2} ms", ms(up.input_4k)),
    ));
    sections.push(Section {
        title: format!("matte upsampling, 256² logits, median of {UPSAMPLE_RUNS}, one thread"),
        rows,
    });

    eprintln!("refine edges against ground truth");
    let refined = edges::run(
        &edges_dir(),
        sam2_engine::matte::EdgeRefinement::default(),
        o.threads,
        EDGE_RUNS,
    )?;
    sections.push(edges::section(&refined, o.threads, EDGE_RUNS));

    let busy_after = others_busy(Duration::from_secs(1));
    let mut header = format!(
        "Machine: {} logical CPUs, {}, {:.1} GiB RAM\n\
         ONNX Runtime {} ({}), CPU provider, {} intra-op threads per graph; the official predictor with torch.set_num_threads({})\n",
        machine.logical_cpus,
        machine.cpu,
        machine.memory_gib,
        machine.ort_version,
        machine.ort_path,
        o.threads,
        o.threads,
    );
    if let Some(share) = busy_after {
        contention.push(("after".into(), share));
    }
    header.push_str(&format!(
        "CPU used by other processes: {}",
        contention
            .iter()
            .map(|(when, share)| format!("{:.0} % {when}", share * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if contention
        .iter()
        .any(|(_, share)| *share > CONTENTION_WARNING)
    {
        header.push_str(
            "\nWARNING: other processes shared the CPU, so these timings are slower and noisier than on an idle machine; run again when it is idle.",
        );
    }
    header.push('\n');
    let report = format!(
        "{header}\n{}\n{}\n",
        table::render(&sections),
        table::summary(&sections)
    );
    println!("\n{report}");
    if let Some(path) = &o.report {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, &report)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Peak memory of a short and a long run in fresh processes, the long one against the 10 % target.
fn rss_section(
    title: String,
    model: &Path,
    (short, long): (usize, usize),
    threads: usize,
    run: memory::RssRun,
) -> BoxResult<Section> {
    let a = memory::measure(model, short, threads, run)?;
    let b = memory::measure(model, long, threads, run)?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let growth = b.after as f64 / a.after.max(1) as f64 - 1.0;
    Ok(Section {
        title,
        rows: vec![
            Row::info(
                format!("after propagating {short} frames"),
                format!("{:.1} MiB", mib(a.after)),
            ),
            Row::target(
                format!("after propagating {long} frames"),
                format!(
                    "{:.1} MiB ({:+.1} %, {:.1} KiB per extra frame)",
                    mib(b.after),
                    growth * 100.0,
                    b.after.saturating_sub(a.after) as f64
                        / (long.saturating_sub(short).max(1)) as f64
                ),
                format!(
                    "within {:.0} % of {short} frames",
                    RSS_GROWTH_TARGET * 100.0
                ),
                growth <= RSS_GROWTH_TARGET,
            ),
        ],
    })
}

/// Peak memory of the session (with its cold tier) and of the command line's `track --cache`, a
/// short and a long clip each in a fresh process, the long ones against the 10 % target.
fn cached_rss_section(
    title: String,
    model: &Path,
    (short, long): (usize, usize),
    o: &Options,
    objects: usize,
) -> BoxResult<Section> {
    let run = memory::RssRun {
        objects,
        cache: true,
    };
    let a = memory::measure(model, short, o.threads, run)?;
    let b = memory::measure(model, long, o.threads, run)?;
    let mut rows = growth_rows("session", (short, long), (a.after, b.after));
    let cli = (|| -> BoxResult<(u64, u64)> {
        Ok((
            memory::measure_cli(&o.cli, model, short, o.threads, objects)?,
            memory::measure_cli(&o.cli, model, long, o.threads, objects)?,
        ))
    })();
    match cli {
        Ok(peaks) => rows.extend(growth_rows(
            "sam2-rotoscope track --cache (tracking and mattes)",
            (short, long),
            peaks,
        )),
        Err(why) => rows.push(Row::skipped(
            format!("sam2-rotoscope track --cache, {short} vs {long} frames"),
            why.to_string(),
            "within 10 %",
        )),
    }
    Ok(Section { title, rows })
}

/// A short and a long run's peaks (KiB), the long one against the 10 % target.
fn growth_rows(what: &str, (short, long): (usize, usize), (a, b): (u64, u64)) -> Vec<Row> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let growth = b as f64 / a.max(1) as f64 - 1.0;
    vec![
        Row::info(
            format!("{what}, {short} frames"),
            format!("{:.1} MiB", mib(a)),
        ),
        Row::target(
            format!("{what}, {long} frames"),
            format!(
                "{:.1} MiB ({:+.1} %, {:.1} KiB per extra frame)",
                mib(b),
                growth * 100.0,
                b.saturating_sub(a) as f64 / (long.saturating_sub(short).max(1)) as f64
            ),
            format!(
                "within {:.0} % of {short} frames",
                RSS_GROWTH_TARGET * 100.0
            ),
            growth <= RSS_GROWTH_TARGET,
        ),
    ]
}

fn m_size(model: &Model) -> String {
    let m = model.manifest();
    format!("the {} model at {}²", m.size, m.image_size)
}

/// The track cache's encoding on `samples`: its size (against [`CACHE_BYTES_TARGET`] when
/// `at_1024`), and what rounding to the matte precision does to mattes, next to 8-bit codes.
fn encoding(what: &str, samples: &cache_quality::Samples, at_1024: bool) -> BoxResult<Vec<Row>> {
    let q = cache_quality::run(samples)?;
    let kib = |b: f64| b / 1024.0;
    let size = format!(
        "{:.1} KiB ({:.0} bytes; lossless f32 {:.1} KiB, 8-bit codes {:.1} KiB; {} maps of {}²)",
        kib(q.cache_bytes),
        q.cache_bytes,
        kib(q.lossless_bytes),
        kib(q.eight.bytes),
        q.maps,
        q.side
    );
    let mut rows = vec![if at_1024 {
        Row::target(
            format!("cache per frame and object: {what}"),
            size,
            CACHE_BYTES_TARGET_TEXT,
            q.cache_bytes <= CACHE_BYTES_TARGET,
        )
    } else {
        Row::info(format!("cache per frame and object: {what}"), size)
    }];
    for (name, e) in [
        ("16-bit codes (the cache's)", q.sixteen),
        ("8-bit codes (not used)", q.eight),
    ] {
        rows.push(Row::info(
            format!("  matte vs f32 logits, {name}"),
            format!(
                "soft (softness 1): max {} of 255 at 8 bits, {} of 65535 at 16 bits; hard: {:.4} % of pixels differ",
                e.soft_u8,
                e.soft_u16,
                e.hard_changed * 100.0
            ),
        ));
    }
    Ok(rows)
}

/// Batch: a synthetic 1080p clip tracked into a track cache, then rendered from it.
fn batch_section(fixture: &Arc<Model>) -> BoxResult<Section> {
    let c = track_cache::run(fixture, CACHE_FRAMES)?;
    Ok(Section {
        title: format!(
            "batch: a synthetic 1920×1080 clip of {} frames tracked into a track cache, then rendered from it, {}, one object",
            c.frames,
            m_size(fixture),
        ),
        rows: vec![
            Row::info(
                "tracking, the cache written as it goes",
                format!(
                    "{:.1} frames/s ({:.1} ms per frame writing the cache)",
                    c.track_fps,
                    c.write_seconds * 1000.0 / c.frames.max(1) as f64
                ),
            ),
            Row::info(
                "rendering from the cache (read, CPU upsample to 1080p, finishing, 8-bit), one thread",
                format!(
                    "{:.1} frames/s ({:.1}× tracking; no model)",
                    c.render_fps,
                    c.render_fps / c.track_fps.max(1e-9)
                ),
            ),
            Row::info(
                "cache per frame and object (64² logits)",
                format!(
                    "{:.1} KiB of {:.0} KiB raw ({:.2})",
                    c.block_bytes / 1024.0,
                    c.raw_bytes as f64 / 1024.0,
                    c.block_bytes / c.raw_bytes as f64
                ),
            ),
        ],
    })
}
