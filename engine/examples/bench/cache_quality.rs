//! The track cache's encoding against lossless logits: bytes per frame and object in a real cache
//! file, and how far a matte made at the matte precision (what the cache stores and every matte
//! now uses) is from one made from the f32 logits — for the cache's 16-bit codes, and for 8-bit
//! codes (1/16 logit over ±8) as the road not taken.

use std::io::Write;
use std::sync::Arc;

use flate2::Compression;
use flate2::write::DeflateEncoder;
use sam2_engine::ObjectId;
use sam2_engine::masklet::{FrameResult, MemorySource};
use sam2_engine::matte::{
    MatteDevice, MatteSettings, MatteUpsampler, finish, to_u8, to_u16, upsample_bilinear,
};
use sam2_engine::track_cache::{Layout, Provenance, TrackCacheWriter, engine_version};

use crate::BoxResult;

/// Low-res logit maps of one model, and the video size their mattes are made at.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    pub side: usize,
    pub width: usize,
    pub height: usize,
    pub maps: Vec<Vec<f32>>,
}

/// One code width's effect on mattes, against the f32 logits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Effect {
    /// Bytes per map, deflated.
    pub bytes: f64,
    /// Largest difference of a soft matte (softness 1), in 8-bit and 16-bit levels.
    pub soft_u8: u16,
    pub soft_u16: u16,
    /// Share of a hard matte's pixels (threshold 0) that change.
    pub hard_changed: f64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Quality {
    pub maps: usize,
    pub side: usize,
    /// Bytes per block in a track cache file (framing included).
    pub cache_bytes: f64,
    /// The cache's 16-bit codes.
    pub sixteen: Effect,
    /// 8-bit codes, for comparison.
    pub eight: Effect,
    /// Format 1's lossless encoding (f32 bytes in four planes, deflated), for comparison.
    pub lossless_bytes: f64,
}

/// 8-bit codes: 1/16 logit over [−8, 8).
fn round_8(v: f32) -> f32 {
    (v * 16.0).round().clamp(-128.0, 127.0) / 16.0
}

fn code_8(v: f32) -> i16 {
    (v * 16.0).round().clamp(-128.0, 127.0) as i16
}

/// The median edge detector's residuals of `codes` (a `side`-wide map), wrapped to bytes.
fn med_residual_bytes(codes: &[i16], side: usize) -> Vec<u8> {
    (0..codes.len())
        .map(|i| {
            let code = i32::from(codes.get(i).copied().unwrap_or(0));
            let predicted = i32::from(sam2_engine::track_cache::predict_code(codes, side, i));
            let r = (code - predicted) as i8;
            ((r << 1) ^ (r >> 7)) as u8
        })
        .collect()
}

fn deflated(bytes: &[u8]) -> BoxResult<usize> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::new(6));
    e.write_all(bytes)?;
    Ok(e.finish()?.len())
}

fn lossless_bytes(map: &[f32]) -> BoxResult<usize> {
    let n = map.len();
    let mut planes = vec![0u8; n * 4];
    for (i, v) in map.iter().enumerate() {
        for (p, b) in v.to_le_bytes().into_iter().enumerate() {
            if let Some(slot) = planes.get_mut(p * n + i) {
                *slot = b;
            }
        }
    }
    deflated(&planes)
}

