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

/// The child's work: load the model, click the disk on frame 0, propagate through `frames`
/// frames, print the peaks.
pub fn child(model_dir: &Path, frames: usize, threads: usize) -> BoxResult<()> {
    let runtime = Runtime::load_default()?.with_intra_threads(Some(threads));
    let model: Arc<Model> = Model::open(model_dir, &runtime)?;
    let mut session = ClipSession::new(
        Arc::clone(&model),
        Box::new(MovingDisk::new(frames)),
        SessionSettings::for_model(&model),
    )?;
    session.add_points(
        0,
        ObjectId(1),
        &[MovingDisk::centre(0)],
        &[Label::Positive],
        true,
    )?;
    let (before, _) = memory_kib().ok_or("/proc/self/status has no VmHWM line")?;
    let mut seen = 0;
    session.propagate(Propagation::default(), |_| {
        seen += 1;
        ControlFlow::Continue(())
    })?;
    if seen != frames {
        return Err(format!("The propagation delivered {seen} frames, not {frames}.").into());
    }
    let (after, _) = memory_kib().ok_or("/proc/self/status has no VmHWM line")?;
    println!("vmhwm_before_kib {before}");
    println!("vmhwm_after_kib {after}");
    Ok(())
}

/// Runs `bench rss` in a fresh process and reads its peaks.
pub fn measure(model_dir: &Path, frames: usize, threads: usize) -> BoxResult<Peak> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .arg("rss")
        .arg("--model")
        .arg(model_dir)
        .arg("--frames")
        .arg(frames.to_string())
        .arg("--threads")
        .arg(threads.to_string())
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
