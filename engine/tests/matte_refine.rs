//! Refine Edges (issue 13): the guided filter of the upsampled mask probability with the frame as
//! the guide, on the CPU; its place in the pipeline (off is today's output bit for bit); and, on
//! a ground-truth clip of tests/fixtures/edges, that it moves the matte's edge onto the image's.

use std::path::PathBuf;

use sam2_engine::mask_prompt::{mask_as_logits, to_model_size};
use sam2_engine::matte::{
    self, EdgeRefinement, GpuUpsampler, Guide, GuideChannels, MatteDevice, MatteError,
    MatteSettings, MatteUpsampler, refine_alpha, refine_edges,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A frame split by a vertical colour edge at `edge` (dark red left, light blue right), and
/// 256-wide logits of a mask whose edge is `offset` pixels to the right of it, upsampled: the
/// situation of a SAM 2 mask whose coarse edge misses the object's.
fn split_frame(w: usize, h: usize, edge: usize) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(w * h * 3);
    for _ in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(if x < edge {
                &[150, 40, 30]
            } else {
                &[60, 110, 200]
            });
        }
    }
    rgb
}

fn coarse_logits(w: usize, h: usize, edge: f32) -> Vec<f32> {
    // A soft ramp, as bilinear upsampling of a 256² mask leaves it: ±10 over about 8 pixels.
    (0..w * h)
        .map(|i| {
            let x = (i % w) as f32 + 0.5;
            ((edge - x) * 2.5).clamp(-10.0, 10.0)
        })
        .collect()
}

fn first_background(row: &[f32]) -> usize {
    row.iter().position(|&l| l <= 0.0).unwrap_or(row.len())
}

#[test]
fn the_edge_moves_onto_the_guides_edge() {
    let (w, h) = (320, 48);
    let rgb = split_frame(w, h, 150);
    let guide = Guide {
        rgb: &rgb,
        width: w,
        height: h,
    };
    for channels in [GuideChannels::Colour, GuideChannels::Luminance] {
        let settings = EdgeRefinement {
            guide: channels,
            radius: Some(12.0),
            ..Default::default()
        };
        // The coarse edge is 5 pixels off, either way.
        for coarse in [145.0, 155.0] {
            let refined = refine_edges(&coarse_logits(w, h, coarse), guide, &settings, 2).unwrap();
            // Within a pixel of the image's edge (the filter is linear in the guide over a
            // window, so the pixel next to the edge can fall either way), from 5 off.
            for row in refined.chunks_exact(w) {
                let edge = first_background(row);
                assert!(
                    (149..=151).contains(&edge),
                    "{channels:?}, coarse edge at {coarse}: refined at {edge}"
                );
            }
            // Far from the edge the matte is the model's: solid on either side.
            let alpha = refine_alpha(&coarse_logits(w, h, coarse), guide, &settings, 1).unwrap();
            assert!(alpha[w * 20 + 10] > 0.99 && alpha[w * 20 + 300] < 0.01);
        }
    }
}

#[test]
fn a_flat_guide_leaves_the_edge_where_it_was() {
    let (w, h) = (200, 40);
    let rgb = vec![128u8; w * h * 3];
    let guide = Guide {
        rgb: &rgb,
        width: w,
        height: h,
    };
    let refined = refine_edges(
        &coarse_logits(w, h, 90.0),
        guide,
        &EdgeRefinement::default(),
        1,
    )
    .unwrap();
    for row in refined.chunks_exact(w) {
        let edge = first_background(row);
        assert!((89..=91).contains(&edge), "{edge}");
    }
}

#[test]
fn threads_do_not_change_the_result() {
    let (w, h) = (333, 211);
    let rgb: Vec<u8> = (0..w * h * 3)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let guide = Guide {
        rgb: &rgb,
        width: w,
        height: h,
    };
    let logits = coarse_logits(w, h, 170.0);
    let one = refine_edges(&logits, guide, &EdgeRefinement::default(), 1).unwrap();
    for threads in [2, 3, 0] {
        assert_eq!(
            one,
            refine_edges(&logits, guide, &EdgeRefinement::default(), threads).unwrap()
        );
    }
}

