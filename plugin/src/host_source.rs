//! The engine's frames from the host: a [`FrameSource`] over the Source clip, fetching a frame
//! by time (`clipGetImage`, with temporal clip access) only when a model call needs it — except
//! the frame a render has fetched already, which the render lends it ([`LentFrame`]), so that no
//! host frame is fetched twice in one render.
//!
//! A frame is fetched at whatever render scale the current action has; a proxy-scale frame goes
//! to the engine at its own size (the engine resizes every frame to SAM 2's square input, so it is
//! resized once) and is remembered as provisional. Each full-resolution frame's fingerprint is
//! kept (by the session, tracker.rs) so that a render can tell that the source changed under it.
//!
//! **Without temporal clip access** (the host property is 0: MLT) the host is never asked for a
//! frame by time: MLT's clipGetImage ignores the time and hands over the frame being rendered,
//! so a frame asked for by time could carry another frame's pixels. Only the frame the render
//! fetched (lent) is read; any other is refused with a sentence.

use std::sync::Arc;

use parking_lot::Mutex;
use sam2_engine::track_cache::frame_digest;
use sam2_engine::{Error, FrameSource, RgbFrame};

use crate::ffi::images::{Clip, Image, ImageError};
use crate::render::{Rows, fingerprint, model_frame};
use crate::tracker::{ClipFrames, ClipInfo};

/// The Source image the current render fetched (at its time), lent to the session for as long as
/// the render works the tracker: a cache miss on that frame reads it instead of asking the host
/// for it again. Lent only while the render holds the tracker's lock, so one render's image is
/// never seen by another.
#[derive(Debug, Clone, Default)]
pub struct LentFrame(Arc<Mutex<Option<(f64, Image)>>>);

impl LentFrame {
    /// Lends `image` (fetched at `time`) until the returned guard drops, which gives it back.
    pub fn lend<'a>(&'a self, time: f64, image: &'a mut Option<Image>) -> Lending<'a> {
        if let Some(lent) = image.take() {
            *self.0.lock() = Some((time, lent));
        }
        Lending {
            slot: self,
            owner: image,
        }
    }

    /// Runs `f` on the lent image, if one is lent.
    pub fn with<R>(&self, f: impl FnOnce(&Image) -> R) -> Option<R> {
        self.0.lock().as_ref().map(|(_, image)| f(image))
    }
}

/// A lent image (the guard holds the owner's place); dropping it hands the image back to its owner.
#[derive(Debug)]
pub struct Lending<'a> {
    slot: &'a LentFrame,
    owner: &'a mut Option<Image>,
}

impl Drop for Lending<'_> {
    fn drop(&mut self) {
        if let Some((_, image)) = self.slot.0.lock().take() {
            *self.owner = Some(image);
        }
    }
}

/// Whether the host may be asked for a frame by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Temporal clip access: any frame, by time.
    AnyFrame,
    /// Only the frame being rendered (lent by the render).
    RenderedFrame,
}

/// The Source clip as the engine sees it.
#[derive(Debug)]
pub struct HostSource {
    clip: Clip,
    info: ClipInfo,
    lent: LentFrame,
    access: Access,
}

impl HostSource {
    pub fn new(clip: Clip, info: ClipInfo, lent: LentFrame, access: Access) -> HostSource {
        HostSource {
            clip,
            info,
            lent,
            access,
        }
    }

    /// The engine's frame from a host image, and its fingerprint (`None`: not full resolution).
    fn convert(&self, image: &Image) -> (RgbFrame, Option<u64>) {
        // Hosts before OpenFX 1.4 give no region of definition; their images are whole frames.
        let region = image
            .region_of_definition()
            .unwrap_or_else(|| image.bounds());
        let frame = model_frame(image, region, self.info.linear_light);
        let full_size = (frame.width, frame.height) == self.info.video_size;
        // Only full-resolution frames can be compared with a later full-resolution render.
        let print = full_size.then(|| fingerprint(image, region));
        (frame, print)
    }
}

/// Why a frame could not be had, as the end of a sentence.
pub fn image_problem(error: &ImageError) -> String {
    match error {
        ImageError::Unavailable(status) => format!(
            "the host did not hand it over (OpenFX status {status}); in a host that only gives the frame being rendered, render the clip in order instead of pressing Track"
        ),
        ImageError::Unsupported(what) => format!("it is in a {what}, which is not read"),
        ImageError::Malformed(what) => format!("the host described it inconsistently ({what})"),
    }
}

impl ClipFrames for HostSource {
    fn frame(&mut self, index: usize) -> sam2_engine::Result<(RgbFrame, Option<u64>)> {
        let time = self.info.frame(index) as f64;
        {
            let lent = self.lent.0.lock();
            if let Some((lent_time, image)) = lent.as_ref()
                && *lent_time == time
            {
                return Ok(self.convert(image));
            }
        }
        if self.access == Access::RenderedFrame {
            return Err(Error::FrameSource {
                frame: index,
                message: "the host hands over only the frame being rendered (no temporal clip access), and another frame would be needed; render the clip in order, from its first prompted frame".into(),
            });
        }
        let image = self.clip.image(time).map_err(|e| Error::FrameSource {
            frame: index,
            message: image_problem(&e),
        })?;
        Ok(self.convert(&image))
    }
}

/// The clip for a tracking run into a track cache: the host's frames, each checked against the
/// digest read when the run began (the digests the cache's provenance names), so that the cache
/// never names pixels other than those it was tracked from.
#[derive(Debug)]
pub struct CheckedSource {
    frames: HostSource,
    digests: Vec<u64>,
}

impl CheckedSource {
    /// Reads every frame once for its digest; `progress` sees (frames read, frames) and may stop
    /// the reading (then `None`).
    pub fn read(
        mut frames: HostSource,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> sam2_engine::Result<Option<CheckedSource>> {
        let n = frames.info.num_frames;
        let mut digests = Vec::with_capacity(n);
        for index in 0..n {
            let (frame, _) = frames.frame(index)?;
            digests.push(frame_digest(&frame));
            if !progress(index + 1, n) {
                return Ok(None);
            }
        }
        Ok(Some(CheckedSource { frames, digests }))
    }

    /// Every frame's digest, by clip index.
    pub fn digests(&self) -> &[u64] {
        &self.digests
    }
}

impl FrameSource for CheckedSource {
    fn num_frames(&self) -> usize {
        self.frames.info.num_frames
    }

    fn video_size(&self) -> (u32, u32) {
        self.frames.info.video_size
    }

    fn frame(&mut self, index: usize) -> sam2_engine::Result<RgbFrame> {
        let (frame, _) = self.frames.frame(index)?;
        if self.digests.get(index) != Some(&frame_digest(&frame)) {
            return Err(Error::FrameSource {
                frame: index,
                message: "the host handed over other pixels than when tracking began (the source changed meanwhile); track again".into(),
            });
        }
        Ok(frame)
    }
}
