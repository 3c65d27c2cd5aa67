//! Matte upsampling speed (256² logits → HD and 4K) on the CPU and GPU paths, and the input
//! preparation of a 4K frame (what `engine/tests/resample.rs` used to print).

use std::time::{Duration, Instant};

use sam2_engine::matte::{ActiveDevice, MatteDevice, MatteUpsampler};
use sam2_engine::resample::{BilinearResize, sam2_input};

use crate::BoxResult;

pub const SIZES: [(usize, usize); 2] = [(1920, 1080), (3840, 2160)];
const IN: usize = 256;

/// Median of `runs` timings of `work`, after one warm-up call.
pub fn median_of<T>(runs: usize, mut work: impl FnMut() -> T) -> Duration {
    std::hint::black_box(work());
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(work());
            start.elapsed()
        })
        .collect();
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Smooth logits with an object in the middle, as a mask decoder makes them.
fn logits() -> Vec<f32> {
    (0..IN * IN)
        .map(|i| {
            let (x, y) = ((i % IN) as f32 - 128.0, (i / IN) as f32 - 128.0);
            12.0 - (x * x + y * y).sqrt() / 4.0 + (i as f32 * 0.37).sin()
        })
        .collect()
}

/// A median time per output size `(width, height)`.
pub type Timings = Vec<((usize, usize), Duration)>;

#[derive(Debug, Clone)]
pub struct Upsampling {
    /// Per output size: the engine's CPU path (`MatteUpsampler`, a fresh buffer per frame).
    pub cpu: Timings,
    /// Per output size: the CPU kernel with its tables and output buffer reused.
    pub cpu_reused: Timings,
    /// Per output size: the GPU path (upload, shader, readback), or why there is none.
    pub gpu: Result<Timings, String>,
    /// The GPU adapter, and whether it is a software renderer.
    pub gpu_name: Option<(String, bool)>,
    /// `sam2_input` of a 3840×2160 frame to 1024².
    pub input_4k: Duration,
}

pub fn run(runs: usize) -> BoxResult<Upsampling> {
    let src = logits();
    let mut cpu_path = MatteUpsampler::new(MatteDevice::Cpu)?;
    let mut cpu = Vec::new();
    let mut cpu_reused = Vec::new();
    for (w, h) in SIZES {
        cpu.push((
            (w, h),
            median_of(runs, || cpu_path.upsample(&src, IN, IN, w, h)),
        ));
        let plan = BilinearResize::new(IN, IN, w, h);
        let mut out = vec![0.0f32; w * h];
        cpu_reused.push(((w, h), median_of(runs, || plan.apply_into(&src, &mut out))));
    }
    let (gpu, gpu_name) = match MatteUpsampler::new(MatteDevice::Gpu) {
        Ok(mut gpu_path) => {
            let name = match gpu_path.active() {
                ActiveDevice::Gpu(info) => {
                    Some((format!("{} ({})", info.name, info.driver), info.software))
                }
                ActiveDevice::Cpu => None,
            };
            let mut times = Vec::new();
            let mut failure = None;
            for (w, h) in SIZES {
                if let Err(e) = gpu_path.upsample(&src, IN, IN, w, h) {
                    failure = Some(e.to_string());
                    break;
                }
                times.push((
                    (w, h),
                    median_of(runs, || gpu_path.upsample(&src, IN, IN, w, h)),
                ));
            }
            (failure.map_or(Ok(times), Err), name)
        }
        Err(e) => (Err(e.to_string()), None),
    };
    let frame: Vec<u8> = (0..3840 * 2160 * 3)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mean = [0.485, 0.456, 0.406];
    let std = [0.229, 0.224, 0.225];
    let input_4k = median_of(3, || sam2_input(&frame, 3840, 2160, 1024, mean, std));
    Ok(Upsampling {
        cpu,
        cpu_reused,
        gpu,
        gpu_name,
        input_4k,
    })
}
