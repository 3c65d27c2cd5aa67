//! Peak memory over a long propagation: the benchmark runs itself again (`bench rss`) once per
//! clip length, so that each peak is a fresh process's own, and reads `VmHWM`.

use std::ops::ControlFlow;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use sam2_engine::script::{Label, ObjectId};
use sam2_engine::{
    ClipSession, FrameSource, Model, Propagation, RgbFrame, Runtime, SessionSettings,
};

use crate::BoxResult;
use crate::machine::memory_kib;

const WIDTH: u32 = 320;
const HEIGHT: u32 = 180;
const RADIUS: f64 = 24.0;

/// A synthetic clip made on demand: a disk moving over a gradient, bouncing left and right.
#[derive(Debug)]
pub struct MovingDisk {
    frames: usize,
}

impl MovingDisk {
    pub fn new(frames: usize) -> MovingDisk {
        MovingDisk { frames }
    }

    /// The disk's centre on frame `i`.
    pub fn centre(i: usize) -> [f64; 2] {
        let travel = 2 * (WIDTH as usize - 2 * 40);
        let p = (i * 3) % travel;
        let x = 40 + if p <= travel / 2 { p } else { travel - p };
        let y = f64::from(HEIGHT) / 2.0 + 40.0 * (i as f64 * 0.1).sin();
        [x as f64, y]
    }
}

impl FrameSource for MovingDisk {
    fn num_frames(&self) -> usize {
        self.frames
    }

    fn video_size(&self) -> (u32, u32) {
        (WIDTH, HEIGHT)
    }

    fn frame(&mut self, index: usize) -> sam2_engine::Result<RgbFrame> {
        let [cx, cy] = MovingDisk::centre(index);
        let mut data = Vec::with_capacity((WIDTH * HEIGHT * 3) as usize);
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                let (dx, dy) = (f64::from(x) - cx, f64::from(y) - cy);
                if dx * dx + dy * dy <= RADIUS * RADIUS {
                    data.extend_from_slice(&[230, 60, 40]);
                } else {
                    data.extend_from_slice(&[
                        (x * 200 / WIDTH) as u8 + 20,
                        (y * 200 / HEIGHT) as u8 + 20,
                        110,
                    ]);
                }
            }
        }
        Ok(RgbFrame {
            width: WIDTH,
            height: HEIGHT,
            data,
        })
    }
}

/// Peaks of one child run, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    /// After loading the model and the first click.
    pub before: u64,
    /// After the propagation.
    pub after: u64,
}

/// What a memory run tracks.
#[derive(Debug, Clone, Copy)]
pub struct RssRun {
    /// Objects clicked on frame 0 (1 to 3).
    pub objects: usize,
    /// Whether a track cache is attached (the cold tier).
    pub cache: bool,
}

impl Default for RssRun {
    fn default() -> RssRun {
        RssRun {
            objects: 1,
            cache: false,
        }
    }
}

/// Where the objects after the first (the disk) are clicked: two corners of the gradient.
const CLICKS: [[f64; 2]; 2] = [[20.0, 20.0], [300.0, 160.0]];

/// The child's work: load the model, click the objects on frame 0, propagate through `frames`
/// frames, print the peaks.
pub fn child(model_dir: &Path, frames: usize, threads: usize, run: RssRun) -> BoxResult<()> {
    let runtime = Runtime::load_default()?.with_intra_threads(Some(threads));
    let model: Arc<Model> = Model::open(model_dir, &runtime)?;
    let mut session = ClipSession::new(
        Arc::clone(&model),
        Box::new(MovingDisk::new(frames)),
        SessionSettings::for_model(&model),
    )?;
    let cache_path =
        std::env::temp_dir().join(format!("sam2-bench-rss-{}.sam2cache", std::process::id()));
    if run.cache {
        session.create_cache(&cache_path, "bench".into(), "bench".into())?;
    }
    let points = std::iter::once(MovingDisk::centre(0)).chain(CLICKS);
    for (i, point) in points.take(run.objects.clamp(1, 3)).enumerate() {
        session.add_points(
            0,
            ObjectId(i as u64 + 1),
            &[point],
            &[Label::Positive],
            true,
        )?;
    }
    let (before, _) = memory_kib().ok_or("/proc/self/status has no VmHWM line")?;
    let mut seen = 0;
    session.propagate(Propagation::default(), |_| {
        seen += 1;
        ControlFlow::Continue(())
    })?;
    if seen != frames {
        return Err(format!("The propagation delivered {seen} frames, not {frames}.").into());
    }
    session.commit_cache()?;
    let (after, _) = memory_kib().ok_or("/proc/self/status has no VmHWM line")?;
    if run.cache {
        let _ = std::fs::remove_file(&cache_path);
        let mut lock = cache_path.into_os_string();
        lock.push(".lock");
        let _ = std::fs::remove_file(lock);
    }
    println!("vmhwm_before_kib {before}");
    println!("vmhwm_after_kib {after}");
    Ok(())
}

