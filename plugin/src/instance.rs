//! An effect instance: its clips and parameters (fetched once), its tracking state (one engine
//! session, shared by the host's render threads behind a mutex), and the actions — render, the
//! buttons, clip preferences, regions of interest.
//!
//! **Locks.** The tracker's mutex is the only long one. A Track button holds it for the whole
//! propagation and calls the host's progress bar meanwhile, which may let the host run other
//! actions of this instance, even on the same thread; so while tracking (`tracking` set before
//! the lock is taken) a render does not wait for it but shows the source with a "busy" message,
//! and the revision bump at the end makes the host render again. Overlay actions never wait for
//! it. No other lock is held across a host call.
//!
//! **Messages.** Errors become the effect's persistent message and a pass-through output (the
//! source unchanged); the prompts stay in their parameters whatever fails.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openfx::sys::generic::core::{
    OfxStatus, kOfxPluginPropFilePath, kOfxPropName, kOfxPropTime, kOfxPropType, kOfxStatFailed,
    kOfxStatOK, kOfxStatReplyDefault,
};
use openfx::sys::image_effect_v1::image_effect::{
    kOfxImageClipPropConnected, kOfxImageComponentRGBA, kOfxImageEffectFrameVarying,
    kOfxImageEffectPropFrameRange, kOfxImageEffectPropPreMultiplication,
    kOfxImageEffectPropRenderScale, kOfxImageEffectPropRenderWindow, kOfxImagePreMultiplied,
    kOfxImagePropPixelAspectRatio, kOfxImageUnPreMultiplied,
};
use openfx::sys::image_effect_v1::param::kOfxTypeParameter;
use parking_lot::{Mutex, MutexGuard};
use sam2_engine::matte::{MatteDevice, MatteSettings, MatteUpsampler, finish};
use sam2_engine::model::device::Device;

use crate::describe::{OUTPUT_CLIP, SOURCE_CLIP};
use crate::error::{PluginError, Result};
use crate::ffi::images::{Clip, Effect, Image, ImageError};
use crate::ffi::messages::{self, Severity};
use crate::ffi::path::own_binary;
use crate::ffi::progress::Progress;
use crate::ffi::props::PropSet;
use crate::host_source::{Fingerprints, HostSource, image_problem};
use crate::models::{self, BundlePaths, ModelKey};
use crate::params::{self, Params, Values};
use crate::pen::Pen;
use crate::prompts::{ObjectPrompts, PromptEdit, PromptsError};
use crate::render::{
    MatteFrame, ObjectLayer, RectI, Rows, fingerprint, pixel_rect, render, scaled_settings,
};
use crate::tracker::{ClipInfo, FrameState, TrackDirection, Tracker};

/// How long a button waits for a render of this instance to finish.
const BUTTON_WAIT: Duration = Duration::from_secs(20);

/// Largest source side the session accepts (a generator's "infinite" region would be refused).
const MAX_SIDE: usize = 32_768;

/// The output's components, named for the clip (`OfxImageClipPropComponents_` + clip name).
const OUTPUT_COMPONENTS: &CStr = c"OfxImageClipPropComponents_Output";
/// The source's region of interest (`OfxImageClipPropRoI_` + clip name).
const SOURCE_ROI: &CStr = c"OfxImageClipPropRoI_Source";

/// Finished mattes of one frame, kept for the next render of the same frame (hosts that render
/// in tiles ask for the same frame many times).
#[derive(Debug)]
struct Finished {
    index: usize,
    region: RectI,
    settings: MatteSettings,
    logits: Vec<(u32, Arc<[f32]>)>,
    mattes: Vec<(u32, Vec<f32>)>,
}

