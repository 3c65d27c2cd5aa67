//! The render path: the frame's mattes — from the Track Cache File when it covers the frame and
//! matches (no tracker, no model), else from the live session (tracking on render within reach, a
//! new session when the source changed or proxy frames were encoded) — finished for the render
//! scale, and composed into the output; or the source passed through with a message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openfx::sys::generic::core::{OfxStatus, kOfxStatFailed, kOfxStatOK};
use openfx::sys::image_effect_v1::image_effect::{
    kOfxImageEffectPropRenderScale, kOfxImageEffectPropRenderWindow,
};
use sam2_engine::matte::{
    EdgeRefinement, Guide, MatteDevice, MatteSettings, MatteUpsampler, finish,
};
use sam2_engine::model::device::Device;

use super::{Instance, left_out, required_time};
use crate::error::{PluginError, Result};
use crate::ffi::images::{Image, ImageError};
use crate::ffi::messages::Severity;
use crate::ffi::props::PropSet;
use crate::host_source::image_problem;
use crate::params::Values;
use crate::render::{
    MatteFrame, ObjectLayer, RectI, Rows, fingerprint, model_frame, pixel_rect, render,
    scaled_refinement, scaled_settings,
};
use crate::track_cache::{self, Lookup, Problem};
use crate::tracker::{ClipInfo, ClipLength, FrameState, Settled, Tracker};

/// Finished mattes of one frame, kept for the next render of the same frame (hosts that render
/// in tiles ask for the same frame many times).
#[derive(Debug)]
pub(super) struct Finished {
    index: usize,
    region: RectI,
    settings: MatteSettings,
    refined: Option<Refined>,
    logits: Vec<(u32, Arc<[f32]>)>,
    mattes: Vec<(u32, Vec<f32>)>,
}

/// Refine Edges as a render made it: the settings at the render's scale, and the fingerprint of
/// the source pixels that guided it (the mattes follow them: an upstream change that leaves the
/// session's logits alone, such as a proxy render's, must still refine anew).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Refined {
    settings: EdgeRefinement,
    source: u64,
    /// The guide was sRGB-encoded from a linear source.
    linear: bool,
}

impl Finished {
    fn matches(
        &self,
        index: usize,
        region: RectI,
        settings: &MatteSettings,
        refined: Option<&Refined>,
        logits: &[(u32, Arc<[f32]>)],
    ) -> bool {
        self.index == index
            && self.region == region
            && &self.settings == settings
            && self.refined.as_ref() == refined
            && self.logits.len() == logits.len()
            && self
                .logits
                .iter()
                .zip(logits)
                .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
    }
}

/// What a render shows.
#[derive(Debug)]
enum Shown {
    /// The mattes (possibly none: no object has prompts) over this region, and a warning about
    /// objects not tracked here.
    Mattes {
        region: RectI,
        finished: Option<Arc<Finished>>,
        untracked: Option<String>,
    },
    /// No object is tracked on this frame: the source, and this warning.
    NotTracked(String),
}

/// What the Track Cache File gave a render.
#[derive(Debug)]
enum FromCache {
    /// The frame's mattes, from the cache alone.
    Served(Shown),
    /// The live session renders the frame; why the cache was not used, when that needs saying.
    Live(Option<Problem>),
}

/// The warning for a frame where `missing` objects (names; all when `None`) are not tracked.
fn not_tracked_text(frame: i64, nearest: Option<i64>, missing: Option<&[String]>) -> String {
    let hint = match nearest {
        Some(n) if n < frame => {
            format!(" (the nearest tracked frame is {n}: go there and press Track Forward)")
        }
        Some(n) => {
            format!(" (the nearest tracked frame is {n}: go there and press Track Backward)")
        }
        None => String::new(),
    };
    match missing {
        None => format!("Frame {frame} is not tracked yet; press Track to see its matte{hint}."),
        Some(names) => format!(
            "{} {} not tracked at frame {frame} yet; press Track to see {}{hint}.",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" },
            if names.len() == 1 { "it" } else { "them" },
        ),
    }
}

