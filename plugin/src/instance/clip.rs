//! The Source clip as the session sees it (connected, its frame range, its full-resolution size
//! and pixel aspect), and the clip actions: clip preferences and regions of interest.

use std::ffi::CStr;

use openfx::sys::generic::core::{OfxStatus, kOfxStatFailed, kOfxStatOK, kOfxStatReplyDefault};
use openfx::sys::image_effect_v1::image_effect::{
    kOfxImageClipPropConnected, kOfxImageComponentRGBA, kOfxImageEffectFrameVarying,
    kOfxImageEffectPropComponents, kOfxImageEffectPropFrameRange, kOfxImageEffectPropPixelDepth,
    kOfxImageEffectPropPreMultiplication, kOfxImagePreMultiplied, kOfxImagePropPixelAspectRatio,
    kOfxImageUnPreMultiplied,
};

use super::{Instance, required_time};
use crate::error::{PluginError, Result};
use crate::ffi::images::Clip;
use crate::ffi::props::PropSet;
use crate::params::Values;
use crate::render::pixel_rect;
use crate::tracker::{ClipInfo, ClipLength, OPEN_ENDED_FRAMES};

/// The effect's duration (kOfxImageEffectInstancePropEffectDuration), for clips without a range.
const EFFECT_DURATION: &CStr = c"OfxImageEffectInstancePropEffectDuration";

/// Largest source side the session accepts (a generator's "infinite" region would be refused).
const MAX_SIDE: usize = 32_768;

/// The output's components, named for the clip (`OfxImageClipPropComponents_` + clip name).
const OUTPUT_COMPONENTS: &CStr = c"OfxImageClipPropComponents_Output";
/// The source's region of interest (`OfxImageClipPropRoI_` + clip name).
const SOURCE_ROI: &CStr = c"OfxImageClipPropRoI_Source";

fn status(ok: bool) -> OfxStatus {
    if ok { kOfxStatOK } else { kOfxStatFailed }
}

impl Instance {
    /// The connected Source clip.
    pub(super) fn connected_source(&self) -> Result<Clip> {
        let clip = self.source.ok_or(PluginError::NoSource)?;
        // Hosts before OpenFX 1.1 do not say; their clips are connected while an effect runs.
        let connected = clip
            .props()
            .and_then(|p| p.int(kOfxImageClipPropConnected, 0))
            .is_none_or(|c| c != 0);
        if connected {
            Ok(clip)
        } else {
            Err(PluginError::NoSource)
        }
    }

    /// The Source clip's pixel aspect ratio.
    pub(crate) fn source_par(&self) -> f64 {
        // Square pixels unless the host says otherwise (OpenFX's default for the property).
        self.source
            .and_then(|c| c.props())
            .and_then(|p| p.double(kOfxImagePropPixelAspectRatio, 0))
            .filter(|p| p.is_finite() && *p > 0.0)
            .unwrap_or(1.0)
    }

    /// The clip's first frame and length: its frame range; a clip without one (MLT) takes the
    /// Clip Length parameter when set, else the effect's duration, else the Output clip's range,
    /// else it is open-ended from frame 0 ([`OPEN_ENDED_FRAMES`]) — never one frame.
    fn clip_span(&self, clip: Clip, values: &Values) -> Result<(i64, usize, ClipLength)> {
        let range = |c: Clip| {
            c.props()
                .and_then(|p| p.doubles::<2>(kOfxImageEffectPropFrameRange))
                .filter(|r| r.iter().all(|v| v.is_finite()))
        };
        let from_range = |[first, last]: [f64; 2]| -> Result<(i64, usize)> {
            let first_frame = first.round() as i64;
            let last_frame = (last.round() as i64).max(first_frame);
            let n = usize::try_from(last_frame - first_frame + 1).map_err(|_| {
                PluginError::Internal(format!("a frame range of {first_frame}–{last_frame}"))
            })?;
            Ok((first_frame, n))
        };
        if let Some(r) = range(clip) {
            let (first, n) = from_range(r)?;
            return Ok((first, n, ClipLength::Known));
        }
        if let Some(n) = values.clip_length {
            return Ok((0, n, ClipLength::Known));
        }
        let duration = self
            .effect
            .props()
            .and_then(|p| p.double(EFFECT_DURATION, 0))
            .filter(|d| d.is_finite() && *d >= 1.0);
        if let Some(d) = duration {
            return Ok((0, d.round() as usize, ClipLength::Known));
        }
        if let Some(r) = self.output.and_then(range) {
            let (first, n) = from_range(r)?;
            return Ok((first, n, ClipLength::Known));
        }
        Ok((0, OPEN_ENDED_FRAMES, ClipLength::OpenEnded))
    }

    /// The clip as the session sees it: first frame and length ([`Instance::clip_span`]),
    /// full-resolution size (at the first frame).
    pub(super) fn clip_info(&self, clip: Clip, values: &Values) -> Result<ClipInfo> {
        let (first_frame, num_frames, length) = self.clip_span(clip, values)?;
        let rod = clip
            .region_of_definition(first_frame as f64)
            .ok_or(PluginError::NoSource)?;
        let pixels = pixel_rect(rod, [1.0, 1.0], self.source_par());
        let (w, h) = (pixels.width(), pixels.height());
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
            return Err(PluginError::UnsupportedImage {
                what: format!("{w}×{h}"),
            });
        }
        let format = {
            let text = |name| clip.props().and_then(|p| p.string(name, 0));
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(
                &(
                    text(kOfxImageEffectPropPixelDepth),
                    text(kOfxImageEffectPropComponents),
                ),
                &mut h,
            );
            std::hash::Hasher::finish(&h)
        };
        Ok(ClipInfo {
            first_frame,
            num_frames: num_frames.max(1),
            length,
            video_size: (w as u32, h as u32),
            linear_light: values.linear_source,
            format,
        })
    }

    /// kOfxImageEffectActionGetClipPreferences: RGBA out, premultiplied as the output mode says.
    pub fn clip_preferences(&self, out: PropSet) -> OfxStatus {
        let values = match self.params.values(0.0) {
            Ok(values) => values,
            Err(e) => {
                self.show_error(&e);
                return kOfxStatFailed;
            }
        };
        let premultiplied = values.look.mode.premultiplied(values.look.premultiply);
        let ok = out.set_string(
            OUTPUT_COMPONENTS,
            0,
            &kOfxImageComponentRGBA.to_string_lossy(),
        ) && out.set_string(
            kOfxImageEffectPropPreMultiplication,
            0,
            &if premultiplied {
                kOfxImagePreMultiplied
            } else {
                kOfxImageUnPreMultiplied
            }
            .to_string_lossy(),
        );
        // The matte follows the clip frame by frame.
        out.set_int(kOfxImageEffectFrameVarying, 0, 1);
        status(ok)
    }

    /// kOfxImageEffectActionGetRegionsOfInterest: SAM 2 needs the whole source frame, whatever
    /// window is rendered.
    pub fn regions_of_interest(&self, args: PropSet, out: PropSet) -> OfxStatus {
        let time = match required_time(args, "regions of interest") {
            Ok(time) => time,
            Err(e) => {
                self.show_error(&e);
                return kOfxStatFailed;
            }
        };
        let Some(rod) = self.source.and_then(|c| c.region_of_definition(time)) else {
            return kOfxStatReplyDefault;
        };
        status(out.set_doubles(SOURCE_ROI, &[rod.x1, rod.y1, rod.x2, rod.y2]))
    }
}