impl Finished {
    fn matches(
        &self,
        index: usize,
        region: RectI,
        settings: &MatteSettings,
        logits: &[(u32, Arc<[f32]>)],
    ) -> bool {
        self.index == index
            && self.region == region
            && &self.settings == settings
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

/// Holds a flag raised for as long as it lives.
struct Flag<'a>(&'a AtomicBool);

impl<'a> Flag<'a> {
    /// Raises the flag, unless it is up already (then `None`: someone else holds it).
    fn raise(flag: &'a AtomicBool) -> Option<Flag<'a>> {
        (!flag.swap(true, Ordering::SeqCst)).then_some(Flag(flag))
    }
}

impl Drop for Flag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The last-read prompt parameter of one object and what it parsed to.
type PromptCache = Vec<Option<(String, Result<ObjectPrompts, PromptsError>)>>;

/// One effect instance.
#[derive(Debug)]
pub struct Instance {
    pub(crate) effect: Effect,
    pub(crate) source: Option<Clip>,
    output: Option<Clip>,
    pub(crate) params: Params,
    bundle: Option<BundlePaths>,
    pub(crate) tracker: Mutex<Tracker>,
    tracking: AtomicBool,
    fingerprints: Fingerprints,
    upsampler: Mutex<Option<(MatteDevice, MatteUpsampler)>>,
    finished: Mutex<Option<Arc<Finished>>>,
    model_failure: Mutex<Option<(ModelKey, String)>>,
    shown: Mutex<Option<(Severity, String)>>,
    prompts: Mutex<PromptCache>,
    pub(crate) pen: Mutex<Pen>,
}

/// Where the bundle this binary was loaded from is: from the binary's own path, else from the
/// host's plugin path property.
fn bundle_paths(effect: Effect) -> Option<BundlePaths> {
    own_binary()
        .and_then(|b| BundlePaths::from_binary(&b))
        .filter(|b| b.binary_dir.is_dir())
        .or_else(|| {
            let root = effect.props()?.string(kOfxPluginPropFilePath, 0)?;
            Some(BundlePaths::from_bundle_root(std::path::Path::new(&root)))
        })
}

fn matte_device(device: Device) -> MatteDevice {
    match device {
        Device::Cpu => MatteDevice::Cpu,
        // A GPU for the model does not require one for the matte, which the CPU makes as well.
        Device::Gpu | Device::Auto => MatteDevice::Auto,
    }
}

fn status(ok: bool) -> OfxStatus {
    if ok { kOfxStatOK } else { kOfxStatFailed }
}

impl Instance {
    /// createInstance: fetches the clips and parameters once.
    pub fn create(effect: Effect) -> std::result::Result<Instance, String> {
        let set = effect
            .params()
            .ok_or("the host gave the instance no parameters")?;
        let params = Params::fetch(set)?;
        Ok(Instance {
            effect,
            source: effect.clip(SOURCE_CLIP),
            output: effect.clip(OUTPUT_CLIP),
            params,
            bundle: bundle_paths(effect),
            tracker: Mutex::new(Tracker::default()),
            tracking: AtomicBool::new(false),
            fingerprints: Fingerprints::default(),
            upsampler: Mutex::new(None),
            finished: Mutex::new(None),
            model_failure: Mutex::new(None),
            shown: Mutex::new(None),
            prompts: Mutex::new(vec![None; crate::tracker::MAX_OBJECTS as usize]),
            pen: Mutex::new(Pen::default()),
        })
    }

    /// Shows `notice` as the effect's persistent message (or clears it), calling the host only
    /// when it changes.
    pub(crate) fn show(&self, notice: Option<(Severity, String)>) {
        {
            let mut shown = self.shown.lock();
            if *shown == notice {
                return;
            }
            shown.clone_from(&notice);
        }
        match notice {
            Some((severity, text)) => {
                log::warn!("{text}");
                messages::set_persistent(self.effect, severity, &text);
            }
            None => {
                messages::clear_persistent(self.effect);
            }
        }
    }

    /// The tracker for a button: waits for a render to end, but never for a running Track
    /// (which may be what called us, through its progress bar).
    fn lock_for_button(&self) -> Option<MutexGuard<'_, Tracker>> {
        if self.tracking.load(Ordering::SeqCst) {
            self.tracker.try_lock()
        } else {
            self.tracker.try_lock_for(BUTTON_WAIT)
        }
    }

