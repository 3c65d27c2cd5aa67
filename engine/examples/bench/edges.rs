//! Refine Edges against ground truth, independent of model weights (issue 13).
//!
//! The clips in `tests/fixtures/edges` (made by `bundle/exporter/sam2export/edges_fixtures.py`) are
//! textured silhouettes composited over real photographs, with their exact coverage. The ground
//! truth (coverage ≥ ½) goes through the engine as a mask prompt: `to_model_size` and
//! `mask_as_logits` at S = 1024 are what `ClipSession::add_mask` hands over for the frame with a
//! 1024 model (`_use_mask_as_output`: ±10 logits, 256×256), i.e. exactly the logits of a perfect
//! mask. Those are upsampled to 1080p and 4K and finished with the default settings (SAM 2's hard
//! mask at logit 0), without and with Refine Edges, and scored against the full-resolution ground
//! truth: boundary F within 2 pixels (DAVIS's F with a fixed tolerance) and IoU.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::imageops::FilterType;
use sam2_engine::mask_prompt::{mask_as_logits, to_model_size};
use sam2_engine::matte::{
    EdgeRefinement, EdgeRefiner, Guide, MatteDevice, MatteSettings, MatteUpsampler, RefineTimes,
    finish, refine_edges,
};

use crate::BoxResult;
use crate::table::{Row, Section};
use crate::upsample::median_of;

/// The model input size whose mask prompt is simulated, and its logits' size.
const MODEL_SIZE: usize = 1024;
const LOGITS: usize = MODEL_SIZE / 4;
/// `_use_mask_as_output`'s scale and bias (SAM 2's `sigmoid_scale_for_mem_enc` path: ±10).
const MASK_SCALE: f32 = 20.0;
const MASK_BIAS: f32 = -10.0;
/// The boundary tolerance, in pixels.
pub const TOLERANCE: i64 = 2;

#[derive(Debug, serde::Deserialize)]
struct Manifest {
    photos: String,
    clips: Vec<ClipSpec>,
}

#[derive(Debug, serde::Deserialize)]
struct ClipSpec {
    name: String,
    foreground: String,
    background: String,
    background_mirrored: bool,
    coverage: std::collections::BTreeMap<String, String>,
}

/// One clip at one size, ready to render.
pub struct Case {
    pub clip: String,
    pub width: usize,
    pub height: usize,
    pub frame: Vec<u8>,
    pub truth: Vec<bool>,
    pub logits: Vec<f32>,
}

/// Boundary F and IoU of one matte.
#[derive(Debug, Clone, Copy)]
pub struct Score {
    pub f: f64,
    pub iou: f64,
}

/// One clip at one size: scores without and with refinement.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub clip: String,
    pub size: (usize, usize),
    pub bilinear: Score,
    pub refined: Score,
}

/// The CPU refinement's timing at one size.
#[derive(Debug, Clone, Copy)]
pub struct CpuTiming {
    /// The median wall-clock time of a refinement.
    pub median: Duration,
    /// The median of each pass.
    pub passes: RefineTimes,
    /// The mean CPU time of a refinement, all threads together (Linux: `/proc/self/stat`, in
    /// 10 ms ticks, summed over the runs). Unlike wall-clock time it hardly grows when other
    /// processes compete for the cores, so divided by the threads it estimates what an idle
    /// machine would take.
    pub cpu: Option<Duration>,
}

/// The GPU adapter's name, whether it is a software renderer, and a median time per size.
pub type GpuTimes = (String, bool, Vec<((usize, usize), Duration)>);

pub struct Edges {
    pub results: Vec<CaseResult>,
    /// Per size, the CPU refinement's timing (`threads` threads).
    pub cpu_times: Vec<((usize, usize), CpuTiming)>,
    /// Median time of the GPU's upsample + refine + readback per size, with the adapter's name
    /// and whether it is a software renderer; or why there is none.
    pub gpu: Result<GpuTimes, String>,
    pub settings: EdgeRefinement,
}