/// Measures `samples`: a track cache written with every map, and every map's mattes.
pub fn run(samples: &Samples) -> BoxResult<Quality> {
    let n = samples.maps.len();
    if n == 0 {
        return Err("No logits to measure the track cache's encoding on.".into());
    }
    let (side, w, h) = (samples.side, samples.width, samples.height);
    let dir = std::env::temp_dir().join(format!("sam2-bench-quality-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("quality.sam2cache");
    let provenance = Provenance {
        engine: engine_version(),
        model: "bench".into(),
        precision: "bench".into(),
        predictor: "bench".into(),
        source: "bench".into(),
        prompts: "bench".into(),
    };
    let layout = Layout {
        width: w as u32,
        height: h as u32,
        num_frames: n,
        low_res: side,
    };
    let written = (|| -> BoxResult<f64> {
        let mut writer = TrackCacheWriter::create(&path, &provenance, layout)?;
        let start = writer.bytes();
        for (frame, map) in samples.maps.iter().enumerate() {
            let result = FrameResult {
                low_res_logits: Arc::from(map.as_slice()),
                object_pointer: Arc::from(Vec::new()),
                object_score: 1.0,
                memory: None,
                memory_source: MemorySource::default(),
                candidates: None,
            };
            writer.put(ObjectId(1), frame, Some(&result))?;
        }
        Ok((writer.bytes() - start) as f64 / n as f64)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let mut q = Quality {
        maps: n,
        side,
        cache_bytes: written?,
        ..Quality::default()
    };

    let mut upsampler = MatteUpsampler::new(MatteDevice::Cpu)?;
    let soft = MatteSettings {
        softness: 1.0,
        ..MatteSettings::default()
    };
    let hard = MatteSettings::default();
    let mut changed = [0usize; 2];
    for map in &samples.maps {
        let exact = upsample_bilinear(map, side, side, w, h)?;
        let rounded_8: Vec<f32> = map.iter().map(|&v| round_8(v)).collect();
        let sixteen = upsampler.upsample(map, side, side, w, h)?;
        let eight = upsample_bilinear(&rounded_8, side, side, w, h)?;
        let exact_soft = finish(&exact, w, h, &soft)?;
        let exact_hard = finish(&exact, w, h, &hard)?;
        for (k, (up, effect)) in [(&sixteen, &mut q.sixteen), (&eight, &mut q.eight)]
            .into_iter()
            .enumerate()
        {
            let s = finish(up, w, h, &soft)?;
            let d8 = to_u8(&s)
                .iter()
                .zip(to_u8(&exact_soft))
                .map(|(a, b)| u16::from(a.abs_diff(b)))
                .max()
                .unwrap_or(0);
            let d16 = to_u16(&s)
                .iter()
                .zip(to_u16(&exact_soft))
                .map(|(a, b)| a.abs_diff(b))
                .max()
                .unwrap_or(0);
            effect.soft_u8 = effect.soft_u8.max(d8);
            effect.soft_u16 = effect.soft_u16.max(d16);
            let hm = finish(up, w, h, &hard)?;
            if let Some(c) = changed.get_mut(k) {
                *c += hm.iter().zip(&exact_hard).filter(|(a, b)| a != b).count();
            }
        }
        let codes: Vec<i16> = map.iter().map(|&v| code_8(v)).collect();
        q.eight.bytes += deflated(&med_residual_bytes(&codes, side))? as f64;
        q.lossless_bytes += lossless_bytes(map)? as f64;
    }
    let pixels = (n * w * h).max(1) as f64;
    let [sixteen, eight] = changed;
    q.sixteen.hard_changed = sixteen as f64 / pixels;
    q.eight.hard_changed = eight as f64 / pixels;
    q.sixteen.bytes = q.cache_bytes;
    q.eight.bytes /= n as f64;
    q.lossless_bytes /= n as f64;
    Ok(q)
}

/// The mask-prompt path on real photographs: each ground-truth coverage of the Refine Edges
/// fixtures (tests/fixtures/edges, 1920×1080) as a mask prompt at `image_size`, which SAM 2 turns
/// into the frame's output logits as it is (±10, antialiased down to the low-res map).
pub fn mask_prompts(edges: &std::path::Path, image_size: usize) -> BoxResult<Samples> {
    use sam2_engine::mask_prompt::{mask_as_logits, to_model_size};
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(edges.join("clips.json"))?)?;
    let clips = index
        .get("clips")
        .and_then(|c| c.as_array())
        .ok_or("clips.json lists no clips")?;
    let mut out = Samples {
        side: image_size / 4,
        ..Samples::default()
    };
    for clip in clips {
        let Some(file) = clip
            .get("coverage")
            .and_then(|c| c.get("1920x1080"))
            .and_then(|f| f.as_str())
        else {
            continue;
        };
        let coverage = image::open(edges.join(file))?.to_luma16();
        let (w, h) = (coverage.width() as usize, coverage.height() as usize);
        let mask: Vec<bool> = coverage.pixels().map(|p| p.0[0] >= 32768).collect();
        let model_mask = to_model_size(&mask, w, h, image_size);
        out.maps
            .push(mask_as_logits(&model_mask, image_size, 20.0, -10.0));
        out.width = w;
        out.height = h;
    }
    Ok(out)
}