    /// The tracker, unless a Track button holds it (then a render does not wait).
    fn lock_tracker(&self) -> Result<MutexGuard<'_, Tracker>> {
        if self.tracking.load(Ordering::SeqCst) {
            return self.tracker.try_lock().ok_or(PluginError::Busy);
        }
        Ok(self.tracker.lock())
    }

    /// The connected Source clip.
    fn connected_source(&self) -> Result<Clip> {
        let clip = self.source.ok_or(PluginError::NoSource)?;
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
        self.source
            .and_then(|c| c.props())
            .and_then(|p| p.double(kOfxImagePropPixelAspectRatio, 0))
            .filter(|p| p.is_finite() && *p > 0.0)
            .unwrap_or(1.0)
    }

    /// The clip as the session sees it: frame range, full-resolution size (at the first frame).
    fn clip_info(&self, clip: Clip, linear_light: bool) -> Result<ClipInfo> {
        let props = clip.props().ok_or(PluginError::NoSource)?;
        let [first, last] = props
            .doubles::<2>(kOfxImageEffectPropFrameRange)
            .unwrap_or([0.0, 0.0]);
        let first_frame = first.round() as i64;
        let last_frame = (last.round() as i64).max(first_frame);
        let num_frames = usize::try_from(last_frame - first_frame + 1).unwrap_or(1);
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
        Ok(ClipInfo {
            first_frame,
            num_frames,
            video_size: (w as u32, h as u32),
            linear_light,
        })
    }

    /// The model the parameters ask for (loaded once per process and shared); a failure is
    /// remembered until the choice changes, so a broken model is not re-read at every render.
    fn model(&self, values: &Values) -> Result<Arc<sam2_engine::Model>> {
        let models_dir = self
            .bundle
            .as_ref()
            .map(BundlePaths::models_dir)
            .unwrap_or_default();
        let key = ModelKey {
            dir: models::model_dir(&values.model_directory, &models_dir)?,
            device: values.device,
        };
        if let Some((failed, message)) = self.model_failure.lock().as_ref()
            && failed == &key
        {
            return Err(PluginError::Model(message.clone()));
        }
        let loaded = models::ort_library(
            self.bundle.as_ref(),
            std::env::var_os(sam2_engine::model::runtime::ORT_DYLIB_ENV),
        )
        .and_then(|library| models::load_model(&key, &library));
        match loaded {
            Ok(model) => {
                *self.model_failure.lock() = None;
                Ok(model)
            }
            Err(e) => {
                *self.model_failure.lock() = Some((key, e.to_string()));
                Err(e)
            }
        }
    }

    /// The enabled objects' prompts (parsed only when a parameter changed), and sentences about
    /// the ones that could not be read.
    pub(crate) fn read_prompts(
        &self,
        values: &Values,
    ) -> (BTreeMap<u32, ObjectPrompts>, Vec<String>) {
        let raw: Vec<(u32, String, String)> = values
            .objects
            .iter()
            .filter(|o| o.enabled)
            .filter_map(|o| {
                let text = self.params.object(o.slot)?.prompts.string()?;
                Some((o.slot, o.name.clone(), text))
            })
            .collect();
        let mut cache = self.prompts.lock();
        let mut objects = BTreeMap::new();
        let mut warnings = Vec::new();
        for (slot, name, text) in raw {
            let Some(entry) = cache.get_mut(slot as usize - 1) else {
                continue;
            };
            if entry.as_ref().is_none_or(|(t, _)| *t != text) {
                let parsed = ObjectPrompts::parse(&text, &name);
                *entry = Some((text, parsed));
            }
            match entry.as_ref().map(|(_, p)| p) {
                Some(Ok(p)) => {
                    objects.insert(slot, p.clone());
                }
                Some(Err(e)) => warnings.push(e.to_string()),
                None => {}
            }
        }
        (objects, warnings)
    }