fn matte_device(device: Device) -> MatteDevice {
    match device {
        Device::Cpu => MatteDevice::Cpu,
        // A GPU for the model does not require one for the matte, which the CPU makes as well.
        Device::Gpu | Device::Auto => MatteDevice::Auto,
    }
}

/// How long a render without temporal access waits for the frames before it that other render
/// threads are tracking (frame-threaded hosts render several frames of a clip at once) when
/// nobody works with the session and the track makes no progress.
const IN_ORDER_WAIT: Duration = Duration::from_secs(5);

/// How far behind the nearest tracked frame may be for a render to wait for the frames between.
const IN_ORDER_WINDOW: usize = 32;

/// What the tracker gave for the rendered frame.
struct Tracked {
    /// Some object has prompts (the state may still be `NoObjects`: the engine refused them all).
    wanted: bool,
    /// The clip index of the first prompted frame, if any.
    first_prompt: Option<usize>,
    info: ClipInfo,
    index: usize,
    state: FrameState,
    logits: Vec<(u32, Arc<[f32]>)>,
    /// The side of the low-resolution logits (0 when there are none).
    side: usize,
}

impl Instance {
    /// Whether the source image rendered now differs from the one the session encoded for this
    /// frame (an upstream change, or a host that handed over another frame's pixels): then
    /// nothing tracked through it can be vouched for.
    fn source_changed(
        &self,
        tracker: &mut Tracker,
        image: &Image,
        index: usize,
        info: &ClipInfo,
    ) -> Result<bool> {
        let known = match tracker.fingerprint(index)? {
            None => return Ok(false),
            // Encoded from a proxy render: the session is provisional.
            Some(None) => return Ok(true),
            Some(Some(known)) => known,
        };
        // Hosts before OpenFX 1.4 give no region of definition; their images are whole frames.
        let region = image
            .region_of_definition()
            .unwrap_or_else(|| image.bounds());
        if (region.width(), region.height())
            != (info.video_size.0 as usize, info.video_size.1 as usize)
        {
            return Ok(false);
        }
        Ok(fingerprint(image, region) != known)
    }