/// Loads every clip of `dir` at every size it has.
pub fn load(dir: &Path) -> BoxResult<Vec<Case>> {
    let text = std::fs::read_to_string(dir.join("clips.json"))
        .map_err(|e| format!("{} cannot be read ({e}).", dir.join("clips.json").display()))?;
    let manifest: Manifest = serde_json::from_str(&text)?;
    let photos = dir.join(&manifest.photos);
    let mut cases = Vec::new();
    for spec in &manifest.clips {
        let open = |p: PathBuf| -> BoxResult<image::RgbImage> {
            Ok(image::open(&p)
                .map_err(|e| format!("{} cannot be read ({e}).", p.display()))?
                .to_rgb8())
        };
        let fg = open(photos.join(&spec.foreground))?;
        let bg = open(photos.join(&spec.background))?;
        for file in spec.coverage.values() {
            let path = dir.join(file);
            let coverage = image::open(&path)
                .map_err(|e| format!("{} cannot be read ({e}).", path.display()))?
                .to_luma8();
            let (w, h) = (coverage.width(), coverage.height());
            let fg = image::imageops::resize(&fg, w, h, FilterType::Triangle);
            let mut bg = image::imageops::resize(&bg, w, h, FilterType::Triangle);
            if spec.background_mirrored {
                image::imageops::flip_horizontal_in_place(&mut bg);
            }
            let cov = coverage.as_raw();
            let mut frame = Vec::with_capacity(cov.len() * 3);
            let pixels = fg.as_raw().chunks_exact(3).zip(bg.as_raw().chunks_exact(3));
            for (&c, (f, b)) in cov.iter().zip(pixels) {
                let a = f32::from(c) / 255.0;
                for (&f, &b) in f.iter().zip(b) {
                    let (f, b) = (f32::from(f), f32::from(b));
                    frame.push((a * f + (1.0 - a) * b).round() as u8);
                }
            }
            let truth: Vec<bool> = cov.iter().map(|&c| c >= 128).collect();
            let (w, h) = (w as usize, h as usize);
            let model_mask = to_model_size(&truth, w, h, MODEL_SIZE);
            let logits = mask_as_logits(&model_mask, MODEL_SIZE, MASK_SCALE, MASK_BIAS);
            cases.push(Case {
                clip: spec.name.clone(),
                width: w,
                height: h,
                frame,
                truth,
                logits,
            });
        }
    }
    Ok(cases)
}

/// DAVIS's boundary map: a pixel is on the boundary where it differs from its right, lower or
/// lower-right neighbour.
fn boundary(mask: &[bool], w: usize, h: usize) -> Vec<(i64, i64)> {
    let at = |x: usize, y: usize| mask.get(y * w + x).copied().unwrap_or(false);
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let m = at(x, y);
            let differs = (x + 1 < w && at(x + 1, y) != m)
                || (y + 1 < h && at(x, y + 1) != m)
                || (x + 1 < w && y + 1 < h && at(x + 1, y + 1) != m);
            if differs {
                out.push((x as i64, y as i64));
            }
        }
    }
    out
}

/// The share of `points` with a point of `map` within [`TOLERANCE`] pixels (a disk).
fn matched(points: &[(i64, i64)], map: &[bool], w: usize, h: usize) -> f64 {
    if points.is_empty() {
        return 1.0;
    }
    let r = TOLERANCE;
    let hits = points
        .iter()
        .filter(|&&(x, y)| {
            (-r..=r).any(|dy| {
                (-r..=r).any(|dx| {
                    let (xx, yy) = (x + dx, y + dy);
                    dx * dx + dy * dy <= r * r
                        && xx >= 0
                        && yy >= 0
                        && (xx as usize) < w
                        && (yy as usize) < h
                        && map
                            .get(yy as usize * w + xx as usize)
                            .copied()
                            .unwrap_or(false)
                })
            })
        })
        .count();
    hits as f64 / points.len() as f64
}

/// Boundary F (2 px) and IoU of a matte (cut at ½) against the ground truth.
pub fn score(matte: &[f32], truth: &[bool], w: usize, h: usize) -> Score {
    let pred: Vec<bool> = matte.iter().map(|&a| a >= 0.5).collect();
    let (bp, bt) = (boundary(&pred, w, h), boundary(truth, w, h));
    let map = |points: &[(i64, i64)]| {
        let mut m = vec![false; w * h];
        for &(x, y) in points {
            if let Some(v) = m.get_mut(y as usize * w + x as usize) {
                *v = true;
            }
        }
        m
    };
    let precision = matched(&bp, &map(&bt), w, h);
    let recall = matched(&bt, &map(&bp), w, h);
    let f = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let inter = pred.iter().zip(truth).filter(|(p, t)| **p && **t).count();
    let union = pred.iter().zip(truth).filter(|(p, t)| **p || **t).count();
    Score {
        f,
        iou: if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        },
    }
}