    /// Model, session and prompts in step with the parameters; sentences about objects the
    /// engine refused (the others go on).
    fn prepare(
        &self,
        tracker: &mut Tracker,
        values: &Values,
        objects: &BTreeMap<u32, ObjectPrompts>,
    ) -> Result<(ClipInfo, Vec<String>)> {
        let clip = self.connected_source()?;
        let info = self.clip_info(clip, values.linear_source)?;
        let model = self.model(values)?;
        let fingerprints = Arc::clone(&self.fingerprints);
        tracker.ensure_session(&model, info, values.cache_bytes, || {
            fingerprints.lock().clear();
            Box::new(HostSource::new(clip, info, Arc::clone(&fingerprints)))
        })?;
        let report = tracker.sync(objects)?;
        let failures = report
            .failed
            .into_iter()
            .map(|(slot, e)| {
                let name = values
                    .object(slot)
                    .map_or_else(|| params::default_object_name(slot), |o| o.name.clone());
                format!("{name} is left out: {e}")
            })
            .collect();
        Ok((info, failures))
    }

    /// Whether the source image rendered now differs from the one the session encoded for this
    /// frame (an upstream change): then everything tracked through it is out of date.
    fn source_changed(&self, image: &Image, index: usize, info: &ClipInfo) -> bool {
        let known = match self.fingerprints.lock().get(&index).copied() {
            None => return false,
            // Encoded from a proxy render: the session is provisional.
            Some(None) => return true,
            Some(Some(known)) => known,
        };
        let region = image
            .region_of_definition()
            .unwrap_or_else(|| image.bounds());
        if (region.width(), region.height())
            != (info.video_size.0 as usize, info.video_size.1 as usize)
        {
            return false;
        }
        fingerprint(image, region) != known
    }

    /// Whether the session encoded a frame read at a proxy scale (provisional until a full-size
    /// render or a Track replaces the session).
    fn has_proxy_frames(&self) -> bool {
        self.fingerprints.lock().values().any(Option::is_none)
    }

    /// The matte upsampler for `device`, made once.
    fn upsample(
        &self,
        device: Device,
        logits: &[f32],
        side: usize,
        w: usize,
        h: usize,
    ) -> Result<Vec<f32>> {
        let wanted = matte_device(device);
        let mut slot = self.upsampler.lock();
        if slot.as_ref().is_none_or(|(d, _)| *d != wanted) {
            *slot = Some((wanted, MatteUpsampler::new(wanted)?));
        }
        match slot.as_mut() {
            Some((_, upsampler)) => Ok(upsampler.upsample(logits, side, side, w, h)?),
            None => Err(PluginError::Internal("no matte upsampler".into())),
        }
    }

    /// Upsamples and finishes the objects' mattes for `region` (or reuses the last ones).
    fn finish_mattes(
        &self,
        index: usize,
        region: RectI,
        side: usize,
        logits: Vec<(u32, Arc<[f32]>)>,
        settings: MatteSettings,
        device: Device,
    ) -> Result<Arc<Finished>> {
        if let Some(f) = self.finished.lock().as_ref()
            && f.matches(index, region, &settings, &logits)
        {
            return Ok(Arc::clone(f));
        }
        let (w, h) = (region.width(), region.height());
        let mut mattes = Vec::with_capacity(logits.len());
        for (slot, l) in &logits {
            let up = self.upsample(device, l, side, w, h)?;
            mattes.push((*slot, finish(&up, w, h, &settings)?));
        }
        let finished = Arc::new(Finished {
            index,
            region,
            settings,
            logits,
            mattes,
        });
        *self.finished.lock() = Some(Arc::clone(&finished));
        Ok(finished)
    }

