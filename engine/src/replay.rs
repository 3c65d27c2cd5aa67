//! Runs an interaction script (docs/formats.md) on a clip session: what the CLI's `track` does and
//! what the parity tests compare with the official traces.

use std::ops::ControlFlow;
use std::path::Path;

use crate::error::{Error, Result};
use crate::predictor::{ClipSession, FrameMasks};
use crate::propagation::{Direction, Propagation, PropagationEnd};
use crate::script::{Interaction, Op, Script};

/// The outputs of one interaction, in the order the session produced them.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub step: usize,
    pub op: Op,
    pub frames: Vec<FrameMasks>,
}

impl StepResult {
    /// Number of (frame, object) outputs, the K of a trace step.
    pub fn outputs(&self) -> usize {
        self.frames.iter().map(|f| f.objects.len()).sum()
    }
}

/// Reads a mask prompt: a PNG/JPEG of the video size; a pixel is set when its first channel is
/// above half range (> 127 for 8 bits, > 32767 for 16 bits).
pub fn read_mask(path: &Path, width: u32, height: u32) -> Result<Vec<bool>> {
    let image = image::open(path).map_err(|e| Error::MaskFile {
        path: path.to_path_buf(),
        problem: format!("it could not be read as an image ({e})"),
    })?;
    if (image.width(), image.height()) != (width, height) {
        return Err(Error::MaskFile {
            path: path.to_path_buf(),
            problem: format!(
                "it is {}×{} but the clip is {width}×{height}",
                image.width(),
                image.height()
            ),
        });
    }
    let bytes_per_channel = image.color().bytes_per_pixel() / image.color().channel_count().max(1);
    Ok(if bytes_per_channel >= 2 {
        first_channel_16(&image)
    } else {
        first_channel_8(&image)
    })
}

fn first_channel_8(image: &image::DynamicImage) -> Vec<bool> {
    let rgba = image.to_rgba8();
    rgba.pixels().map(|p| p.0[0] > 127).collect()
}

fn first_channel_16(image: &image::DynamicImage) -> Vec<bool> {
    let rgba = image.to_rgba16();
    rgba.pixels().map(|p| p.0[0] > 32767).collect()
}

/// Whether a propagation's [`StepResult`] holds its frames' outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepFrames {
    /// Every propagated frame's outputs, for a trace or a comparison: memory grows with the clip.
    Kept,
    /// None (`on_frame` saw each frame as it came): memory flat in the clip's length.
    Streamed,
}

/// Runs every interaction of `script` in order; `on_step` sees each step's outputs as soon as it
/// is done, `on_frame` each propagated frame (progress). Either may stop the run: `on_frame`
/// within a propagation, so that a cancel waits for one frame rather than a whole clip (the step
/// is then not reported).
pub fn run_script(
    session: &mut ClipSession,
    script: &Script,
    on_frame: impl FnMut(usize, &FrameMasks) -> ControlFlow<()>,
    on_step: impl FnMut(&StepResult) -> ControlFlow<()>,
) -> Result<()> {
    run_script_with(session, script, StepFrames::Kept, on_frame, on_step)
}

/// [`run_script`], with a propagation's step keeping its frames or not (`keep`).
pub fn run_script_with(
    session: &mut ClipSession,
    script: &Script,
    keep: StepFrames,
    mut on_frame: impl FnMut(usize, &FrameMasks) -> ControlFlow<()>,
    mut on_step: impl FnMut(&StepResult) -> ControlFlow<()>,
) -> Result<()> {
    let (w, h) = session.video_size();
    for (index, interaction) in script.interactions.iter().enumerate() {
        let frames = match interaction {
            Interaction::AddPoints {
                frame,
                object,
                points,
                labels,
                clear_old_points,
            } => {
                vec![session.add_points(*frame, *object, points, labels, *clear_old_points)?]
            }
            Interaction::AddBox {
                frame,
                object,
                bbox,
                points,
                labels,
            } => {
                vec![session.add_box(*frame, *object, *bbox, points, labels)?]
            }
            Interaction::AddMask {
                frame,
                object,
                mask,
            } => {
                let mask = read_mask(&script.resolve(mask), w, h)?;
                vec![session.add_mask(*frame, *object, &mask)?]
            }
            Interaction::Propagate {
                start_frame,
                reverse,
                max_frames,
            } => {
                let mut frames = Vec::new();
                let end = session.propagate(
                    Propagation {
                        start_frame: *start_frame,
                        direction: Direction::from_reverse(*reverse),
                        max_frames: *max_frames,
                    },
                    |masks| {
                        if keep == StepFrames::Kept {
                            frames.push(masks.clone());
                        }
                        on_frame(index, masks)
                    },
                )?;
                if let PropagationEnd::Cancelled { .. } = end {
                    return Ok(());
                }
                frames
            }
            Interaction::RemoveObject { object } => session.remove_object(*object)?,
            Interaction::Reset => {
                session.reset();
                Vec::new()
            }
        };
        let result = StepResult {
            step: index,
            op: interaction.op(),
            frames,
        };
        if on_step(&result).is_break() {
            break;
        }
    }
    Ok(())
}
