//! Matte output: one object's low-resolution mask logits → a matte at the source resolution.
//!
//! Two steps, as the data flows:
//!
//! 1. **Upsampling** to the frame size, exactly as SAM 2's `F.interpolate(mode="bilinear",
//!    align_corners=False)`, on the GPU (wgpu, `shaders/upsample.wgsl`) or the CPU. Both paths
//!    reproduce PyTorch's coordinates and blend order and agree to a few ulps (bit for bit where
//!    the GPU's `fma` is fused), so the device is a speed choice, never a look choice.
//!    [`MatteUpsampler`] hides which one runs.
//! 2. **Finishing** on the CPU ([`finish`] with [`MatteSettings`]): threshold or softness, hole
//!    filling and speck removal, choke/expand, feather, then conversion to the host's bit depth.
//!
//! Between the two, **Refine Edges** ([`refine_edges`], optional, off by default) replaces the
//! upsampled logits by a guided filter of their probability with the frame as the guide, so that
//! the edge follows the image rather than the 256² logit grid; its output is logits again.
//!
//! Logits stay logits until finishing, so a host can change the finishing settings without
//! upsampling again.
//!
//! [`MatteUpsampler`] first rounds the low-res logits to the **matte precision**
//! ([`precision`]), the precision a track cache stores, so that a matte is the same whether its
//! logits came from the live session or from a cache.

mod bilinear;
pub(crate) mod components;
mod error;
mod finishing;
mod gpu;
mod morphology;
pub mod precision;
mod refine;
mod refine_cpu;
mod refine_gpu;

pub use bilinear::{upsample_bilinear, upsample_bilinear_into};
pub use components::{fill_holes, remove_specks};
pub use error::MatteError;
pub use finishing::{MatteSettings, finish, soften, threshold, to_u8, to_u16};
pub use gpu::{GpuInfo, GpuUpsampler};
pub use morphology::{MAX_FEATHER_RADIUS, expand, feather};
pub use refine::{
    DEFAULT_EPSILON, DEFAULT_RADIUS_PER_1024, EdgeRefinement, Guide, GuideChannels, LOGIT_LIMIT,
    RefinePlan, alpha_to_logit, refine_alpha, refine_edges,
};
pub use refine_cpu::{EdgeRefiner, RefineTimes};

/// Where upsampling runs; a user setting (serde-friendly for the plugin's saved state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatteDevice {
    /// Always the CPU.
    Cpu,
    /// Always the GPU; an error when there is none, for users and tests that must know.
    Gpu,
    /// A hardware GPU when there is one, else the CPU. Software Vulkan drivers (lavapipe, which
    /// runs on the CPU) are passed over, because the CPU path is faster than them. A GPU that
    /// fails later (lost, out of memory, a frame too large for it) is replaced by the CPU for
    /// that frame, with a warning in the log.
    #[default]
    Auto,
}

/// Which device an upsampler ended up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveDevice {
    /// The CPU path.
    Cpu,
    /// The GPU, named.
    Gpu(GpuInfo),
}

/// Upsamples mask logits on the device chosen by a [`MatteDevice`]; made once, used per frame.
#[derive(Debug)]
pub struct MatteUpsampler {
    requested: MatteDevice,
    gpu: Option<GpuUpsampler>,
    /// Refine Edges on the CPU, with its buffers kept from frame to frame.
    refiner: EdgeRefiner,
}

impl MatteUpsampler {
    /// Opens the requested device. Only [`MatteDevice::Gpu`] can fail (no adapter, or it could
    /// not be opened); [`MatteDevice::Auto`] logs why it chose the CPU instead.
    pub fn new(device: MatteDevice) -> Result<Self, MatteError> {
        let gpu = match device {
            MatteDevice::Cpu => None,
            MatteDevice::Gpu => Some(GpuUpsampler::new()?),
            MatteDevice::Auto => match GpuUpsampler::new_hardware() {
                Ok(gpu) => Some(gpu),
                Err(error) => {
                    log::info!("Matte upsampling on the CPU: {error}");
                    None
                }
            },
        };
        Ok(Self {
            requested: device,
            gpu,
            refiner: EdgeRefiner::new(),
        })
    }