/// The default-finished matte of `logits` (full resolution), optionally refined first.
pub fn matte(
    case: &Case,
    upsampled: &[f32],
    refinement: Option<&EdgeRefinement>,
    threads: usize,
) -> BoxResult<Vec<f32>> {
    let logits = match refinement {
        Some(settings) => {
            let guide = Guide {
                rgb: &case.frame,
                width: case.width,
                height: case.height,
            };
            refine_edges(upsampled, guide, settings, threads)?
        }
        None => upsampled.to_vec(),
    };
    Ok(finish(
        &logits,
        case.width,
        case.height,
        &MatteSettings::default(),
    )?)
}

pub fn run(dir: &Path, settings: EdgeRefinement, threads: usize, runs: usize) -> BoxResult<Edges> {
    let cases = load(dir)?;
    let mut up = MatteUpsampler::new(MatteDevice::Cpu)?;
    let mut results = Vec::new();
    let mut cpu_times: Vec<((usize, usize), CpuTiming)> = Vec::new();
    for case in &cases {
        let upsampled = up.upsample(&case.logits, LOGITS, LOGITS, case.width, case.height)?;
        let before = matte(case, &upsampled, None, threads)?;
        let after = matte(case, &upsampled, Some(&settings), threads)?;
        results.push(CaseResult {
            clip: case.clip.clone(),
            size: (case.width, case.height),
            bilinear: score(&before, &case.truth, case.width, case.height),
            refined: score(&after, &case.truth, case.width, case.height),
        });
        if !cpu_times
            .iter()
            .any(|(s, _)| *s == (case.width, case.height))
            && runs > 0
        {
            let guide = Guide {
                rgb: &case.frame,
                width: case.width,
                height: case.height,
            };
            let timing = cpu_time(&upsampled, guide, &settings, threads, runs)?;
            cpu_times.push(((case.width, case.height), timing));
        }
    }
    cpu_times.sort_by_key(|(size, _)| *size);
    let gpu = gpu_times(&cases, &settings, runs);
    Ok(Edges {
        results,
        cpu_times,
        gpu,
        settings,
    })
}

/// The CPU refinement as the pipeline runs it: an [`EdgeRefiner`] kept from frame to frame,
/// refining the upsampled logits in place (restoring them between runs is not timed).
fn cpu_time(
    upsampled: &[f32],
    guide: Guide<'_>,
    settings: &EdgeRefinement,
    threads: usize,
    runs: usize,
) -> BoxResult<CpuTiming> {
    let mut refiner = EdgeRefiner::new();
    let mut logits = upsampled.to_vec();
    refiner.refine(&mut logits, guide, settings, threads)?;
    let mut samples = Vec::with_capacity(runs);
    let mut ticks = Some(0u64);
    for _ in 0..runs {
        logits.copy_from_slice(upsampled);
        let before = cpu_ticks();
        let start = Instant::now();
        let passes = refiner.refine(&mut logits, guide, settings, threads)?;
        samples.push((start.elapsed(), passes));
        ticks = match (ticks, before, cpu_ticks()) {
            (Some(sum), Some(before), Some(after)) => Some(sum + after.saturating_sub(before)),
            _ => None,
        };
    }
    let median = |pick: &dyn Fn(&(Duration, RefineTimes)) -> Duration| {
        let mut times: Vec<Duration> = samples.iter().map(pick).collect();
        times.sort();
        times.get(times.len() / 2).copied().unwrap_or_default()
    };
    Ok(CpuTiming {
        median: median(&|s| s.0),
        passes: RefineTimes {
            subsample: median(&|s| s.1.subsample),
            coefficients: median(&|s| s.1.coefficients),
            apply: median(&|s| s.1.apply),
        },
        cpu: ticks
            .filter(|_| runs > 0)
            .map(|t| Duration::from_millis(t * 10) / runs as u32),
    })
}

/// This process' user + system time so far, in Linux's 10 ms ticks (all threads, ended ones
/// included); `None` where `/proc/self/stat` is not there.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name in parentheses, which may hold spaces.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(field(11)? + field(12)?)
}