/// Runs `bench rss` in a fresh process and reads its peaks.
pub fn measure(model_dir: &Path, frames: usize, threads: usize, run: RssRun) -> BoxResult<Peak> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.arg("rss");
    if run.cache {
        command.arg("--cache");
    }
    let output = command
        .arg("--model")
        .arg(model_dir)
        .arg("--frames")
        .arg(frames.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--objects")
        .arg(run.objects.to_string())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "The memory run over {frames} frames failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("The memory run over {frames} frames printed no {name}."))
    };
    Ok(Peak {
        before: field("vmhwm_before_kib")?,
        after: field("vmhwm_after_kib")?,
    })
}

/// Writes the synthetic clip of `frames` frames as PNGs into `dir/clip` and a script that clicks
/// `objects` objects on frame 0 (as [`child`] does) and propagates; returns the script's path.
fn write_clip(dir: &Path, frames: usize, objects: usize) -> BoxResult<std::path::PathBuf> {
    let clip = dir.join("clip");
    std::fs::create_dir_all(&clip)?;
    let mut source = MovingDisk::new(frames);
    for i in 0..frames {
        let frame = source.frame(i)?;
        image::RgbImage::from_raw(frame.width, frame.height, frame.data)
            .ok_or("a synthetic frame has the wrong size")?
            .save(clip.join(format!("{i:05}.png")))?;
    }
    let points = std::iter::once(MovingDisk::centre(0)).chain(CLICKS);
    let mut interactions: Vec<serde_json::Value> = points
        .take(objects.clamp(1, 3))
        .enumerate()
        .map(|(i, [x, y])| {
            serde_json::json!({
                "op": "add_points", "frame": 0, "object": i + 1,
                "points": [[x, y]], "labels": [1]
            })
        })
        .collect();
    interactions.push(serde_json::json!({"op": "propagate"}));
    let script = dir.join("script.json");
    std::fs::write(
        &script,
        serde_json::json!({
            "format": "sam2-rotoscope-script", "version": 1, "clip": clip,
            "interactions": interactions
        })
        .to_string(),
    )?;
    Ok(script)
}

/// Peak memory of the command line's `track --cache` over the synthetic clip of `frames` frames
/// with `objects` objects, in KiB: what its report line says (`peak memory`).
pub fn measure_cli(
    cli: &Path,
    model_dir: &Path,
    frames: usize,
    threads: usize,
    objects: usize,
) -> BoxResult<u64> {
    let dir = std::env::temp_dir().join(format!(
        "sam2-bench-cli-rss-{}-{frames}",
        std::process::id()
    ));
    let result = (|| -> BoxResult<u64> {
        let script = write_clip(&dir, frames, objects)?;
        let output = Command::new(cli)
            .arg("track")
            .arg("--model")
            .arg(model_dir)
            .arg("--script")
            .arg(&script)
            .arg("--out")
            .arg(dir.join("out"))
            .arg("--cache")
            .arg(dir.join("clip.sam2cache"))
            .args(["--device", "cpu", "--threads", &threads.to_string()])
            .output()
            .map_err(|e| format!("{} could not be run ({e})", cli.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "track over {frames} frames failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        let mib = stdout
            .split("peak memory ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("track printed no peak memory: {stdout}"))?;
        Ok((mib * 1024.0) as u64)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