    /// Upsamples `logits` to `w × h` (and refines them with `refine`'s guide and settings) with
    /// the matte upsampler for `device`, made once.
    fn upsample(
        &self,
        device: Device,
        logits: &[f32],
        side: usize,
        (w, h): (usize, usize),
        refine: Option<(Guide<'_>, &EdgeRefinement)>,
    ) -> Result<Vec<f32>> {
        let wanted = matte_device(device);
        let mut slot = self.upsampler.lock();
        if slot.as_ref().is_none_or(|(d, _)| *d != wanted) {
            *slot = Some((wanted, MatteUpsampler::new(wanted)?));
        }
        let Some((_, upsampler)) = slot.as_mut() else {
            return Err(PluginError::Internal("no matte upsampler".into()));
        };
        Ok(match refine {
            // Off: today's upsampling, untouched.
            None => upsampler.upsample(logits, side, side, w, h)?,
            Some((guide, settings)) => {
                upsampler.upsample_refined(logits, side, side, guide, Some(settings))?
            }
        })
    }

    /// Upsamples, refines (with `refine`: the settings at the render's scale and the source
    /// image of this render as the guide) and finishes the objects' mattes for `region` (or
    /// reuses the last ones).
    fn finish_mattes(
        &self,
        tracked: Tracked,
        region: RectI,
        settings: MatteSettings,
        refine: Option<(EdgeRefinement, &dyn Rows)>,
        values: &Values,
    ) -> Result<Arc<Finished>> {
        let Tracked {
            index,
            logits,
            side,
            ..
        } = tracked;
        let refined = refine.map(|(settings, source)| Refined {
            settings,
            source: fingerprint(source, region),
            linear: values.linear_source,
        });
        if let Some(f) = self.finished.lock().as_ref()
            && f.matches(index, region, &settings, refined.as_ref(), &logits)
        {
            return Ok(Arc::clone(f));
        }
        let (w, h) = (region.width(), region.height());
        // The guide: the source fetched for this render, read as the model reads it (8-bit RGB of
        // the whole region, top row first, sRGB-encoded when the source is linear).
        let guide_frame =
            refine.map(|(_, source)| model_frame(source, region, values.linear_source));
        let guide = guide_frame.as_ref().map(|f| Guide {
            rgb: &f.data,
            width: w,
            height: h,
        });
        let mut mattes = Vec::with_capacity(logits.len());
        for (slot, l) in &logits {
            let refine = guide.zip(refined.as_ref().map(|r| &r.settings));
            let up = self.upsample(values.device, l, side, (w, h), refine)?;
            mattes.push((*slot, finish(&up, w, h, &settings)?));
        }
        let finished = Arc::new(Finished {
            index,
            region,
            settings,
            refined,
            logits,
            mattes,
        });
        *self.finished.lock() = Some(Arc::clone(&finished));
        Ok(finished)
    }

    /// Brings the session to the frame at `time`: a new one when the frame's source changed or
    /// proxy frames were encoded (full-resolution renders only), then the frame tracked within
    /// reach. The render's `source` image is lent to the session meanwhile, so that encoding this
    /// frame (for its prompts or its track) does not fetch it from the host a second time. Sentences about objects left out go to
    /// `warnings`.
    fn track_once(
        &self,
        time: f64,
        scale: [f64; 2],
        values: &Values,
        source: &mut Option<Image>,
        warnings: &mut Vec<String>,
    ) -> Result<Tracked> {
        let (objects, mut unreadable) = self.read_prompts(values)?;
        warnings.append(&mut unreadable);
        let frame = time.round() as i64;
        let mut tracker = self.lock_tracker()?;
        // Lent for as long as the tracker is held (syncing the prompts may encode the frame too);
        // given back before the lock is released (drop order).
        let _lent = self.lent.lend(time, source);
        let mut info = self.bind_session(&mut tracker, values, &objects)?;
        let index = info.index(frame).ok_or(PluginError::OutsideClip {
            frame,
            first: info.first_frame,
            last: info.last_frame(),
        })?;
        let full = scale == [1.0, 1.0];
        let changed = full
            && match self
                .lent
                .with(|image| self.source_changed(&mut tracker, image, index, &info))
            {
                Some(changed) => changed?,
                // No source image: nothing to compare, the session stays.
                None => false,
            };
        if full && (changed || tracker.has_proxy_frames()?) {
            log::info!(
                "frame {frame}: the session read proxy frames or the source changed; starting a new session"
            );
            tracker.drop_session()?;
            info = self.bind_session(&mut tracker, values, &objects)?;
        }
        if info.length == ClipLength::OpenEnded && !objects.is_empty() {
            warnings.push(
                "The host gives no frame range or duration for the clip, so its length is unknown: tracking goes on open-ended, exact for clips of 16 frames or more; for a shorter clip set Clip Length (Cache page) to its frame count."
                    .into(),
            );
        }
        // Without temporal access only the rendered frame can be read: one step at a time.
        let reach = if crate::ffi::host::temporal_clip_access() {
            values.reach
        } else {
            values.reach.min(1)
        };
        let Settled {
            failed,
            state,
            logits,
        } = tracker.settle(&objects, index, reach, &mut || self.effect.aborted())?;
        warnings.append(&mut left_out(values, failed));
        let side = match tracker.low_res_side() {
            Some(side) => side,
            None if logits.is_empty() => 0,
            None => {
                return Err(PluginError::Internal(
                    "mattes without a session to size them".into(),
                ));
            }
        };
        Ok(Tracked {
            wanted: objects.values().any(|p| !p.is_empty()),
            first_prompt: objects
                .values()
                .flat_map(|p| p.frames.keys())
                .filter_map(|&f| info.index(f))
                .min(),
            info,
            index,
            state,
            logits,
            side,
        })
    }

    /// [`Instance::track_once`]; without temporal access, a frame whose predecessors other render
    /// threads are tracking (a frame-threaded host, MLT, renders several frames of a clip at
    /// once) waits for them while they make progress — no lock held meanwhile — rather than pass
    /// through: only the rendered frame can be read, so a frame is tracked from the one before.
    fn track_to(
        &self,
        time: f64,
        scale: [f64; 2],
        values: &Values,
        source: &mut Option<Image>,
        warnings: &mut Vec<String>,
    ) -> Result<Tracked> {
        let mut progress: Option<(usize, Instant)> = None;
        loop {
            let mut these = Vec::new();
            let tracked = self.track_once(time, scale, values, source, &mut these)?;
            // The frame before which nothing can be tracked here yet: the nearest tracked one, or,
            // when no object could be given its prompts (their frame cannot be read now), the
            // first prompted frame.
            let behind = match &tracked.state {
                FrameState::NotTracked {
                    nearest: Some(n), ..
                } => Some(*n),
                FrameState::NoObjects | FrameState::NotTracked { nearest: None, .. }
                    if tracked.wanted =>
                {
                    tracked.first_prompt
                }
                _ => None,
            };
            let waiting = match behind {
                Some(n)
                    if !crate::ffi::host::temporal_clip_access()
                        && values.reach > 0
                        && n < tracked.index
                        && tracked.index - n <= IN_ORDER_WINDOW
                        && !self.effect.aborted() =>
                {
                    let busy = self.tracker.try_lock().is_none_or(|t| t.session_busy());
                    match progress {
                        Some((seen, since)) if seen == n && !busy => {
                            since.elapsed() < IN_ORDER_WAIT
                        }
                        _ => {
                            progress = Some((n, Instant::now()));
                            true
                        }
                    }
                }
                _ => false,
            };
            if !waiting {
                warnings.append(&mut these);
                return Ok(tracked);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The region the mattes cover: the source image's, else the clip's region of definition.
    fn render_region(&self, time: f64, scale: [f64; 2], source: Option<&Image>) -> Result<RectI> {
        let clip = self.connected_source()?;
        source
            .and_then(Image::region_of_definition)
            .or_else(|| {
                clip.region_of_definition(time)
                    .map(|rod| pixel_rect(rod, scale, self.source_par()))
            })
            .ok_or(PluginError::NoSource)
    }

    /// The frame's mattes from the Track Cache File, when it is set, covers the frame and matches
    /// the prompts, the model and (at full resolution) the frame's pixels.
    fn cached_mattes(
        &self,
        time: f64,
        scale: [f64; 2],
        values: &Values,
        source: Option<&Image>,
    ) -> FromCache {
        let Some(path) = values.track_cache.as_deref() else {
            return FromCache::Live(None);
        };
        let problem = |e: PluginError| {
            FromCache::Live(Some(Problem {
                stale: false,
                text: format!("The track cache {} cannot be used: {e}", path.display()),
            }))
        };
        // What the live path reports too (no source, unreadable prompts) is left to it.
        let prepared = (|| {
            let clip = self.connected_source()?;
            let info = self.clip_info(clip, values)?;
            let (objects, _) = self.read_prompts(values)?;
            let region = self.render_region(time, scale, source)?;
            Ok::<_, PluginError>((info, track_cache::script(&objects, &info), region))
        })();
        let Ok((info, script, region)) = prepared else {
            return FromCache::Live(None);
        };
        let expected = match track_cache::expected(&script, self.model_dir(values).ok().as_deref())
        {
            Ok(expected) => expected,
            Err(e) => return problem(e),
        };
        let Some(index) = info.index(time.round() as i64) else {
            return FromCache::Live(None);
        };
        // The frame as the model would see it, at full resolution only (a proxy frame has other
        // pixels): it must be the frame that was tracked.
        let full = scale == [1.0, 1.0]
            && (region.width(), region.height())
                == (info.video_size.0 as usize, info.video_size.1 as usize);
        let digest = || {
            source.filter(|_| full).map(|image| {
                sam2_engine::track_cache::frame_digest(&model_frame(
                    image,
                    region,
                    values.linear_source,
                ))
            })
        };
        let found = track_cache::lookup(
            &mut self.track_cache.lock(),
            path,
            &expected,
            &info,
            index,
            digest,
        );
        match found {
            Lookup::Served { logits, side } => {
                let tracked = Tracked {
                    wanted: true,
                    first_prompt: None,
                    info,
                    index,
                    state: FrameState::Ready,
                    logits,
                    side,
                };
                let settings = scaled_settings(&values.matte, scale[0]);
                let refine = refinement_for(values, scale, source, time);
                match self.finish_mattes(tracked, region, settings, refine, values) {
                    Ok(finished) => FromCache::Served(Shown::Mattes {
                        region,
                        finished: Some(finished),
                        untracked: None,
                    }),
                    Err(e) => problem(e),
                }
            }
            Lookup::NotCovered => FromCache::Live(None),
            Lookup::Unusable(why) => FromCache::Live(Some(why)),
        }
    }

    /// What the frame at `time` shows, and warnings to show with it.
    fn frame_mattes(
        &self,
        time: f64,
        scale: [f64; 2],
        values: &Values,
        source: &mut Option<Image>,
    ) -> Result<(Shown, Vec<String>)> {
        let mut warnings = Vec::new();
        let tracked = self.track_to(time, scale, values, source, &mut warnings)?;
        let frame = time.round() as i64;
        let region = self.render_region(time, scale, source.as_ref())?;
        let untracked = match &tracked.state {
            // Prompts the engine refused on every object (warnings say why): nothing here can
            // be vouched for.
            FrameState::NoObjects if tracked.wanted => {
                return Ok((
                    Shown::NotTracked(format!("Frame {frame} has no matte.")),
                    warnings,
                ));
            }
            FrameState::NoObjects => {
                return Ok((
                    Shown::Mattes {
                        region,
                        finished: None,
                        untracked: None,
                    },
                    warnings,
                ));
            }
            FrameState::NotTracked { nearest, missing } => {
                let nearest = nearest.map(|i| tracked.info.frame(i));
                if tracked.logits.is_empty() {
                    return Ok((
                        Shown::NotTracked(not_tracked_text(frame, nearest, None)),
                        warnings,
                    ));
                }
                let names: Vec<String> = missing
                    .iter()
                    .map(|&slot| values.object_name(slot))
                    .collect();
                Some(not_tracked_text(frame, nearest, Some(&names)))
            }
            FrameState::Ready => None,
        };
        // The objects current here are shown even when others are not tracked yet.
        let settings = scaled_settings(&values.matte, scale[0]);
        let refine = refinement_for(values, scale, source.as_ref(), time);
        let finished = self.finish_mattes(tracked, region, settings, refine, values)?;
        Ok((
            Shown::Mattes {
                region,
                finished: Some(finished),
                untracked,
            },
            warnings,
        ))
    }

    /// kOfxImageEffectActionRender.
    pub fn render(&self, args: PropSet) -> OfxStatus {
        match self.render_frame(args) {
            Ok(notice) => {
                self.show(notice);
                kOfxStatOK
            }
            Err(e) => {
                self.show_error(&e);
                kOfxStatFailed
            }
        }
    }

    /// Renders the frame `args` ask for; the notice to show with it.
    fn render_frame(&self, args: PropSet) -> Result<Option<(Severity, String)>> {
        let time = required_time(args, "render")?;
        let missing = |property: &str| PluginError::MissingProperty {
            action: "render",
            property: property.into(),
        };
        let scale = args
            .doubles::<2>(kOfxImageEffectPropRenderScale)
            .filter(|s| s.iter().all(|v| v.is_finite() && *v > 0.0))
            .ok_or_else(|| missing("render scale"))?;
        let [x1, y1, x2, y2] = args
            .ints::<4>(kOfxImageEffectPropRenderWindow)
            .ok_or_else(|| missing("render window"))?;
        let window = RectI { x1, y1, x2, y2 };
        let mut output = self
            .output
            .ok_or_else(|| PluginError::Internal("the instance has no Output clip".into()))?
            .image(time)
            .map_err(|e| PluginError::OutputImage {
                problem: image_problem(&e),
            })?;
        // The source fetched once for the whole render: composed into the output, and lent to
        // the session should the model need this frame.
        let mut source = match self.source.map(|c| c.image(time)) {
            Some(Ok(image)) => Some(image),
            Some(Err(ImageError::Unsupported(what))) => {
                return Err(PluginError::UnsupportedImage { what });
            }
            // Not connected, or no image at this time: transparent black, and the session says
            // why when it needs the frame.
            _ => None,
        };
        let values = self.params.values(time)?;
        let (shown, cache_problem) = match self.cached_mattes(time, scale, &values, source.as_ref())
        {
            FromCache::Served(shown) => (Ok((shown, Vec::new())), None),
            FromCache::Live(problem) => (
                self.frame_mattes(time, scale, &values, &mut source),
                problem,
            ),
        };
        let (frame, notice) = match shown {
            Ok((
                Shown::Mattes {
                    region,
                    finished,
                    untracked,
                },
                warnings,
            )) => {
                let texts: Vec<String> = untracked.into_iter().chain(warnings).collect();
                let notice = (!texts.is_empty()).then(|| (Severity::Warning, texts.join(" ")));
                (Some((region, finished)), notice)
            }
            Ok((Shown::NotTracked(text), warnings)) => {
                let texts: Vec<String> = std::iter::once(text).chain(warnings).collect();
                (None, Some((Severity::Warning, texts.join(" "))))
            }
            Err(e @ (PluginError::Busy | PluginError::OutsideClip { .. })) => {
                (None, Some((Severity::Warning, e.to_string())))
            }
            Err(e) => (None, Some((Severity::Error, e.to_string()))),
        };
        // Why the cache was not used comes first; an unusable cache (damaged, unfinished) is an
        // error whatever the live session showed.
        let notice = match (cache_problem, notice) {
            (None, notice) => notice,
            (Some(p), None) => Some((cache_severity(&p), p.text)),
            (Some(p), Some((severity, text))) => {
                let severity = if severity == Severity::Error {
                    severity
                } else {
                    cache_severity(&p)
                };
                Some((severity, format!("{} {text}", p.text)))
            }
        };
        let source_rows = source.as_ref().map(|s| s as &dyn Rows);
        match &frame {
            Some((region, finished)) => {
                let layers = finished
                    .as_ref()
                    .map(|f| {
                        f.mattes
                            .iter()
                            .filter_map(|(slot, matte)| {
                                let object = values.object(*slot)?;
                                Some(ObjectLayer {
                                    slot: *slot,
                                    colour: object.colour,
                                    matte,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mattes = MatteFrame {
                    region: *region,
                    layers,
                };
                render(
                    source_rows,
                    &mut output,
                    window,
                    Some(&mattes),
                    &values.look,
                )?;
            }
            None => render(source_rows, &mut output, window, None, &values.look)?,
        }
        Ok(notice)
    }
}

/// A stale cache is a warning (the live session goes on); a damaged or unfinished one an error.
fn cache_severity(problem: &Problem) -> Severity {
    if problem.stale {
        Severity::Warning
    } else {
        Severity::Error
    }
}

/// Refine Edges at the render's scale, guided by the render's source image (`None`: off, or no
/// source image to follow).
fn refinement_for<'a>(
    values: &Values,
    scale: [f64; 2],
    source: Option<&'a Image>,
    time: f64,
) -> Option<(EdgeRefinement, &'a dyn Rows)> {
    match (&values.refinement, source) {
        (Some(r), Some(image)) => Some((scaled_refinement(r, scale[0]), image as &dyn Rows)),
        (Some(_), None) => {
            log::warn!(
                "frame {}: Refine Edges has no source image to follow; the matte is not refined",
                time.round() as i64
            );
            None
        }
        (None, _) => None,
    }
}