/// The GPU path's median time per size (one clip per size).
fn gpu_times(cases: &[Case], settings: &EdgeRefinement, runs: usize) -> Result<GpuTimes, String> {
    let mut gpu = sam2_engine::matte::GpuUpsampler::new().map_err(|e| e.to_string())?;
    let info = gpu.info().clone();
    let mut times: Vec<((usize, usize), Duration)> = Vec::new();
    for case in cases {
        if times.iter().any(|(s, _)| *s == (case.width, case.height)) || runs == 0 {
            continue;
        }
        let guide = Guide {
            rgb: &case.frame,
            width: case.width,
            height: case.height,
        };
        gpu.upsample_refined(&case.logits, LOGITS, LOGITS, guide, settings)
            .map_err(|e| e.to_string())?;
        let time = median_of(runs, || {
            gpu.upsample_refined(&case.logits, LOGITS, LOGITS, guide, settings)
        });
        times.push(((case.width, case.height), time));
    }
    times.sort();
    Ok((
        format!("{} ({})", info.name, info.driver),
        info.software,
        times,
    ))
}

/// Means of (bilinear, refined) scores over the clips of one size.
pub fn means(results: &[CaseResult], size: (usize, usize)) -> Option<(Score, Score)> {
    let of_size: Vec<&CaseResult> = results.iter().filter(|r| r.size == size).collect();
    if of_size.is_empty() {
        return None;
    }
    let n = of_size.len() as f64;
    let mean = |pick: &dyn Fn(&CaseResult) -> f64| of_size.iter().map(|r| pick(r)).sum::<f64>() / n;
    Some((
        Score {
            f: mean(&|r| r.bilinear.f),
            iou: mean(&|r| r.bilinear.iou),
        },
        Score {
            f: mean(&|r| r.refined.f),
            iou: mean(&|r| r.refined.iou),
        },
    ))
}

/// Boundary F at 1080p must improve by this much (absolute) over the bilinear path.
const F_GAIN_TARGET: f64 = 0.15;
/// Refine time allowed (CPU, two threads) at 1080p and 4K.
const CPU_TARGET_MS: [((usize, usize), f64); 2] = [((1920, 1080), 15.0), ((3840, 2160), 50.0)];

