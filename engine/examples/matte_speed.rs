//! Prints how long upsampling a 256×256 mask takes to HD and 4K on the CPU (one thread) and the
//! GPU, and how long the finishing steps take at 4K. Run it optimized:
//!
//! ```sh
//! cargo run --release -p sam2-engine --example matte_speed
//! ```
//!
//! On a machine whose only Vulkan driver is lavapipe the "GPU" runs on the CPU, so its numbers
//! say nothing about a real GPU.

use std::time::{Duration, Instant};

use sam2_engine::matte::{self, GpuUpsampler, MatteSettings};

/// Median of `runs` timings of `work`, after one warm-up call.
fn median<T>(runs: usize, mut work: impl FnMut() -> T) -> Duration {
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

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1e3)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const RUNS: usize = 15;
    let (in_w, in_h) = (256, 256);
    // Smooth logits with an object in the middle, as a mask decoder makes them.
    let src: Vec<f32> = (0..in_w * in_h)
        .map(|i| {
            let (x, y) = ((i % in_w) as f32 - 128.0, (i / in_w) as f32 - 128.0);
            12.0 - (x * x + y * y).sqrt() / 4.0 + (i as f32 * 0.37).sin()
        })
        .collect();
    let start = Instant::now();
    let opened = GpuUpsampler::new();
    println!("Opening the GPU upsampler: {}", ms(start.elapsed()));
    let mut gpu = match opened {
        Ok(gpu) => {
            println!("GPU: {:?}", gpu.info());
            Some(gpu)
        }
        Err(error) => {
            println!("No GPU: {error}");
            None
        }
    };

    for (out_w, out_h) in [(1920, 1080), (3840, 2160)] {
        println!("\n{in_w}×{in_h} → {out_w}×{out_h}, median of {RUNS}:");
        let mut reused = vec![0.0_f32; out_w * out_h];
        let cpu_into = median(RUNS, || {
            matte::upsample_bilinear_into(&src, in_w, in_h, &mut reused, out_w, out_h)
        });
        let cpu_fresh = median(RUNS, || {
            matte::upsample_bilinear(&src, in_w, in_h, out_w, out_h)
        });
        println!("  CPU, one thread, into a reused buffer {}", ms(cpu_into));
        println!("  CPU, one thread, fresh Vec            {}", ms(cpu_fresh));
        if let Some(gpu) = gpu.as_mut() {
            let on_gpu = median(RUNS, || gpu.upsample(&src, in_w, in_h, out_w, out_h));
            println!("  GPU (upload + shader + readback)      {}", ms(on_gpu));
        }
    }

    let (w, h) = (3840, 2160);
    let logits = matte::upsample_bilinear(&src, in_w, in_h, w, h)?;
    println!("\nFinishing at {w}×{h}, median of 5:");
    let steps = [
        ("hard threshold (default)", MatteSettings::default()),
        (
            "softness 0.5",
            MatteSettings {
                softness: 0.5,
                ..Default::default()
            },
        ),
        (
            "holes + specks < 500 px",
            MatteSettings {
                fill_holes_below: 500,
                remove_specks_below: 500,
                ..Default::default()
            },
        ),
        (
            "expand 10 px",
            MatteSettings {
                expand: 10,
                ..Default::default()
            },
        ),
        (
            "feather 20 px",
            MatteSettings {
                feather: 20.0,
                ..Default::default()
            },
        ),
    ];
    for (name, settings) in steps {
        let t = median(5, || matte::finish(&logits, w, h, &settings));
        println!("  {name:<28} {}", ms(t));
    }
    let matte = matte::finish(&logits, w, h, &MatteSettings::default())?;
    println!(
        "  {:<28} {}",
        "to u8",
        ms(median(5, || matte::to_u8(&matte)))
    );
    println!(
        "  {:<28} {}",
        "to u16",
        ms(median(5, || matte::to_u16(&matte)))
    );
    Ok(())
}
