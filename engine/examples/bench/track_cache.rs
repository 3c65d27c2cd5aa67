//! Track once, render anywhere: tracking a 1080p clip into a track cache, then rendering its
//! mattes from the cache alone (read, upsample, finish), as a render task does — frames per second
//! of each, and the cache's size per frame and object.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use sam2_engine::matte::{MatteDevice, MatteSettings, MatteUpsampler, finish, to_u8};
use sam2_engine::script::{Label, ObjectId};
use sam2_engine::track_cache::{
    Expected, Layout, Provenance, TrackCacheReader, TrackCacheWriter, View,
};
use sam2_engine::{ClipSession, FrameSource, Model, Propagation, RgbFrame, SessionSettings};

use crate::BoxResult;
use crate::memory::MovingDisk;

/// The synthetic clip, 6× larger: 1920×1080.
const SCALE: u32 = 6;

#[derive(Debug)]
struct Hd(MovingDisk);

impl FrameSource for Hd {
    fn num_frames(&self) -> usize {
        self.0.num_frames()
    }

    fn video_size(&self) -> (u32, u32) {
        let (w, h) = self.0.video_size();
        (w * SCALE, h * SCALE)
    }

    fn frame(&mut self, index: usize) -> sam2_engine::Result<RgbFrame> {
        let small = self.0.frame(index)?;
        let (w, h) = (small.width * SCALE, small.height * SCALE);
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let at = (((y / SCALE) * small.width + x / SCALE) * 3) as usize;
                data.extend_from_slice(small.data.get(at..at + 3).unwrap_or(&[0, 0, 0]));
            }
        }
        Ok(RgbFrame {
            width: w,
            height: h,
            data,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct CacheBench {
    pub frames: usize,
    /// Tracking with the cache written as it goes, frames/s.
    pub track_fps: f64,
    /// Of which writing the cache, seconds.
    pub write_seconds: f64,
    /// Rendering from the cache on the CPU (read + upsample + finish + 8-bit), frames/s.
    pub render_fps: f64,
    /// Average bytes of a block (one object, one frame).
    pub block_bytes: f64,
    /// Raw bytes of one frame's logits.
    pub raw_bytes: usize,
}

pub fn run(model: &Arc<Model>, frames: usize) -> BoxResult<CacheBench> {
    let dir = std::env::temp_dir().join(format!("sam2-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.sam2cache");
    let result = measure(model, frames, &path);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(model: &Arc<Model>, frames: usize, path: &std::path::Path) -> BoxResult<CacheBench> {
    let mut session = ClipSession::new(
        Arc::clone(model),
        Box::new(Hd(MovingDisk::new(frames))),
        SessionSettings::for_model(model),
    )?;
    let (width, height) = session.video_size();
    let layout = Layout {
        width,
        height,
        num_frames: frames,
        low_res: model.geometry().low_res,
    };
    let provenance = Provenance::for_session(&session, "bench".into(), "bench".into());
    let mut writer = TrackCacheWriter::create(path, &provenance, layout)?;
    let [cx, cy] = MovingDisk::centre(0);
    let started = Instant::now();
    session.add_points(
        0,
        ObjectId(1),
        &[[cx * f64::from(SCALE), cy * f64::from(SCALE)]],
        &[Label::Positive],
        true,
    )?;
    let mut write_seconds = 0.0;
    let mut failure = None;
    session.propagate(Propagation::default(), |masks| {
        let t = Instant::now();
        if let Err(e) = writer.put_frame(masks) {
            failure = Some(e);
            return ControlFlow::Break(());
        }
        write_seconds += t.elapsed().as_secs_f64();
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let t = Instant::now();
    writer.commit(&session)?;
    write_seconds += t.elapsed().as_secs_f64();
    let track_fps = frames as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let blocks = writer.blocks().max(1);
    let block_bytes = writer.bytes() as f64 / blocks as f64;
    drop(session);

    let reader = TrackCacheReader::open(path, &Expected::default(), View::Committed)?;
    let mut upsampler = MatteUpsampler::new(MatteDevice::Cpu)?;
    let settings = MatteSettings {
        softness: 1.0,
        feather: 2.0,
        ..MatteSettings::default()
    };
    let side = layout.low_res;
    let (w, h) = (width as usize, height as usize);
    let started = Instant::now();
    for frame in 0..frames {
        let cached = reader
            .read(ObjectId(1), frame)?
            .ok_or_else(|| format!("The cache has no result on frame {frame}."))?;
        let logits = upsampler.upsample(&cached.low_res_logits, side, side, w, h)?;
        let matte = finish(&logits, w, h, &settings)?;
        std::hint::black_box(to_u8(&matte));
    }
    let render_fps = frames as f64 / started.elapsed().as_secs_f64().max(1e-9);
    Ok(CacheBench {
        frames,
        track_fps,
        write_seconds,
        render_fps,
        block_bytes,
        raw_bytes: side * side * 4,
    })
}