    /// The device that was asked for.
    pub fn requested(&self) -> MatteDevice {
        self.requested
    }

    /// The device in use now (a lost GPU under `Auto` turns this to the CPU).
    pub fn active(&self) -> ActiveDevice {
        match &self.gpu {
            Some(gpu) => ActiveDevice::Gpu(gpu.info().clone()),
            None => ActiveDevice::Cpu,
        }
    }

    /// Upsamples row-major `in_w × in_h` logits, rounded to the matte precision
    /// ([`precision::round_logits`]), to `out_w × out_h` logits (see [`upsample_bilinear`] for
    /// the exact definition).
    pub fn upsample(
        &mut self,
        src: &[f32],
        in_w: usize,
        in_h: usize,
        out_w: usize,
        out_h: usize,
    ) -> Result<Vec<f32>, MatteError> {
        let rounded = precision::round_logits(src);
        let src = rounded.as_slice();
        let Some(gpu) = self.gpu.as_mut() else {
            return upsample_bilinear(src, in_w, in_h, out_w, out_h);
        };
        match gpu.upsample(src, in_w, in_h, out_w, out_h) {
            Ok(out) => Ok(out),
            // Caller mistakes are the same on every device: report, do not retry.
            Err(
                error @ (MatteError::EmptySize { .. }
                | MatteError::TooManyPixels { .. }
                | MatteError::LengthMismatch { .. }),
            ) => Err(error),
            Err(error) if self.requested == MatteDevice::Auto => {
                log::warn!("{error} This frame's matte is made on the CPU.");
                if matches!(error, MatteError::DeviceLost { .. }) {
                    self.gpu = None;
                }
                upsample_bilinear(src, in_w, in_h, out_w, out_h)
            }
            Err(error) => Err(error),
        }
    }

    /// Refine Edges as a pipeline stage: upsamples `in_w × in_h` logits (rounded to the matte
    /// precision, as [`MatteUpsampler::upsample`] does) to the guide frame's size,
    /// then, when `refinement` is given, refines them with the frame as the guide
    /// ([`refine_edges`]); the result is logits for [`finish`]. With `None` this is exactly
    /// [`MatteUpsampler::upsample`], bit for bit. On the GPU the frame stays on the card between
    /// upsampling and refinement; the fallbacks are those of [`MatteUpsampler::upsample`].
    pub fn upsample_refined(
        &mut self,
        src: &[f32],
        in_w: usize,
        in_h: usize,
        guide: Guide<'_>,
        refinement: Option<&EdgeRefinement>,
    ) -> Result<Vec<f32>, MatteError> {
        let Some(settings) = refinement else {
            return self.upsample(src, in_w, in_h, guide.width, guide.height);
        };
        let rounded = precision::round_logits(src);
        let src = rounded.as_slice();
        let Some(gpu) = self.gpu.as_mut() else {
            let mut upsampled = upsample_bilinear(src, in_w, in_h, guide.width, guide.height)?;
            self.refiner.refine(&mut upsampled, guide, settings, 0)?;
            return Ok(upsampled);
        };
        match gpu.upsample_refined(src, in_w, in_h, guide, settings) {
            Ok(out) => Ok(out),
            Err(
                error @ (MatteError::EmptySize { .. }
                | MatteError::TooManyPixels { .. }
                | MatteError::LengthMismatch { .. }
                | MatteError::InvalidSetting { .. }),
            ) => Err(error),
            Err(error) if self.requested == MatteDevice::Auto => {
                log::warn!("{error} This frame's matte is made on the CPU.");
                if matches!(error, MatteError::DeviceLost { .. }) {
                    self.gpu = None;
                }
                let mut upsampled = upsample_bilinear(src, in_w, in_h, guide.width, guide.height)?;
                self.refiner.refine(&mut upsampled, guide, settings, 0)?;
                Ok(upsampled)
            }
            Err(error) => Err(error),
        }
    }
}