#[test]
fn off_is_todays_upsampling_bit_for_bit() {
    let (w, h) = (301, 170);
    let low: Vec<f32> = (0..64 * 64)
        .map(|i| ((i % 64) as f32 - 30.0) * 0.7 + ((i / 64) as f32 * 0.3).sin())
        .collect();
    let rgb = vec![0u8; w * h * 3];
    let guide = Guide {
        rgb: &rgb,
        width: w,
        height: h,
    };
    let mut up = MatteUpsampler::new(MatteDevice::Cpu).unwrap();
    let today = up.upsample(&low, 64, 64, w, h).unwrap();
    let off = up.upsample_refined(&low, 64, 64, guide, None).unwrap();
    assert_eq!(
        today.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        off.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let on = up
        .upsample_refined(&low, 64, 64, guide, Some(&EdgeRefinement::default()))
        .unwrap();
    assert_eq!(on.len(), w * h);
}

#[test]
fn bad_settings_and_sizes_are_typed_errors_with_sentences() {
    let rgb = vec![0u8; 10 * 10 * 3];
    let guide = Guide {
        rgb: &rgb,
        width: 10,
        height: 10,
    };
    let logits = vec![0.0; 100];
    let zero_eps = EdgeRefinement {
        epsilon: 0.0,
        ..Default::default()
    };
    let err = refine_edges(&logits, guide, &zero_eps, 1).unwrap_err();
    assert!(matches!(err, MatteError::InvalidSetting { .. }));
    assert!(err.to_string().contains("epsilon"), "{err}");
    let small_radius = EdgeRefinement {
        radius: Some(0.5),
        ..Default::default()
    };
    assert!(matches!(
        refine_edges(&logits, guide, &small_radius, 1),
        Err(MatteError::InvalidSetting { .. })
    ));
    let short = Guide {
        rgb: &rgb[..200],
        ..guide
    };
    let err = refine_edges(&logits, short, &EdgeRefinement::default(), 1).unwrap_err();
    assert!(matches!(err, MatteError::LengthMismatch { .. }), "{err}");
    assert!(matches!(
        refine_edges(&logits[..99], guide, &EdgeRefinement::default(), 1),
        Err(MatteError::LengthMismatch { .. })
    ));
}

#[test]
fn settings_are_serde_friendly_and_default_to_a_colour_guide() {
    let settings = EdgeRefinement::default();
    assert_eq!(settings.guide, GuideChannels::Colour);
    let json = serde_json::to_string(&settings).unwrap();
    assert_eq!(json, r#"{"guide":"colour","radius":null,"epsilon":0.0001}"#);
    let back: EdgeRefinement =
        serde_json::from_str(r#"{"guide":"luminance","radius":20}"#).unwrap();
    assert_eq!(back.guide, GuideChannels::Luminance);
    assert_eq!(back.radius, Some(20.0));
    assert_eq!(back.epsilon, matte::DEFAULT_EPSILON);
}

/// The boundary pixels of a hard mask (4-neighbourhood).
fn boundary(mask: &[bool], w: usize, h: usize) -> Vec<(usize, usize)> {
    let at = |x: usize, y: usize| mask.get(y * w + x).copied().unwrap_or(false);
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let m = at(x, y);
            if (x + 1 < w && at(x + 1, y) != m) || (y + 1 < h && at(x, y + 1) != m) {
                out.push((x, y));
            }
        }
    }
    out
}

/// The share of `a`'s boundary pixels within 2 pixels of `b`'s.
fn within_two(a: &[(usize, usize)], b: &[(usize, usize)], w: usize, h: usize) -> f64 {
    let mut near = vec![false; w * h];
    for &(x, y) in b {
        for yy in y.saturating_sub(2)..(y + 3).min(h) {
            for xx in x.saturating_sub(2)..(x + 3).min(w) {
                if let Some(v) = near.get_mut(yy * w + xx) {
                    *v = true;
                }
            }
        }
    }
    let hits = a
        .iter()
        .filter(|&&(x, y)| near.get(y * w + x).copied().unwrap_or(false))
        .count();
    hits as f64 / a.len().max(1) as f64
}

#[test]
fn on_a_real_photo_clip_the_edge_follows_the_ground_truth() {
    // tests/fixtures/edges: the cat's texture in a fur-edged silhouette over the astronaut.
    let dir = fixtures().join("edges");
    let coverage = image::open(dir.join("cat-over-astronaut-1080.png"))
        .unwrap()
        .to_luma8();
    let (w, h) = (coverage.width() as usize, coverage.height() as usize);
    let fg = image::open(fixtures().join("photos/chelsea.png"))
        .unwrap()
        .to_rgb8();
    let bg = image::open(fixtures().join("photos/astronaut_crop.png"))
        .unwrap()
        .to_rgb8();
    let filter = image::imageops::FilterType::Triangle;
    let fg = image::imageops::resize(&fg, w as u32, h as u32, filter);
    let bg = image::imageops::resize(&bg, w as u32, h as u32, filter);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for (i, &c) in coverage.as_raw().iter().enumerate() {
        let a = f32::from(c) / 255.0;
        for k in 0..3 {
            let (f, b) = (
                f32::from(fg.as_raw()[i * 3 + k]),
                f32::from(bg.as_raw()[i * 3 + k]),
            );
            rgb.push((a * f + (1.0 - a) * b).round() as u8);
        }
    }
    let truth: Vec<bool> = coverage.as_raw().iter().map(|&c| c >= 128).collect();
    // The perfect mask as the 1024 model hands it over (add_mask → _use_mask_as_output).
    let low = mask_as_logits(&to_model_size(&truth, w, h, 1024), 1024, 20.0, -10.0);
    let guide = Guide {
        rgb: &rgb,
        width: w,
        height: h,
    };
    let mut up = MatteUpsampler::new(MatteDevice::Cpu).unwrap();
    let settings = MatteSettings::default();
    let mut score = |refinement: Option<&EdgeRefinement>| {
        let up_logits = up
            .upsample_refined(&low, 256, 256, guide, refinement)
            .unwrap();
        let matte = matte::finish(&up_logits, w, h, &settings).unwrap();
        let pred: Vec<bool> = matte.iter().map(|&a| a >= 0.5).collect();
        let (bp, bt) = (boundary(&pred, w, h), boundary(&truth, w, h));
        let (p, r) = (within_two(&bp, &bt, w, h), within_two(&bt, &bp, w, h));
        let inter = pred.iter().zip(&truth).filter(|(a, b)| **a && **b).count();
        let union = pred.iter().zip(&truth).filter(|(a, b)| **a || **b).count();
        (2.0 * p * r / (p + r), inter as f64 / union as f64)
    };
    let (f_before, iou_before) = score(None);
    let (f_after, iou_after) = score(Some(&EdgeRefinement::default()));
    eprintln!("F {f_before:.3} → {f_after:.3}, IoU {iou_before:.4} → {iou_after:.4}");
    assert!(f_after >= f_before + 0.1, "F {f_before} → {f_after}");
    assert!(iou_after >= iou_before, "IoU {iou_before} → {iou_after}");
}

/// Opens the GPU, or says loudly why the GPU half of a test is skipped (CI sets
/// `SAM2_REQUIRE_GPU_ADAPTER=1`, and then a missing adapter fails `tests/matte.rs`).
fn gpu_or_say_why(test: &str) -> Option<GpuUpsampler> {
    match GpuUpsampler::new() {
        Ok(gpu) => Some(gpu),
        Err(error) => {
            let required = std::env::var("SAM2_REQUIRE_GPU_ADAPTER").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{test}: no GPU adapter although one is required: {error}"
            );
            eprintln!("\n*** {test}: NO GPU ADAPTER, the GPU path is NOT tested: {error} ***\n");
            None
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

type Clip = (Vec<u8>, usize, usize, Vec<f32>);
type TestResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A clip of tests/fixtures/edges at one size, composited as `bench edges` composites it (its
/// manifest, clips.json): the frame's RGB bytes, its size and the perfect mask's 256² logits.
fn fixture_clip(name: &str, coverage_file: &str) -> TestResult<Clip> {
    let dir = fixtures().join("edges");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("clips.json"))?)?;
    let text = |v: &serde_json::Value, key: &str| -> TestResult<String> {
        Ok(v.get(key)
            .and_then(|s| s.as_str())
            .ok_or(format!("clips.json: no {key}"))?
            .to_owned())
    };
    let spec = manifest
        .get("clips")
        .and_then(|c| c.as_array())
        .and_then(|clips| clips.iter().find(|c| c.get("name") == Some(&name.into())))
        .ok_or(format!("clips.json: no clip {name}"))?;
    let photos = dir.join(text(&manifest, "photos")?);
    let coverage = image::open(dir.join(coverage_file))?.to_luma8();
    let (w, h) = (coverage.width(), coverage.height());
    let open = |key: &str| -> TestResult<image::RgbImage> {
        let photo = image::open(photos.join(text(spec, key)?))?.to_rgb8();
        Ok(image::imageops::resize(
            &photo,
            w,
            h,
            image::imageops::FilterType::Triangle,
        ))
    };
    let fg = open("foreground")?;
    let mut bg = open("background")?;
    if spec.get("background_mirrored") == Some(&true.into()) {
        image::imageops::flip_horizontal_in_place(&mut bg);
    }
    let mut rgb = Vec::with_capacity(coverage.as_raw().len() * 3);
    let pixels = fg.as_raw().chunks_exact(3).zip(bg.as_raw().chunks_exact(3));
    for (&c, (f, b)) in coverage.as_raw().iter().zip(pixels) {
        let a = f32::from(c) / 255.0;
        for (&f, &b) in f.iter().zip(b) {
            rgb.push((a * f32::from(f) + (1.0 - a) * f32::from(b)).round() as u8);
        }
    }
    let (w, h) = (w as usize, h as usize);
    let truth: Vec<bool> = coverage.as_raw().iter().map(|&c| c >= 128).collect();
    let low = mask_as_logits(&to_model_size(&truth, w, h, 1024), 1024, 20.0, -10.0);
    Ok((rgb, w, h, low))
}

/// The largest |CPU − GPU| of the refined probability, and of the refined logits compared as the
/// probability they stand for.
fn cpu_gpu_difference(
    gpu: &mut GpuUpsampler,
    (rgb, w, h, low): &Clip,
    side: usize,
    settings: &EdgeRefinement,
) -> TestResult<(f32, f32)> {
    let guide = Guide {
        rgb,
        width: *w,
        height: *h,
    };
    let upsampled = matte::upsample_bilinear(low, side, side, *w, *h)?;
    let worst = |a: &[f32], b: &[f32], f: fn(f32) -> f32| {
        a.iter()
            .zip(b)
            .map(|(a, b)| (f(*a) - f(*b)).abs())
            .fold(0.0f32, f32::max)
    };
    let cpu = refine_alpha(&upsampled, guide, settings, 2)?;
    let on_gpu = gpu.upsample_refined_alpha(low, side, side, guide, settings)?;
    let alpha = worst(&cpu, &on_gpu, |v| v);
    let cpu = refine_edges(&upsampled, guide, settings, 2)?;
    let on_gpu = gpu.upsample_refined(low, side, side, guide, settings)?;
    Ok((alpha, worst(&cpu, &on_gpu, sigmoid)))
}

/// The issue's bound, on the real photographs the bench scores (their grain and soft gradients are
/// what makes the colour guide's 3×3 solve sensitive to rounding; a synthetic frame hid it), at
/// 1080p and 4K, with either guide; and on an odd size whose RGB bytes are not whole words.
#[test]
fn gpu_and_cpu_refinement_agree_within_1e_4() {
    let Some(mut gpu) = gpu_or_say_why("gpu_and_cpu_refinement_agree_within_1e_4") else {
        return;
    };
    let (w, h) = (301, 170);
    let rgb: Vec<u8> = (0..w * h * 3)
        .map(|i: usize| {
            let (x, y) = ((i / 3) % w, (i / 3) / w);
            let stripe = if (x / 9 + y / 13) % 2 == 0 { 60 } else { 190 };
            (stripe + (i.wrapping_mul(2_654_435_761) >> 13) % 40) as u8
        })
        .collect();
    let low: Vec<f32> = (0..64 * 64)
        .map(|i| {
            14.0 - (((i % 64) as f32 - 30.0).powi(2) + ((i / 64) as f32 - 33.0).powi(2)).sqrt()
        })
        .collect();
    let mut cases = vec![("odd-size synthetic".to_owned(), (rgb, w, h, low), 64)];
    for (clip, file) in [
        ("cat-over-astronaut", "cat-over-astronaut-1080.png"),
        ("astronaut-over-cat", "astronaut-over-cat-1080.png"),
        ("cat-over-mirrored-cat", "cat-over-mirrored-cat-1080.png"),
        ("cat-over-astronaut", "cat-over-astronaut-2160.png"),
        ("astronaut-over-cat", "astronaut-over-cat-2160.png"),
    ] {
        cases.push((clip.to_owned(), fixture_clip(clip, file).unwrap(), 256));
    }
    let mut failures = Vec::new();
    for (name, case, side) in &cases {
        for channels in [GuideChannels::Colour, GuideChannels::Luminance] {
            let settings = EdgeRefinement {
                guide: channels,
                ..Default::default()
            };
            let (alpha, logits) = cpu_gpu_difference(&mut gpu, case, *side, &settings).unwrap();
            let (w, h) = (case.1, case.2);
            eprintln!(
                "{name} {w}×{h} {channels:?}: max |CPU − GPU| = {alpha:e} (alpha), {logits:e} (logits)"
            );
            if alpha > 1e-4 || logits > 1e-4 {
                failures.push(format!(
                    "{name} {w}×{h} {channels:?}: {alpha:e}, {logits:e}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "CPU and GPU differ by more than 1e-4: {failures:?}"
    );
}
