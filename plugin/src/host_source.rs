//! The engine's frames from the host: a [`FrameSource`] over the Source clip, fetching a frame
//! by time (`clipGetImage`, with temporal clip access) only when a model call needs it.
//!
//! A frame is fetched at whatever render scale the current action has; a proxy-scale frame is
//! resampled to the session's full-resolution size, so the session stays one size (SAM 2 resizes
//! every frame to its own square input anyway), and remembered as provisional. Each full-resolution
//! frame's fingerprint is kept so that a render can tell that the source changed under it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sam2_engine::{Error, FrameSource, RgbFrame};

use crate::ffi::images::{Clip, ImageError};
use crate::render::{Rows, fingerprint, model_frame};
use crate::tracker::ClipInfo;

/// The frames the session encoded, by clip index: the fingerprint of a full-resolution frame, or
/// `None` for a frame read at a proxy scale — its encoding is provisional, and a full-resolution
/// render or a Track starts a new session rather than let it shape the final mattes.
pub type Fingerprints = Arc<Mutex<HashMap<usize, Option<u64>>>>;

/// The Source clip as the engine sees it.
#[derive(Debug)]
pub struct HostSource {
    clip: Clip,
    info: ClipInfo,
    fingerprints: Fingerprints,
}

impl HostSource {
    pub fn new(clip: Clip, info: ClipInfo, fingerprints: Fingerprints) -> HostSource {
        HostSource {
            clip,
            info,
            fingerprints,
        }
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

impl FrameSource for HostSource {
    fn num_frames(&self) -> usize {
        self.info.num_frames
    }

    fn video_size(&self) -> (u32, u32) {
        self.info.video_size
    }

    fn frame(&mut self, index: usize) -> sam2_engine::Result<RgbFrame> {
        let time = self.info.frame(index) as f64;
        let image = self.clip.image(time).map_err(|e| Error::FrameSource {
            frame: index,
            message: image_problem(&e),
        })?;
        let region = image
            .region_of_definition()
            .unwrap_or_else(|| image.bounds());
        let rgb = model_frame(&image, region, self.info.video_size, self.info.linear_light);
        let full_size = (region.width(), region.height())
            == (
                self.info.video_size.0 as usize,
                self.info.video_size.1 as usize,
            );
        // Only full-resolution frames can be compared with a later full-resolution render.
        let print = full_size.then(|| fingerprint(&image, region));
        self.fingerprints.lock().insert(index, print);
        let (width, height) = self.info.video_size;
        Ok(RgbFrame {
            width,
            height,
            data: rgb,
        })
    }
}
