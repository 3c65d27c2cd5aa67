//! Where a clip session gets its frames: by index, in any order, only when a model call needs one.
//!
//! The session never holds the clip; a host plugin answers from its clip at a time, the CLI from a
//! folder of images.

use std::path::Path;

use crate::clip::Clip;
use crate::error::{Error, Result};

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
}

/// Frames from a clip folder (docs/formats.md), decoded on demand.
#[derive(Debug)]
pub struct FolderSource {
    clip: Clip,
    size: (u32, u32),
}

impl FolderSource {
    pub fn open(dir: impl AsRef<Path>) -> Result<FolderSource> {
        let clip = Clip::open(dir)?;
        let [w, h] = clip.video_size()?;
        Ok(FolderSource { clip, size: (w, h) })
    }

    pub fn clip(&self) -> &Clip {
        &self.clip
    }
}

impl FrameSource for FolderSource {
    fn num_frames(&self) -> usize {
        self.clip.len()
    }

    fn video_size(&self) -> (u32, u32) {
        self.size
    }

    fn frame(&mut self, index: usize) -> Result<RgbFrame> {
        let path = self.clip.frame_path(index).ok_or(Error::FrameOutOfRange {
            frame: index,
            num_frames: self.clip.len(),
        })?;
        let image = image::open(path).map_err(|e| Error::FrameSource {
            frame: index,
            message: format!("{} could not be decoded ({e})", path.display()),
        })?;
        // As PIL's convert("RGB"): alpha is dropped, not composited.
        let rgb = image.to_rgb8();
        let frame = RgbFrame {
            width: rgb.width(),
            height: rgb.height(),
            data: rgb.into_raw(),
        };
        if (frame.width, frame.height) != self.size {
            return Err(Error::FrameSource {
                frame: index,
                message: format!(
                    "{} is {}×{} but the clip is {}×{}",
                    path.display(),
                    frame.width,
                    frame.height,
                    self.size.0,
                    self.size.1
                ),
            });
        }
        Ok(frame)
    }
}
