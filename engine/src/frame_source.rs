//! Where a clip session gets its frames: by index, in any order, only when a model call needs one.
//!
//! The session never holds the clip; a host plugin answers from its clip at a time, the CLI from a
//! folder of images.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::clip::Clip;
use crate::error::{Error, Result};
use crate::jpeg;

/// One frame as packed 8-bit RGB — what SAM 2's preprocessing (PIL, 8-bit) starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    /// `width · height · 3` bytes, row-major, top row first.
    pub data: Vec<u8>,
}

/// A clip as the predictor sees it.
pub trait FrameSource: Send {
    /// Number of frames; indices run from 0.
    fn num_frames(&self) -> usize;
    /// The video size (width, height) every frame has.
    fn video_size(&self) -> (u32, u32);
    /// The frame at `index`; a failure is reported as [`Error::FrameSource`].
    fn frame(&mut self, index: usize) -> Result<RgbFrame>;
    /// Whether a frame may come at another size than [`video_size`](Self::video_size): a host's
    /// proxy render. The encoder resizes every frame to its square input, so such a frame is
    /// resized once, from its own pixels. By default every frame must have the video size.
    fn frames_may_be_scaled(&self) -> bool {
        false
    }
}

/// Frames from a clip folder (docs/formats.md), decoded on demand. While the model works on one
/// frame, the next one in the direction of travel is decoded on another thread, so reading PNG or
/// JPEG files does not add to the time of a propagation.
#[derive(Debug)]
pub struct FolderSource {
    clip: Clip,
    size: (u32, u32),
    last: Option<usize>,
    ahead: Option<(usize, JoinHandle<Result<RgbFrame>>)>,
}

impl FolderSource {
    pub fn open(dir: impl AsRef<Path>) -> Result<FolderSource> {
        let clip = Clip::open(dir)?;
        let [w, h] = clip.video_size()?;
        Ok(FolderSource {
            clip,
            size: (w, h),
            last: None,
            ahead: None,
        })
    }

    pub fn clip(&self) -> &Clip {
        &self.clip
    }

    fn path(&self, index: usize) -> Result<PathBuf> {
        self.clip
            .frame_path(index)
            .map(Path::to_path_buf)
            .ok_or(Error::FrameOutOfRange {
                frame: index,
                num_frames: self.clip.len(),
            })
    }
}

/// Decodes one frame file to packed RGB, checking its size against the clip's. The format is
/// told by content, as PIL tells it: JPEG through libjpeg-turbo as PIL decodes it ([`crate::jpeg`]),
/// anything else (PNG) through the `image` crate.
fn decode(path: &Path, index: usize, size: (u32, u32)) -> Result<RgbFrame> {
    let unreadable = |message: String| Error::FrameSource {
        frame: index,
        message: format!("{} could not be decoded: {message}", path.display()),
    };
    let bytes = std::fs::read(path).map_err(|e| Error::FrameSource {
        frame: index,
        message: format!("{} could not be read ({e})", path.display()),
    })?;
    let frame = if jpeg::is_jpeg(&bytes) {
        let decoded = jpeg::decode_jpeg(&bytes).map_err(|e| unreadable(e.to_string()))?;
        if let Some(warning) = &decoded.warning {
            log::warn!(
                "Frame {index}: {} has corrupt JPEG data (libjpeg-turbo: {warning}); it is decoded as PIL decodes it.",
                path.display()
            );
        }
        RgbFrame {
            width: decoded.width,
            height: decoded.height,
            data: decoded.data,
        }
    } else {
        let image = image::load_from_memory(&bytes).map_err(|e| unreadable(e.to_string()))?;
        // As PIL's convert("RGB"): alpha is dropped, not composited.
        let rgb = image.to_rgb8();
        RgbFrame {
            width: rgb.width(),
            height: rgb.height(),
            data: rgb.into_raw(),
        }
    };
    if (frame.width, frame.height) != size {
        return Err(Error::FrameSource {
            frame: index,
            message: format!(
                "{} is {}×{} but the clip is {}×{}",
                path.display(),
                frame.width,
                frame.height,
                size.0,
                size.1
            ),
        });
    }
    Ok(frame)
}

impl FrameSource for FolderSource {
    fn num_frames(&self) -> usize {
        self.clip.len()
    }

    fn video_size(&self) -> (u32, u32) {
        self.size
    }

    fn frame(&mut self, index: usize) -> Result<RgbFrame> {
        let path = self.path(index)?;
        let frame = match self.ahead.take() {
            Some((ahead, handle)) if ahead == index => handle.join().unwrap_or_else(|_| {
                // The decoder thread died (it cannot panic on input); decode here instead.
                decode(&path, index, self.size)
            })?,
            // A guess that missed keeps running detached and is dropped when done.
            _ => decode(&path, index, self.size)?,
        };
        let step: isize = match self.last {
            Some(last) if last.abs_diff(index) == 1 => index as isize - last as isize,
            _ => 1,
        };
        self.last = Some(index);
        if let Some(next) = index.checked_add_signed(step)
            && let Ok(next_path) = self.path(next)
        {
            let size = self.size;
            let handle = std::thread::Builder::new()
                .name("sam2-frame-reader".into())
                .spawn(move || decode(&next_path, next, size));
            // Without a thread the next frame is simply read when it is asked for.
            self.ahead = handle.ok().map(|h| (next, h));
        }
        Ok(frame)
    }
}
