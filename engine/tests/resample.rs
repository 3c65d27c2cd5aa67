//! The resampling and hole filling of `sam2_engine::{resample, fill_holes}` against what Pillow,
//! PyTorch and the official SAM 2 loader produce (tests/fixtures/resample, written by
//! `bundle/exporter/sam2export/resample_fixtures.py`), and hole filling against an independent
//! definition.
//!
//! Large outputs are stored as a SHA-256 of their bytes plus a few rows; a mismatch is reported on
//! the stored rows so that a failure says where.

// Test code unwraps, panics and indexes on purpose (clippy.toml allows it inside #[test] functions;
// the helpers below are test code too).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use ndarray_npy::NpzReader;
use sam2_engine::fill_holes::{FILLED_LOGIT, fill_holes_in_mask_array, fill_holes_in_mask_scores};
use sam2_engine::resample::{
    BilinearResize, PixelFormat, resize_bilinear, resize_bilinear_antialias, resize_rgb8_like_pil,
    sam2_input, to_rgb8,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Required closeness of float outputs to PyTorch (the implementation aims at bit equality).
const TOLERANCE: f32 = 1e-6;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn resample_dir() -> PathBuf {
    fixtures().join("resample")
}

fn cases() -> Value {
    let text = std::fs::read_to_string(resample_dir().join("cases.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], "sam2-rotoscope-resample-fixtures");
    v
}

struct Reference(NpzReader<std::fs::File>);

impl Reference {
    fn open() -> Self {
        let f = std::fs::File::open(resample_dir().join("reference.npz")).unwrap();
        Reference(NpzReader::new(f).unwrap())
    }
    fn u8(&mut self, name: &str) -> ArrayD<u8> {
        self.0
            .by_name::<ndarray::OwnedRepr<u8>, IxDyn>(&format!("{name}.npy"))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
    fn f32(&mut self, name: &str) -> ArrayD<f32> {
        self.0
            .by_name::<ndarray::OwnedRepr<f32>, IxDyn>(&format!("{name}.npy"))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

// --- the seeded noise of resample_fixtures.py -----------------------------------------------------

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn stream(seed: u64, n: usize) -> impl Iterator<Item = u64> {
    (0..n as u64).map(move |i| splitmix64((seed << 32).wrapping_add(i)))
}

fn noise_u8(seed: u64, len: usize) -> Vec<u8> {
    stream(seed, len).map(|v| (v >> 56) as u8).collect()
}

fn noise_f32(seed: u64, w: usize, h: usize) -> Vec<f32> {
    stream(seed, w * h)
        .map(|v| ((v >> 52) as i64 - 2048) as f32 / 64.0)
        .collect()
}

// --- sources --------------------------------------------------------------------------------------

/// A source image as PIL holds it: pixel bytes, size and mode.
struct Source {
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    format: PixelFormat,
}

impl Source {
    fn rgb(&self) -> Vec<u8> {
        to_rgb8(&self.pixels, self.format).into_owned()
    }
}

fn format_of(mode: &str) -> PixelFormat {
    match mode {
        "L" => PixelFormat::Gray8,
        "LA" => PixelFormat::GrayAlpha8,
        "RGB" => PixelFormat::Rgb8,
        "RGBA" => PixelFormat::Rgba8,
        other => panic!("mode {other}"),
    }
}

fn load_source(name: &str, desc: &Value) -> Source {
    let width = desc["width"].as_u64().unwrap() as u32;
    let height = desc["height"].as_u64().unwrap() as u32;
    let format = format_of(desc["mode"].as_str().unwrap());
    let pixels = if let Some(rel) = desc["png"].as_str() {
        let path = resample_dir().join(rel);
        let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!((img.width(), img.height()), (width, height), "{name}");
        match format {
            PixelFormat::Rgb8 => img.to_rgb8().into_raw(),
            PixelFormat::Rgba8 => img.to_rgba8().into_raw(),
            PixelFormat::Gray8 => img.to_luma8().into_raw(),
            PixelFormat::GrayAlpha8 => img.to_luma_alpha8().into_raw(),
        }
    } else {
        let n = &desc["noise"];
        noise_u8(
            n["seed"].as_u64().unwrap(),
            (width * height) as usize * format.channels(),
        )
    };
    assert_eq!(
        sha256_hex(&pixels),
        desc["pixels_sha256"].as_str().unwrap(),
        "source {name}: our decode differs from what PIL decoded"
    );
    Source {
        pixels,
        width,
        height,
        format,
    }
}

fn sources(cases: &Value) -> std::collections::HashMap<String, Source> {
    cases["sources"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), load_source(k, v)))
        .collect()
}

fn size_pair(v: &Value) -> (usize, usize) {
    (
        v[0].as_u64().unwrap() as usize,
        v[1].as_u64().unwrap() as usize,
    )
}

fn probe_rows(case: &Value) -> Vec<usize> {
    case["probe_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_u64().unwrap() as usize)
        .collect()
}

// --- Pillow ---------------------------------------------------------------------------------------

#[test]
fn bicubic_resize_is_byte_identical_to_pillow() {
    let cases = cases();
    let sources = sources(&cases);
    let mut reference = Reference::open();
    let mut failures = Vec::new();
    for case in cases["pil"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let src = &sources[case["source"].as_str().unwrap()];
        let (ow, oh) = size_pair(&case["out"]);
        let out = resize_rgb8_like_pil(&src.rgb(), src.width, src.height, ow as u32, oh as u32);
        assert_eq!(out.len(), ow * oh * 3, "{name}");
        let stored = reference.u8(case["array"].as_str().unwrap());
        let stored = stored.as_slice().unwrap();
        let row_len = ow * 3;
        let rows: Vec<usize> = if case.get("probe_rows").is_some() {
            probe_rows(case)
        } else {
            (0..oh).collect()
        };
        for (k, &r) in rows.iter().enumerate() {
            let ours = &out[r * row_len..(r + 1) * row_len];
            let theirs = &stored[k * row_len..(k + 1) * row_len];
            if let Some(x) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
                failures.push(format!(
                    "{name}: row {r}, byte {x}: ours {} Pillow {}",
                    ours[x], theirs[x]
                ));
                break;
            }
        }
        if sha256_hex(&out) != case["sha256"].as_str().unwrap() {
            failures.push(format!("{name}: output differs from Pillow's (SHA-256)"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn sam2_input_equals_the_official_loader() {
    let cases = cases();
    let sources = sources(&cases);
    let mut reference = Reference::open();
    for case in cases["sam2_input"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let src = &sources[case["source"].as_str().unwrap()];
        let size = case["size"].as_u64().unwrap() as usize;
        let vec3 = |k: &str| -> [f32; 3] {
            let a = case[k].as_array().unwrap();
            // The manifest's constants reach the engine through serde_json as f32.
            std::array::from_fn(|i| serde_json::from_value::<f32>(a[i].clone()).unwrap())
        };
        let t = sam2_input(
            &src.rgb(),
            src.width,
            src.height,
            size as u32,
            vec3("mean"),
            vec3("std"),
        );
        assert_eq!(t.shape(), &[1, 3, size, size], "{name}");
        let ours = t.as_slice().unwrap();
        let stored = reference.f32(case["array"].as_str().unwrap());
        let stored = stored.as_slice().unwrap();
        let rows: Vec<usize> = if case.get("probe_rows").is_some() {
            probe_rows(case)
        } else {
            (0..size).collect()
        };
        let mut worst = 0.0f32;
        for c in 0..3 {
            for (k, &r) in rows.iter().enumerate() {
                let ours = &ours[(c * size + r) * size..(c * size + r + 1) * size];
                let theirs = &stored[(c * rows.len() + k) * size..(c * rows.len() + k + 1) * size];
                for (a, b) in ours.iter().zip(theirs) {
                    worst = worst.max((a - b).abs());
                }
            }
        }
        assert!(worst <= TOLERANCE, "{name}: max difference {worst}");
        assert_eq!(
            sha256_hex(&f32_bytes(ours)),
            case["sha256"].as_str().unwrap(),
            "{name}: not bit-identical to the official tensor"
        );
    }
}

// --- PyTorch --------------------------------------------------------------------------------------

/// The float input of a PyTorch case: seeded noise, or a stored array with its transform.
fn torch_input(case: &Value, reference: &mut Reference) -> (Vec<f32>, usize, usize) {
    let input = &case["input"];
    let (w, h) = size_pair(&case["in"]);
    if let Some(n) = input.get("noise") {
        return (noise_f32(n["seed"].as_u64().unwrap(), w, h), w, h);
    }
    let name = input["array"].as_str().unwrap();
    let values: Vec<f32> = match input["transform"].as_str().unwrap() {
        "mask" => reference.u8(name).iter().map(|&m| f32::from(m)).collect(),
        "mask * 20 - 10" => reference
            .u8(name)
            .iter()
            .map(|&m| f32::from(m) * 20.0 - 10.0)
            .collect(),
        "none" => reference.f32(name).iter().copied().collect(),
        other => panic!("transform {other}"),
    };
    assert_eq!(values.len(), w * h);
    (values, w, h)
}

/// Compares `ours` (the whole output) with the stored rows (or whole array) and the hash.
fn compare_float_case(
    case: &Value,
    ours: &[f32],
    reference: &mut Reference,
    failures: &mut Vec<String>,
) {
    let name = case["name"].as_str().unwrap();
    let (ow, oh) = size_pair(&case["out"]);
    assert_eq!(ours.len(), ow * oh, "{name}");
    let stored = reference.f32(case["array"].as_str().unwrap());
    let stored = stored.as_slice().unwrap();
    let rows: Vec<usize> = if case.get("probe_rows").is_some() {
        probe_rows(case)
    } else {
        (0..oh).collect()
    };
    let mut worst = 0.0f32;
    let mut differing = 0;
    for (k, &r) in rows.iter().enumerate() {
        for (a, b) in ours[r * ow..(r + 1) * ow]
            .iter()
            .zip(&stored[k * ow..(k + 1) * ow])
        {
            worst = worst.max((a - b).abs());
            differing += usize::from(a.to_bits() != b.to_bits());
        }
    }
    if worst > TOLERANCE {
        failures.push(format!("{name}: max difference {worst} on the stored rows"));
    }
    if sha256_hex(&f32_bytes(ours)) != case["sha256"].as_str().unwrap() {
        failures.push(format!(
            "{name}: not bit-identical to PyTorch ({differing} stored values differ, max {worst})"
        ));
    }
}

#[test]
fn antialiased_bilinear_matches_pytorch() {
    let cases = cases();
    let mut reference = Reference::open();
    let mut failures = Vec::new();
    for case in cases["antialias"].as_array().unwrap() {
        let (src, w, h) = torch_input(case, &mut reference);
        let (ow, oh) = size_pair(&case["out"]);
        let out = resize_bilinear_antialias(&src, w, h, ow, oh);
        compare_float_case(case, &out, &mut reference, &mut failures);
        if let Some(want) = case.get("binarized_sha256") {
            let mask: Vec<u8> = out.iter().map(|&v| u8::from(v >= 0.5)).collect();
            if sha256_hex(&mask) != want.as_str().unwrap() {
                failures.push(format!("{}: mask >= 0.5 differs", case["name"]));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn plain_bilinear_matches_pytorch() {
    let cases = cases();
    let mut reference = Reference::open();
    let mut failures = Vec::new();
    for case in cases["bilinear"].as_array().unwrap() {
        let (src, w, h) = torch_input(case, &mut reference);
        let (ow, oh) = size_pair(&case["out"]);
        let out = resize_bilinear(&src, w, h, ow, oh);
        compare_float_case(case, &out, &mut reference, &mut failures);
        // The reusable tables give the same numbers, also into a caller's buffer.
        let plan = BilinearResize::new(w, h, ow, oh);
        let mut again = vec![f32::NAN; ow * oh];
        plan.apply_into(&src, &mut again);
        assert!(
            out.iter()
                .zip(&again)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}",
            case["name"]
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// --- hole filling ---------------------------------------------------------------------------------

/// An independent definition of the official hole filling: label the background by repeated
/// min-label propagation over the 8 neighbours until nothing changes (no search, no union–find),
/// count each label, fill the small ones.
fn fill_holes_reference(scores: &[f32], w: usize, h: usize, max_area: usize) -> Vec<f32> {
    const NONE: usize = usize::MAX;
    let mut label: Vec<usize> = scores
        .iter()
        .enumerate()
        .map(|(i, &v)| if v <= 0.0 { i } else { NONE })
        .collect();
    loop {
        let mut changed = false;
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                if label[i] == NONE {
                    continue;
                }
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                        if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                            continue;
                        }
                        let j = ny as usize * w + nx as usize;
                        if label[j] != NONE && label[j] < label[i] {
                            label[i] = label[j];
                            changed = true;
                        }
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut area = std::collections::HashMap::new();
    for &l in label.iter().filter(|&&l| l != NONE) {
        *area.entry(l).or_insert(0usize) += 1;
    }
    scores
        .iter()
        .zip(&label)
        .map(|(&v, &l)| {
            if l != NONE && area[&l] <= max_area {
                FILLED_LOGIT
            } else {
                v
            }
        })
        .collect()
}

#[test]
fn hole_filling_matches_an_independent_definition_on_random_masks() {
    let mut seed = 100;
    for &(w, h) in &[
        (64usize, 64usize),
        (16, 16),
        (37, 23),
        (1, 40),
        (40, 1),
        (2, 2),
    ] {
        for density in [0.05f64, 0.2, 0.45, 0.55, 0.8, 0.95] {
            for max_area in [1usize, 3, 8, 50] {
                seed += 1;
                // Logits in (−4, 4) with the given share of background; exact zeros included.
                let scores: Vec<f32> = stream(seed, w * h)
                    .map(|v| {
                        let u = (v >> 11) as f64 / (1u64 << 53) as f64;
                        let mag = ((v & 0x3ff) as f32) / 256.0;
                        if u < density {
                            -mag
                        } else {
                            mag.max(1.0 / 256.0)
                        }
                    })
                    .collect();
                let want = fill_holes_reference(&scores, w, h, max_area);
                let mut got = scores.clone();
                let filled = fill_holes_in_mask_scores(&mut got, w, h, max_area);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{w}×{h} density {density} max_area {max_area}"
                );
                let expected_filled = want
                    .iter()
                    .zip(&scores)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                // Pixels already equal to 0.1 cannot be background, so every fill changes one.
                assert_eq!(filled, expected_filled);
                let mut arr = ndarray::Array2::from_shape_vec((h, w), scores.clone()).unwrap();
                assert_eq!(fill_holes_in_mask_array(arr.view_mut(), max_area), filled);
                assert_eq!(arr.as_slice().unwrap(), &got[..]);
            }
        }
    }
}

#[test]
fn hole_filling_hand_made_cases() {
    // 8-connectivity: a diagonal chain of background is one component (size 4 here).
    #[rustfmt::skip]
    let grid = [
        "#######",
        "#.#####",
        "##.####",
        "###.###",
        "####.##",
        "#######",
    ];
    let (w, h) = (grid[0].len(), grid.len());
    let scores: Vec<f32> = grid
        .iter()
        .flat_map(|r| r.chars().map(|c| if c == '#' { 2.0 } else { -2.0 }))
        .collect();
    let mut s = scores.clone();
    assert_eq!(
        fill_holes_in_mask_scores(&mut s, w, h, 3),
        0,
        "4 > 3: not a hole"
    );
    assert_eq!(fill_holes_in_mask_scores(&mut s, w, h, 4), 4);
    assert!(s.iter().all(|&v| v > 0.0));

    // The background around an object touches the border and is one big component: never filled
    // at area 8, while a 2×2 hole inside is.
    #[rustfmt::skip]
    let grid = [
        "........",
        ".######.",
        ".#..###.",
        ".#..###.",
        ".######.",
        "........",
    ];
    let (w, h) = (grid[0].len(), grid.len());
    let mut s: Vec<f32> = grid
        .iter()
        .flat_map(|r| r.chars().map(|c| if c == '#' { 1.0 } else { -1.0 }))
        .collect();
    assert_eq!(fill_holes_in_mask_scores(&mut s, w, h, 8), 4);
    assert_eq!(s[2 * w + 2], FILLED_LOGIT);
    assert_eq!(s[0], -1.0);
    // The same image with the outer ring as a small border component: 3 background pixels in a
    // corner, cut off by the object, are filled although they touch the border.
    let mut s = vec![1.0f32; 16];
    s[0] = -1.0;
    s[1] = 0.0;
    s[4] = -3.0;
    assert_eq!(fill_holes_in_mask_scores(&mut s, 4, 4, 3), 3);
    assert_eq!(&s[..2], &[FILLED_LOGIT, FILLED_LOGIT]);
}