/// The bench's rows.
pub fn section(edges: &Edges, threads: usize, runs: usize) -> Section {
    let mut rows = Vec::new();
    let s = &edges.settings;
    rows.push(Row::info(
        "settings",
        format!(
            "guide {:?}, radius {}, ε {}",
            s.guide,
            s.radius
                .map_or("scaled (15 px at 1080p, 30 at 4K)".to_owned(), |r| format!(
                    "{r} px"
                )),
            s.epsilon
        ),
    ));
    for r in &edges.results {
        rows.push(Row::info(
            format!(
                "{} {}×{}: boundary F (2 px) / IoU",
                r.clip, r.size.0, r.size.1
            ),
            format!(
                "bilinear {:.3} / {:.4} → refined {:.3} / {:.4}",
                r.bilinear.f, r.bilinear.iou, r.refined.f, r.refined.iou
            ),
        ));
    }
    for size in crate::upsample::SIZES {
        let Some((before, after)) = means(&edges.results, size) else {
            continue;
        };
        let label = format!("{}×{}", size.0, size.1);
        let gain = after.f - before.f;
        let f_row = format!("mean boundary F at {label}, refined − bilinear");
        let f_value = format!("{:.3} − {:.3} = {gain:+.3}", after.f, before.f);
        rows.push(if size.0 == 1920 {
            Row::target(
                f_row,
                f_value,
                format!("≥ +{F_GAIN_TARGET:.2}"),
                gain >= F_GAIN_TARGET,
            )
        } else {
            Row::info(f_row, f_value)
        });
        rows.push(Row::target(
            format!("mean IoU at {label}, refined vs bilinear"),
            format!("{:.4} vs {:.4}", after.iou, before.iou),
            "not lower",
            after.iou >= before.iou,
        ));
    }
    for (size, timing) in &edges.cpu_times {
        let ms = timing.median.as_secs_f64() * 1000.0;
        let pass_ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let passes = &timing.passes;
        rows.push(Row::info(
            format!("CPU refine {}×{} per pass (medians)", size.0, size.1),
            format!(
                "subsample {:.1} + coefficients {:.1} + apply {:.1} ms",
                pass_ms(passes.subsample),
                pass_ms(passes.coefficients),
                pass_ms(passes.apply)
            ),
        ));
        if let Some(cpu) = timing.cpu {
            rows.push(Row::info(
                format!(
                    "CPU refine {}×{}: CPU time per refine, all threads (÷ {threads}: an idle machine's time)",
                    size.0, size.1
                ),
                format!(
                    "{:.1} ms (÷ {threads} = {:.1} ms)",
                    pass_ms(cpu),
                    pass_ms(cpu) / threads.max(1) as f64
                ),
            ));
        }
        let what = format!(
            "CPU refine {}×{} ({threads} threads, median of {runs})",
            size.0, size.1
        );
        match CPU_TARGET_MS.iter().find(|(s, _)| s == size) {
            Some((_, target)) => rows.push(Row::target(
                what,
                format!("{ms:.1} ms"),
                format!("≤ {target:.0} ms"),
                ms <= *target,
            )),
            None => rows.push(Row::info(what, format!("{ms:.1} ms"))),
        }
    }
    match &edges.gpu {
        Ok((name, software, times)) => {
            for (size, time) in times {
                rows.push(Row::info(
                    format!(
                        "GPU upsample + refine + readback {}×{} (median of {runs})",
                        size.0, size.1
                    ),
                    format!(
                        "{:.1} ms on {name}{}",
                        time.as_secs_f64() * 1000.0,
                        if *software {
                            ", a software renderer on the CPU"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        Err(why) => rows.push(Row::skipped("GPU refine", why.clone(), "")),
    }
    Section {
        title: "Refine Edges against ground truth (tests/fixtures/edges, perfect-mask logits, 1024 model)".into(),
        rows,
    }
}

/// Writes the before/after picture of docs/plugin.md: a 320×320 crop of the first clip at 4K
/// around its outline on the middle row: the frame, today's matte, the refined matte, the mattes
/// with the ground truth's outline in red.
pub fn picture(dir: &Path, settings: &EdgeRefinement, out: &Path) -> BoxResult<()> {
    let cases = load(dir)?;
    let case = cases
        .iter()
        .find(|c| c.width == 3840)
        .ok_or("no 4K clip in tests/fixtures/edges")?;
    let (w, h) = (case.width, case.height);
    let mut up = MatteUpsampler::new(MatteDevice::Cpu)?;
    let upsampled = up.upsample(&case.logits, LOGITS, LOGITS, w, h)?;
    let before = matte(case, &upsampled, None, 2)?;
    let after = matte(case, &upsampled, Some(settings), 2)?;
    let row = h / 2;
    let edge_x = (1..w)
        .rev()
        .find(|&x| case.truth.get(row * w + x - 1) != case.truth.get(row * w + x))
        .ok_or("no outline on the middle row")?;
    const SIDE: usize = 320;
    let x0 = edge_x.saturating_sub(SIDE / 2).min(w - SIDE);
    let y0 = row - SIDE / 2;
    let mut outline = vec![false; w * h];
    for (x, y) in boundary(&case.truth, w, h) {
        if let Some(v) = outline.get_mut(y as usize * w + x as usize) {
            *v = true;
        }
    }
    let mut img = image::RgbImage::new((SIDE * 3 + 16) as u32, SIDE as u32);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let i = (y0 + y) * w + x0 + x;
            let frame: [u8; 3] = case
                .frame
                .get(i * 3..i * 3 + 3)
                .and_then(|p| p.try_into().ok())
                .unwrap_or([0, 0, 0]);
            img.put_pixel(x as u32, y as u32, image::Rgb(frame));
            let on_outline = outline.get(i).copied().unwrap_or(false);
            for (panel, matte) in [(1, &before), (2, &after)] {
                let a = matte.get(i).copied().unwrap_or(0.0);
                let v = (a.clamp(0.0, 1.0) * 255.0).round() as u8;
                let px = if on_outline { [230, 30, 30] } else { [v, v, v] };
                img.put_pixel((panel * (SIDE + 8) + x) as u32, y as u32, image::Rgb(px));
            }
        }
    }
    img.save(out)?;
    Ok(())
}