    /// What the frame at `time` shows, and warnings to show with it.
    fn frame_mattes(
        &self,
        time: f64,
        scale: [f64; 2],
        values: &Values,
        source: Option<&Image>,
    ) -> Result<(Shown, Vec<String>)> {
        let clip = self.connected_source()?;
        let (objects, mut warnings) = self.read_prompts(values);
        let frame = time.round() as i64;
        let (info, index, state, logits, side) = {
            let mut tracker = self.lock_tracker()?;
            let (mut info, mut failures) = self.prepare(&mut tracker, values, &objects)?;
            let index = info.index(frame).ok_or(PluginError::OutsideClip {
                frame,
                first: info.first_frame,
                last: info.last_frame(),
            })?;
            if scale == [1.0, 1.0]
                && (self.has_proxy_frames()
                    || source.is_some_and(|image| self.source_changed(image, index, &info)))
            {
                log::info!(
                    "frame {frame}: the session read proxy frames or the source changed; starting a new session"
                );
                tracker.drop_session();
                (info, failures) = self.prepare(&mut tracker, values, &objects)?;
            }
            warnings.append(&mut failures);
            // Without temporal access only the rendered frame can be read: one step at a time.
            let reach = if crate::ffi::host::temporal_clip_access() {
                values.reach
            } else {
                values.reach.min(1)
            };
            let state = tracker.ensure_frame(index, reach, &mut || self.effect.aborted())?;
            let logits = tracker.logits(index);
            let side = tracker.low_res_side().unwrap_or(0);
            (info, index, state, logits, side)
        };
        let region = source
            .and_then(Image::region_of_definition)
            .or_else(|| {
                clip.region_of_definition(time)
                    .map(|rod| pixel_rect(rod, scale, self.source_par()))
            })
            .ok_or(PluginError::NoSource)?;
        let untracked = match state {
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
                let nearest = nearest.map(|i| info.frame(i));
                if logits.is_empty() {
                    return Ok((
                        Shown::NotTracked(not_tracked_text(frame, nearest, None)),
                        warnings,
                    ));
                }
                let names: Vec<String> = missing
                    .iter()
                    .map(|&slot| {
                        values
                            .object(slot)
                            .map_or_else(|| params::default_object_name(slot), |o| o.name.clone())
                    })
                    .collect();
                Some(not_tracked_text(frame, nearest, Some(&names)))
            }
            FrameState::Ready => None,
        };
        // The objects current here are shown even when others are not tracked yet.
        let settings = scaled_settings(&values.matte, scale[0]);
        let finished = self.finish_mattes(index, region, side, logits, settings, values.device)?;
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
        let time = args.double(kOfxPropTime, 0).unwrap_or(0.0);
        let scale = args
            .doubles::<2>(kOfxImageEffectPropRenderScale)
            .filter(|s| s.iter().all(|v| v.is_finite() && *v > 0.0))
            .unwrap_or([1.0, 1.0]);
        let Some([x1, y1, x2, y2]) = args.ints::<4>(kOfxImageEffectPropRenderWindow) else {
            return kOfxStatFailed;
        };
        let window = RectI { x1, y1, x2, y2 };
        let output = self.output.map(|c| c.image(time));
        let mut output = match output {
            Some(Ok(image)) => image,
            Some(Err(e)) => {
                self.show(Some((
                    Severity::Error,
                    format!(
                        "The output image could not be written: {}.",
                        image_problem(&e)
                    ),
                )));
                return kOfxStatFailed;
            }
            None => return kOfxStatFailed,
        };
        let source = match self.source.map(|c| c.image(time)) {
            Some(Ok(image)) => Some(image),
            Some(Err(ImageError::Unsupported(what))) => {
                self.show(Some((
                    Severity::Error,
                    PluginError::UnsupportedImage { what }.to_string(),
                )));
                return kOfxStatFailed;
            }
            _ => None,
        };
        let values = self.params.values(time);
        let (frame, notice) = match self.frame_mattes(time, scale, &values, source.as_ref()) {
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
        let source_rows = source.as_ref().map(|s| s as &dyn Rows);
        let result = match &frame {
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
                )
            }
            None => render(source_rows, &mut output, window, None, &values.look),
        };
        if let Err(e) = result {
            self.show(Some((Severity::Error, e.to_string())));
            return kOfxStatFailed;
        }
        self.show(notice);
        kOfxStatOK
    }

    /// The Track buttons.
    fn track(&self, time: f64, direction: TrackDirection) {
        let values = self.params.values(time);
        let (objects, mut warnings) = self.read_prompts(&values);
        let result = if !crate::ffi::host::temporal_clip_access() {
            Err(PluginError::NoTemporalAccess)
        } else if let Some(_tracking) = Flag::raise(&self.tracking) {
            match self.tracker.try_lock_for(BUTTON_WAIT) {
                Some(mut tracker) => {
                    self.run_track(&mut tracker, &values, &objects, time, direction)
                }
                None => Err(PluginError::RenderRunning),
            }
        } else {
            // Pressed again while the progress bar of a running Track let the host call us.
            return;
        };
        match result {
            Ok(mut failures) => {
                warnings.append(&mut failures);
                self.show((!warnings.is_empty()).then(|| (Severity::Warning, warnings.join(" "))));
            }
            Err(e) => self.show(Some((Severity::Error, e.to_string()))),
        }
        self.bump_revision();
        self.refresh_status(&values);
    }

    /// Tracks with the host's progress bar (and its cancel button); returns sentences about
    /// objects left out.
    fn run_track(
        &self,
        tracker: &mut Tracker,
        values: &Values,
        objects: &BTreeMap<u32, ObjectPrompts>,
        time: f64,
        direction: TrackDirection,
    ) -> Result<Vec<String>> {
        if self.has_proxy_frames() {
            // Track at full quality: frames a proxy render encoded are not reused.
            tracker.drop_session();
        }
        let (info, failures) = self.prepare(tracker, values, objects)?;
        let frame = time.round() as i64;
        let index = info.index(frame).ok_or(PluginError::OutsideClip {
            frame,
            first: info.first_frame,
            last: info.last_frame(),
        })?;
        let progress = Progress::start(self.effect, "SAM 2 Rotoscope: tracking");
        let outcome = tracker.track(index, direction, &mut |done, total| {
            if progress.update(done as f64 / total.max(1) as f64) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })?;
        if outcome.cancelled {
            log::info!("tracking cancelled after {} frames", outcome.frames);
        }
        Ok(failures)
    }

    /// Applies an edit to object `slot`'s prompts, as one undoable step.
    pub(crate) fn apply_edit(&self, slot: u32, edit: PromptEdit, values: &Values) -> Result<bool> {
        let Some(param) = self.params.object(slot).map(|o| o.prompts) else {
            return Ok(false);
        };
        let name = values
            .object(slot)
            .map_or_else(|| params::default_object_name(slot), |o| o.name.clone());
        let mut prompts = ObjectPrompts::parse(&param.string().unwrap_or_default(), &name)?;
        if !prompts.apply(edit) {
            return Ok(false);
        }
        let label = match edit {
            PromptEdit::AddPoint { .. } => "SAM 2: add point",
            PromptEdit::RemovePoint { .. } => "SAM 2: remove point",
            PromptEdit::SetBox { .. } => "SAM 2: box",
            PromptEdit::ClearFrame { .. } => "SAM 2: clear frame",
        };
        self.params.set.edit_begin(label);
        let written = param.set_string(&prompts.to_json());
        self.params.set.edit_end();
        Ok(written)
    }

    /// Makes the host drop the frames it cached (their look changed without a visible parameter
    /// changing).
    fn bump_revision(&self) {
        let revision = self.params.revision;
        let value = revision.int_at(0.0).unwrap_or(0);
        revision.set_int(if value >= i32::MAX - 1 { 0 } else { value + 1 });
    }

    /// The status line: model, frames tracked, cache. Skipped while the tracker is busy.
    fn refresh_status(&self, values: &Values) {
        let text = {
            let Some(tracker) = self.tracker.try_lock() else {
                return;
            };
            match (tracker.session(), tracker.status()) {
                (Some(session), Some(s)) => {
                    let model =
                        session.model().dir().path().file_name().map_or_else(
                            || "model".to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        );
                    format!(
                        "{model} ({}) · {} object{} · {}/{} frames tracked · cache {} of {} MiB",
                        values.device,
                        s.objects,
                        if s.objects == 1 { "" } else { "s" },
                        s.ready_frames,
                        s.num_frames,
                        s.cache_bytes >> 20,
                        s.cache_budget >> 20
                    )
                }
                _ => "No model loaded yet: it loads at the first render.".to_string(),
            }
        };
        if self.params.status.string().as_deref() != Some(text.as_str()) {
            self.params.status.set_string(&text);
        }
    }

    /// kOfxActionInstanceChanged: the buttons; a new source.
    pub fn instance_changed(&self, args: PropSet) -> OfxStatus {
        let kind = args.string(kOfxPropType, 0).unwrap_or_default();
        let name = args.string(kOfxPropName, 0).unwrap_or_default();
        let time = args.double(kOfxPropTime, 0).unwrap_or(0.0);
        // A clip change (hosts send it for reconnections, and some for much less) keeps the
        // session: a clip of another size or range gets a new one at the next render, and a
        // render finds changed pixels under an encoded frame by their fingerprint.
        if kind.as_bytes() != kOfxTypeParameter.to_bytes() {
            return kOfxStatReplyDefault;
        }
        let is = |p: &CStr| name.as_bytes() == p.to_bytes();
        let values = || self.params.values(time);
        if is(params::TRACK_FORWARD) {
            self.track(time, TrackDirection::Forward);
        } else if is(params::TRACK_BACKWARD) {
            self.track(time, TrackDirection::Backward);
        } else if is(params::TRACK_BOTH) {
            self.track(time, TrackDirection::Both);
        } else if is(params::CLEAR_AFTER) {
            let values = values();
            match self.lock_for_button() {
                Some(mut tracker) => {
                    if let Some(index) = tracker.clip().and_then(|c| c.index(time.round() as i64)) {
                        tracker.clear_after(index);
                    }
                }
                None => self.show(Some((
                    Severity::Warning,
                    PluginError::RenderRunning.to_string(),
                ))),
            }
            self.bump_revision();
            self.refresh_status(&values);
        } else if is(params::CLEAR_FRAME) {
            let values = values();
            let edit = PromptEdit::ClearFrame {
                frame: time.round() as i64,
            };
            if let Err(e) = self.apply_edit(values.selected(), edit, &values) {
                self.show(Some((Severity::Error, e.to_string())));
            }
        } else if is(params::CLEAR_ALL) {
            let values = values();
            self.params.set.edit_begin("SAM 2: clear all");
            for object in &self.params.objects {
                object.prompts.set_string("");
            }
            self.params.set.edit_end();
            if let Some(mut tracker) = self.lock_for_button() {
                tracker.reset();
            }
            self.bump_revision();
            self.refresh_status(&values);
        } else if is(params::STATUS) || is(params::REVISION) {
            return kOfxStatReplyDefault;
        } else {
            self.refresh_status(&values());
        }
        kOfxStatOK
    }

    /// kOfxActionPurgeCaches: drops the finished mattes kept for tiled renders. The session (the
    /// memory bank and the encoded frames, bounded by the memory budget) stays: it is the artist's
    /// work in progress, not a cache the host can rebuild.
    pub fn purge_caches(&self) -> OfxStatus {
        *self.finished.lock() = None;
        kOfxStatOK
    }

    /// kOfxImageEffectActionGetClipPreferences: RGBA out, premultiplied as the output mode says.
    pub fn clip_preferences(&self, out: PropSet) -> OfxStatus {
        let values = self.params.values(0.0);
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
        let time = args.double(kOfxPropTime, 0).unwrap_or(0.0);
        let Some(rod) = self.source.and_then(|c| c.region_of_definition(time)) else {
            return kOfxStatReplyDefault;
        };
        status(out.set_doubles(SOURCE_ROI, &[rod.x1, rod.y1, rod.x2, rod.y2]))
    }
}
