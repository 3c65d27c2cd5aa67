//! The matte stage: bilinear upsampling on the CPU and the GPU (wgpu; lavapipe on CI), and the
//! finishing steps.
//!
//! The GPU tests need a Vulkan adapter. Where there is none they say so loudly and check the CPU
//! path alone; CI sets `SAM2_REQUIRE_GPU_ADAPTER=1` so that a missing adapter fails there.

use sam2_engine::matte::{
    self, ActiveDevice, GpuUpsampler, MatteDevice, MatteError, MatteSettings, MatteUpsampler,
};

/// A small deterministic generator (SplitMix64), so the tests need no `rand`.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }

    /// Logits as SAM 2 makes them: mostly within ±20.
    fn logits(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform(-20.0, 20.0)).collect()
    }
}

/// PyTorch's bilinear, align_corners=False, transcribed pixel by pixel from its CPU kernel
/// (`compute_source_index_and_lambda` and the generic kernel's 2-tap interpolation), in f32, with
/// the fused multiply-adds its x86-64 build compiles `x0 * w0 + x1 * w1` into. PyTorch uses this
/// kernel for one-channel outputs with `out_w + out_h > 128` (smaller ones take its channels-last
/// kernel, which rounds differently by an ulp or so).
fn torch_reference(src: &[f32], in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> Vec<f32> {
    let index_and_lambda = |dst: usize, in_size: usize, out_size: usize| {
        if in_size == out_size {
            return (dst, dst, 1.0_f32, 0.0_f32);
        }
        let scale = in_size as f32 / out_size as f32;
        let real = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (real.floor() as usize).min(in_size - 1);
        let l1 = (real - i0 as f32).clamp(0.0, 1.0);
        let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
        (i0, i1, 1.0 - l1, l1)
    };
    let mut out = Vec::with_capacity(out_w * out_h);
    for y in 0..out_h {
        let (y0, y1, h0, h1) = index_and_lambda(y, in_h, out_h);
        for x in 0..out_w {
            let (x0, x1, w0, w1) = index_and_lambda(x, in_w, out_w);
            let at = |yy: usize, xx: usize| src.get(yy * in_w + xx).copied().unwrap_or(f32::NAN);
            let t0 = at(y0, x0).mul_add(w0, at(y0, x1) * w1);
            let t1 = at(y1, x0).mul_add(w0, at(y1, x1) * w1);
            out.push(t0.mul_add(h0, t1 * h1));
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The sizes the GPU and CPU must agree on: SAM 2's 64² (the shrunk test model) and 256² mask
/// sizes to the fixture clips' and HD frames, plus odd, shrinking and equal sizes.
const CASES: &[(usize, usize, usize, usize)] = &[
    (64, 64, 320, 180),
    (256, 256, 1920, 1080),
    (37, 23, 101, 67),
    (256, 256, 1279, 719),
    (64, 64, 64, 64),
    (100, 50, 33, 17),
    (1, 1, 5, 3),
    (3, 7, 1, 1),
];

// ---- CPU path ----

#[test]
fn cpu_upsample_2x2_to_4x4_matches_hand_computed_values() {
    let out = matte::upsample_bilinear(&[1.0, 2.0, 3.0, 4.0], 2, 2, 4, 4).unwrap();
    #[rustfmt::skip]
    let expected = [
        1.0, 1.25, 1.75, 2.0,
        1.5, 1.75, 2.25, 2.5,
        2.5, 2.75, 3.25, 3.5,
        3.0, 3.25, 3.75, 4.0,
    ];
    assert_eq!(out, expected);
}

#[test]
fn cpu_upsample_3x3_to_7x5_matches_hand_computed_values() {
    // Source coordinates, by hand: x = max(0, 3/7·(i + ½) − ½) = 0, 1/7, 4/7, 1, 10/7, 13/7, 16/7
    // (the last clamped to pixel 2), y = max(0, 3/5·(j + ½) − ½) = 0, 0.4, 1, 1.6, 2.2 (clamped).
    // The values below are the exact bilinear blends, as fractions.
    let src = [1.0, 4.0, 2.0, 0.0, 9.0, 3.0, 5.0, 7.0, 8.0];
    let out = matte::upsample_bilinear(&src, 3, 3, 7, 5).unwrap();
    #[rustfmt::skip]
    let expected: [f64; 35] = [
        1.0,  10.0 / 7.0,   19.0 / 7.0,   4.0, 22.0 / 7.0,   16.0 / 7.0,   2.0,
        0.6,  48.0 / 35.0, 129.0 / 35.0,  6.0, 156.0 / 35.0, 102.0 / 35.0, 2.4,
        0.0,   9.0 / 7.0,   36.0 / 7.0,   9.0, 45.0 / 7.0,   27.0 / 7.0,   3.0,
        3.0, 129.0 / 35.0, 201.0 / 35.0,  7.8, 246.0 / 35.0, 219.0 / 35.0, 6.0,
        5.0,  37.0 / 7.0,   43.0 / 7.0,   7.0, 52.0 / 7.0,   55.0 / 7.0,   8.0,
    ];
    for (i, (&got, &want)) in out.iter().zip(&expected).enumerate() {
        assert!(
            (f64::from(got) - want).abs() < 1e-5,
            "pixel {i}: got {got}, want {want}"
        );
    }
}

#[test]
fn cpu_upsample_matches_the_torch_kernel_transcription() {
    let mut rng = Rng(1);
    for &(in_w, in_h, out_w, out_h) in CASES.iter().chain(&[(256, 256, 3840, 2160)]) {
        let src = rng.logits(in_w * in_h);
        let cpu = matte::upsample_bilinear(&src, in_w, in_h, out_w, out_h).unwrap();
        let reference = torch_reference(&src, in_w, in_h, out_w, out_h);
        if out_w + out_h > 128 {
            let differing = cpu
                .iter()
                .zip(&reference)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differing, 0,
                "{in_w}×{in_h} → {out_w}×{out_h}: {differing} pixels differ from the reference"
            );
        } else {
            let diff = max_abs_diff(&cpu, &reference);
            assert!(diff <= 1e-5, "{in_w}×{in_h} → {out_w}×{out_h}: {diff}");
        }
    }
}

#[test]
fn cpu_upsample_into_reuses_a_buffer_and_checks_its_size() {
    let src = Rng(2).logits(16 * 16);
    let mut out = vec![f32::NAN; 40 * 30];
    matte::upsample_bilinear_into(&src, 16, 16, &mut out, 40, 30).unwrap();
    assert_eq!(out, matte::upsample_bilinear(&src, 16, 16, 40, 30).unwrap());
    let mut short = vec![0.0; 10];
    assert!(matches!(
        matte::upsample_bilinear_into(&src, 16, 16, &mut short, 40, 30),
        Err(MatteError::LengthMismatch { .. })
    ));
}

#[test]
fn bad_sizes_are_typed_errors_with_sentences() {
    let err = matte::upsample_bilinear(&[0.0; 15], 4, 4, 8, 8).unwrap_err();
    assert_eq!(
        err,
        MatteError::LengthMismatch {
            what: "low-resolution mask",
            width: 4,
            height: 4,
            expected: 16,
            found: 15
        }
    );
    assert!(err.to_string().ends_with('.'));
    assert!(matches!(
        matte::upsample_bilinear(&[], 0, 4, 8, 8),
        Err(MatteError::EmptySize { .. })
    ));
    assert!(matches!(
        matte::upsample_bilinear(&[0.0; 16], 4, 4, 0, 8),
        Err(MatteError::EmptySize { .. })
    ));
    assert!(matches!(
        matte::upsample_bilinear(&[0.0; 16], 4, 4, usize::MAX, 2),
        Err(MatteError::TooManyPixels { .. })
    ));
    let mut cpu = MatteUpsampler::new(MatteDevice::Cpu).unwrap();
    assert!(matches!(
        cpu.upsample(&[0.0; 3], 2, 2, 4, 4),
        Err(MatteError::LengthMismatch { .. })
    ));
}

// ---- GPU path ----

/// Says something on the real stderr: the test harness captures `eprintln!` of passing tests,
/// and a skipped GPU check must be seen in a plain `cargo test` run.
fn shout(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!! {message}\n");
}

/// Opens the GPU, or says loudly why the GPU half of a test is skipped.
fn gpu_or_say_why(test: &str) -> Option<GpuUpsampler> {
    match GpuUpsampler::new() {
        Ok(gpu) => Some(gpu),
        Err(error) => {
            shout(&format!(
                "{test}: NO GPU ADAPTER, so the GPU path is NOT tested here, only the CPU path: {error}"
            ));
            None
        }
    }
}

#[test]
fn gpu_adapter_is_present_when_required() {
    let required = std::env::var("SAM2_REQUIRE_GPU_ADAPTER").is_ok_and(|v| v == "1");
    match GpuUpsampler::new() {
        Ok(gpu) => eprintln!("GPU adapter: {:?}", gpu.info()),
        Err(error) if required => {
            panic!("SAM2_REQUIRE_GPU_ADAPTER=1 but no GPU adapter could be opened: {error}")
        }
        Err(error) => shout(&format!(
            "No GPU adapter ({error}); set SAM2_REQUIRE_GPU_ADAPTER=1 to make this a failure."
        )),
    }
}

#[test]
fn gpu_and_cpu_upsampling_agree() {
    let mut rng = Rng(3);
    let mut gpu = gpu_or_say_why("gpu_and_cpu_upsampling_agree");
    for &(in_w, in_h, out_w, out_h) in CASES {
        let src = rng.logits(in_w * in_h);
        let cpu = matte::upsample_bilinear(&src, in_w, in_h, out_w, out_h).unwrap();
        assert_eq!(cpu.len(), out_w * out_h);
        let Some(gpu) = gpu.as_mut() else {
            // Without a GPU, the CPU path is still held to the PyTorch transcription.
            assert_eq!(cpu, torch_reference(&src, in_w, in_h, out_w, out_h));
            continue;
        };
        let on_gpu = gpu.upsample(&src, in_w, in_h, out_w, out_h).unwrap();
        let diff = max_abs_diff(&cpu, &on_gpu);
        assert!(
            diff <= 1e-5,
            "{in_w}×{in_h} → {out_w}×{out_h}: GPU and CPU logits differ by {diff}"
        );
        let mask_mismatches = cpu
            .iter()
            .zip(&on_gpu)
            .filter(|(c, g)| (**c > 0.0) != (**g > 0.0) && c.abs() >= 1e-5)
            .count();
        assert_eq!(
            mask_mismatches, 0,
            "{in_w}×{in_h} → {out_w}×{out_h}: hard masks differ"
        );
        let differing = cpu
            .iter()
            .zip(&on_gpu)
            .filter(|(c, g)| c.to_bits() != g.to_bits())
            .count();
        eprintln!(
            "{in_w}×{in_h} → {out_w}×{out_h}: max |GPU − CPU| = {diff:e}, {differing} of {} \
             pixels not bit-identical",
            cpu.len()
        );
    }
}

#[test]
fn gpu_reuses_its_buffers_across_calls_and_sizes() {
    let Some(mut gpu) = gpu_or_say_why("gpu_reuses_its_buffers_across_calls_and_sizes") else {
        return;
    };
    let mut rng = Rng(4);
    // Same size twice (cached buffers, new contents), another size, then back.
    for &(in_w, in_h, out_w, out_h) in &[
        (16, 16, 50, 40),
        (16, 16, 50, 40),
        (8, 8, 9, 9),
        (16, 16, 50, 40),
    ] {
        let src = rng.logits(in_w * in_h);
        let cpu = matte::upsample_bilinear(&src, in_w, in_h, out_w, out_h).unwrap();
        let on_gpu = gpu.upsample(&src, in_w, in_h, out_w, out_h).unwrap();
        assert!(max_abs_diff(&cpu, &on_gpu) <= 1e-5);
    }
    assert!(matches!(
        gpu.upsample(&[0.0; 3], 2, 2, 4, 4),
        Err(MatteError::LengthMismatch { .. })
    ));
}

#[test]
fn matte_devices_choose_as_documented() {
    let src = Rng(5).logits(8 * 8);
    // The upsampler rounds its input to the matte precision first (what a track cache stores).
    let expected =
        matte::upsample_bilinear(&matte::precision::round_logits(&src), 8, 8, 30, 20).unwrap();
    assert_ne!(
        matte::upsample_bilinear(&src, 8, 8, 30, 20).unwrap(),
        expected,
        "the rounding is visible"
    );

    let mut cpu = MatteUpsampler::new(MatteDevice::Cpu).unwrap();
    assert_eq!(cpu.active(), ActiveDevice::Cpu);
    assert_eq!(cpu.upsample(&src, 8, 8, 30, 20).unwrap(), expected);

    // Auto never fails, and passes over a software renderer such as lavapipe.
    let mut auto = MatteUpsampler::new(MatteDevice::Auto).unwrap();
    assert!(max_abs_diff(&auto.upsample(&src, 8, 8, 30, 20).unwrap(), &expected) <= 1e-5);
    if let ActiveDevice::Gpu(info) = auto.active() {
        assert!(!info.software, "Auto chose the software renderer {info:?}");
    }

    match MatteUpsampler::new(MatteDevice::Gpu) {
        Ok(mut gpu) => {
            assert!(matches!(gpu.active(), ActiveDevice::Gpu(_)));
            assert!(max_abs_diff(&gpu.upsample(&src, 8, 8, 30, 20).unwrap(), &expected) <= 1e-5);
        }
        Err(error) => {
            shout(&format!(
                "matte_devices_choose_as_documented: NO GPU ADAPTER: {error}"
            ));
            assert!(matches!(error, MatteError::NoAdapter { .. }));
        }
    }
}

#[test]
fn matte_device_is_serde_friendly() {
    assert_eq!(
        serde_json::to_string(&MatteDevice::Auto).unwrap(),
        "\"auto\""
    );
    let device: MatteDevice = serde_json::from_str("\"gpu\"").unwrap();
    assert_eq!(device, MatteDevice::Gpu);
    assert_eq!(MatteDevice::default(), MatteDevice::Auto);
}

// ---- Finishing ----

/// Builds a `w × h` matte from rows of '#' (1) and '.' (0).
fn picture(rows: &[&str]) -> (Vec<f32>, usize, usize) {
    let w = rows.first().map_or(0, |r| r.len());
    let values = rows
        .iter()
        .flat_map(|r| r.chars().map(|c| if c == '#' { 1.0 } else { 0.0 }))
        .collect();
    (values, w, rows.len())
}

fn draw(values: &[f32], w: usize) -> Vec<String> {
    values
        .chunks(w)
        .map(|r| r.iter().map(|&v| if v > 0.5 { '#' } else { '.' }).collect())
        .collect()
}

#[test]
fn default_settings_are_sam2s_hard_mask() {
    let logits = [-3.0, -1e-7, 0.0, 1e-7, 5.0, f32::NAN];
    let settings = MatteSettings::default();
    assert_eq!(
        matte::finish(&logits, 6, 1, &settings).unwrap(),
        [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    );
    assert_eq!(
        matte::threshold(&logits, 2.0),
        [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    );
}

#[test]
fn softness_one_is_the_models_probability() {
    let logits = [-4.0_f32, -1.0, 0.0, 1.0, 4.0];
    let soft = matte::soften(&logits, 0.0, 1.0);
    for (&l, &a) in logits.iter().zip(&soft) {
        assert!((a - 1.0 / (1.0 + (-l).exp())).abs() < 1e-6);
    }
    // Smaller softness, crisper edge; threshold shifts the half-way point.
    let crisp = matte::soften(&logits, 0.0, 0.25);
    assert!(crisp[3] > soft[3] && crisp[1] < soft[1]);
    assert_eq!(matte::soften(&logits, 1.0, 1.0)[3], 0.5);
    assert_eq!(
        matte::soften(&logits, 0.0, 0.0),
        matte::threshold(&logits, 0.0)
    );
}

#[test]
fn specks_are_removed_below_their_size_diagonals_included() {
    let (m, w, h) = picture(&[
        "#.........",
        ".#...####.",
        ".....####.",
        "..#..####.",
        ".....####.",
        "......#...",
    ]);
    let out = matte::remove_specks(&m, w, h, 3).unwrap();
    // The diagonal pair is one island of 2 (< 3): gone. The lone pixel: gone. The block, with
    // the pixel touching it diagonally, stays.
    assert_eq!(
        draw(&out, w),
        [
            "..........",
            ".....####.",
            ".....####.",
            ".....####.",
            ".....####.",
            "......#...",
        ]
    );
    assert_eq!(matte::remove_specks(&m, w, h, 2).unwrap()[0], 1.0);
    assert_eq!(matte::remove_specks(&m, w, h, 0).unwrap(), m);
}

#[test]
fn holes_are_filled_below_their_size() {
    let (m, w, h) = picture(&[
        "##########",
        "#.####...#",
        "######...#",
        "######...#",
        "##########",
    ]);
    let out = matte::fill_holes(&m, w, h, 9).unwrap();
    assert_eq!(
        draw(&out, w),
        [
            "##########",
            "######...#",
            "######...#",
            "######...#",
            "##########",
        ]
    );
    assert_eq!(matte::fill_holes(&m, w, h, 10).unwrap(), vec![1.0; w * h]);
}

#[test]
fn speck_removal_takes_a_soft_speck_with_its_fringe() {
    // A soft blob of 3 pixels above 0.5 with a faint fringe around it, far from anything else.
    let mut m = vec![0.0_f32; 9 * 9];
    for (i, v) in m.iter_mut().enumerate() {
        let (x, y) = ((i % 9) as f32 - 4.0, (i / 9) as f32 - 4.0);
        *v = (1.0 - (x * x + y * y).sqrt() / 3.0).max(0.0);
    }
    let out = matte::remove_specks(&m, 9, 9, 50).unwrap();
    assert!(out.iter().all(|&v| v == 0.0));
}

#[test]
fn expand_and_choke_are_square_min_max_filters() {
    let (m, w, h) = picture(&[
        ".......", ".......", ".......", "...#...", ".......", ".......",
    ]);
    assert_eq!(
        draw(&matte::expand(&m, w, h, 2).unwrap(), w),
        [
            ".......", ".#####.", ".#####.", ".#####.", ".#####.", ".#####."
        ]
    );
    let (m, w, h) = picture(&["#####..", "#####..", "#####..", "#####..", "#####.."]);
    // Choking by 1: the frame's edge does not eat into the matte; the inner edge moves by 1.
    assert_eq!(
        draw(&matte::expand(&m, w, h, -1).unwrap(), w),
        ["####...", "####...", "####...", "####...", "####..."]
    );

    // On soft values, against a brute-force filter, for several radii and shapes.
    let mut rng = Rng(6);
    for &(w, h, r) in &[(17, 11, 1), (17, 11, 3), (5, 30, 4), (9, 9, 20), (1, 7, 2)] {
        let m: Vec<f32> = (0..w * h).map(|_| rng.uniform(0.0, 1.0)).collect();
        for pixels in [r, -r] {
            let fast = matte::expand(&m, w, h, pixels).unwrap();
            let r = r as isize;
            for y in 0..h as isize {
                for x in 0..w as isize {
                    let mut want = if pixels > 0 { 0.0_f32 } else { 1.0 };
                    for yy in (y - r).max(0)..=(y + r).min(h as isize - 1) {
                        for xx in (x - r).max(0)..=(x + r).min(w as isize - 1) {
                            let v = m[(yy * w as isize + xx) as usize];
                            want = if pixels > 0 { want.max(v) } else { want.min(v) };
                        }
                    }
                    assert_eq!(
                        fast[(y * w as isize + x) as usize],
                        want,
                        "{w}×{h} r {pixels}"
                    );
                }
            }
        }
    }
}

#[test]
fn feather_is_a_gaussian_of_half_the_radius() {
    let (w, h) = (101, 101);
    let mut impulse = vec![0.0_f32; w * h];
    impulse[50 * w + 50] = 1.0;
    for radius in [2.0_f32, 6.0, 13.5] {
        let blurred = matte::feather(&impulse, w, h, radius).unwrap();
        let total: f32 = blurred.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "mass {total}");
        // The variance along x of the kernel is σ² = (radius / 2)², within the three-box
        // approximation's rounding of widths.
        let var: f32 = blurred
            .iter()
            .enumerate()
            .map(|(i, v)| v * ((i % w) as f32 - 50.0).powi(2))
            .sum();
        let sigma = radius / 2.0;
        assert!(
            (var.sqrt() - sigma).abs() / sigma < 0.15,
            "radius {radius}: σ {} ≠ {sigma}",
            var.sqrt()
        );
        // Symmetric.
        assert!((blurred[50 * w + 45] - blurred[50 * w + 55]).abs() < 1e-6);
        assert!((blurred[45 * w + 50] - blurred[55 * w + 50]).abs() < 1e-6);
    }
    // A solid matte stays solid up to the frame's edge; a step's edge crosses ½ where it was.
    let solid = vec![1.0_f32; 20 * 10];
    assert!(
        matte::feather(&solid, 20, 10, 8.0)
            .unwrap()
            .iter()
            .all(|&v| (v - 1.0).abs() < 1e-6)
    );
    let step: Vec<f32> = (0..40 * 3)
        .map(|i| if i % 40 < 20 { 1.0 } else { 0.0 })
        .collect();
    let soft = matte::feather(&step, 40, 3, 6.0).unwrap();
    assert!(soft[19] > 0.5 && soft[20] < 0.5 && soft[10] > 0.95 && soft[30] < 0.05);
    assert_eq!(matte::feather(&step, 40, 3, 0.0).unwrap(), step);
}

#[test]
fn huge_feathers_take_no_longer_and_are_bounded() {
    // `--feather 1e9` used to lay out a billion padding pixels per row and ran for hours. Now
    // the cost does not depend on the radius, and radii past the documented bound are that bound.
    let (w, h) = (64, 48);
    let matte: Vec<f32> = (0..w * h)
        .map(|i| {
            if (i % w) < 20 && (i / w) > 10 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let start = std::time::Instant::now();
    let bounded = matte::feather(&matte, w, h, matte::MAX_FEATHER_RADIUS).unwrap();
    for radius in [1e9_f32, 3.0e38, f32::INFINITY] {
        let huge = matte::feather(&matte, w, h, radius);
        if radius.is_finite() {
            assert_eq!(huge.unwrap(), bounded, "radius {radius}");
        }
    }
    // A 2²⁴-pixel feather over a 64-pixel frame is flat to well within an 8-bit step, a grey
    // between the matte's values.
    let (lo, hi) = bounded
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(hi - lo < 1e-3, "{lo}..{hi}");
    assert!(lo > 0.0 && hi < 1.0, "{lo}..{hi}");
    // Seconds for a 64×48 frame would mean the cost still grows with the radius.
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    // Settings with a huge feather are valid and finish the same way.
    let settings = MatteSettings {
        feather: 1e9,
        ..Default::default()
    };
    let logits: Vec<f32> = matte
        .iter()
        .map(|&m| if m > 0.5 { 8.0 } else { -8.0 })
        .collect();
    assert_eq!(matte::finish(&logits, w, h, &settings).unwrap(), bounded);
}

#[test]
fn finish_runs_every_step_in_order() {
    // Logits: a 12×12 object with a 1-pixel hole, and a 1-pixel speck far away.
    let (w, h) = (40, 30);
    let mut logits = vec![-8.0_f32; w * h];
    for y in 5..17 {
        for x in 5..17 {
            logits[y * w + x] = 8.0;
        }
    }
    logits[10 * w + 10] = -8.0;
    logits[25 * w + 35] = 8.0;
    let settings = MatteSettings {
        threshold: 0.0,
        softness: 0.5,
        fill_holes_below: 4,
        remove_specks_below: 4,
        expand: 2,
        feather: 2.0,
    };
    let out = matte::finish(&logits, w, h, &settings).unwrap();
    assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(out[10 * w + 10] > 0.99, "hole filled");
    assert!(out[25 * w + 35] < 1e-3, "speck removed");
    // Grown by 2: pixel 3 (two outside the object) is about half after the feather, pixel 1 faint.
    assert!(
        out[10 * w + 3] > 0.3 && out[10 * w + 3] < 0.8,
        "{}",
        out[10 * w + 3]
    );
    assert!(out[10 * w + 1] < 0.2);

    for bad in [
        MatteSettings {
            softness: -1.0,
            ..Default::default()
        },
        MatteSettings {
            feather: f32::NAN,
            ..Default::default()
        },
        MatteSettings {
            threshold: f32::INFINITY,
            ..Default::default()
        },
    ] {
        let err = matte::finish(&logits, w, h, &bad).unwrap_err();
        assert!(matches!(err, MatteError::InvalidSetting { .. }), "{err}");
    }
    assert!(matches!(
        matte::finish(&logits, w, h + 1, &settings),
        Err(MatteError::LengthMismatch { .. })
    ));
}

#[test]
fn matte_settings_are_serde_friendly() {
    let settings: MatteSettings = serde_json::from_str("{}").unwrap();
    assert_eq!(settings, MatteSettings::default());
    let settings = MatteSettings {
        softness: 0.5,
        expand: -3,
        remove_specks_below: 100,
        ..Default::default()
    };
    let json = serde_json::to_string(&settings).unwrap();
    assert_eq!(
        serde_json::from_str::<MatteSettings>(&json).unwrap(),
        settings
    );
    assert!(serde_json::from_str::<MatteSettings>("{\"feathr\": 2}").is_err());
}

#[test]
fn mattes_convert_to_8_and_16_bits() {
    let m = [0.0, 1.0, 0.5, 2.0, -1.0, f32::NAN, 1.0 / 255.0];
    assert_eq!(matte::to_u8(&m), [0, 255, 128, 255, 0, 0, 1]);
    assert_eq!(matte::to_u16(&m), [0, 65535, 32768, 65535, 0, 0, 257]);
}

#[test]
fn upsamplers_can_move_between_render_threads() {
    // OpenFX hosts render on threads of their own; the plugin keeps an upsampler behind a mutex.
    fn send_sync<T: Send + Sync>() {}
    send_sync::<MatteUpsampler>();
    send_sync::<GpuUpsampler>();
}
