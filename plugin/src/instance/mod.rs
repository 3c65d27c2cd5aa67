//! An effect instance: its clips and parameters (fetched once), its tracking state (a lease on a
//! shared engine session — one per clip and prompts, process-wide, tracker.rs — behind the
//! instance's tracker mutex), and the actions, by concern:
//! [`rendering`] (render: the frame's mattes and the output), [`buttons`] (Track, Clear, and the
//! status line), [`clip`] (the Source clip as the session sees it, clip preferences, regions of
//! interest). A frame the Track Cache File covers renders from the cache alone
//! (crate::track_cache): no tracker, no model.
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

mod buttons;
mod clip;
mod rendering;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use openfx::sys::generic::core::{OfxStatus, kOfxPluginPropFilePath, kOfxPropTime, kOfxStatOK};
use parking_lot::{Mutex, MutexGuard};
use sam2_engine::matte::{MatteDevice, MatteUpsampler};

use crate::describe::{OUTPUT_CLIP, SOURCE_CLIP};
use crate::error::{PluginError, Result};
use crate::ffi::images::{Clip, Effect};
use crate::ffi::messages::{self, Severity};
use crate::ffi::path::own_binary;
use crate::ffi::props::PropSet;
use crate::host_source::{Access, HostSource, LentFrame};
use crate::logging;
use crate::models::{self, BundlePaths, ModelKey};
use crate::params::{Params, Values};
use crate::pen::Pen;
use crate::prompts::{ObjectPrompts, PromptsError};
use crate::registry::ModelIdentity;
use crate::tracker::{ClipInfo, ModelChoice, Tracker};

use self::rendering::Finished;

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
    /// The Source image of the render in progress, lent to the session (host_source).
    lent: LentFrame,
    upsampler: Mutex<Option<(MatteDevice, MatteUpsampler)>>,
    finished: Mutex<Option<Arc<Finished>>>,
    model_failure: Mutex<Option<(ModelKey, String)>>,
    /// The identity of the model files last loaded (read once per model choice).
    model_identity: Mutex<Option<(ModelKey, ModelIdentity)>>,
    shown: Mutex<Option<(Severity, String)>>,
    /// Why the model runs on the CPU although the device Auto asked for the GPU; shown with
    /// every notice until the model or the device changes.
    fallback: Mutex<Option<String>>,
    prompts: Mutex<PromptCache>,
    pub(crate) pen: Mutex<Pen>,
    /// The Track Cache File, open between renders.
    track_cache: Mutex<Option<crate::track_cache::OpenCache>>,
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

/// A time property an action must be given (OpenFX requires it on every action that has one).
fn required_time(args: PropSet, action: &'static str) -> Result<f64> {
    args.double(kOfxPropTime, 0)
        .ok_or(PluginError::MissingProperty {
            action,
            property: "time".into(),
        })
}

impl Instance {
    /// createInstance: fetches the clips and parameters once.
    pub fn create(effect: Effect) -> Result<Instance> {
        let set = effect.params().ok_or_else(|| PluginError::HostRefused {
            what: "give the new instance its parameters".into(),
        })?;
        let params = Params::fetch(set)?;
        let bundle = bundle_paths(effect);
        if let Some(bundle) = &bundle {
            // The running executable is the host's, so the engine cannot find the bundle's graph
            // templates (for a Model that is a checkpoint file) by itself.
            sam2_engine::checkpoint::cache::register_template_root(bundle.templates_dir());
        }
        Ok(Instance {
            effect,
            source: effect.clip(SOURCE_CLIP),
            output: effect.clip(OUTPUT_CLIP),
            params,
            bundle,
            tracker: Mutex::new(Tracker::default()),
            tracking: AtomicBool::new(false),
            lent: LentFrame::default(),
            upsampler: Mutex::new(None),
            finished: Mutex::new(None),
            model_failure: Mutex::new(None),
            model_identity: Mutex::new(None),
            shown: Mutex::new(None),
            fallback: Mutex::new(None),
            prompts: Mutex::new(vec![None; crate::tracker::MAX_OBJECTS as usize]),
            pen: Mutex::new(Pen::default()),
            track_cache: Mutex::new(None),
        })
    }

    /// Shows `notice` as the effect's persistent message (or clears it), calling the host only
    /// when it changes, and logs it. An error ends with where the log is.
    pub(crate) fn show(&self, notice: Option<(Severity, String)>) {
        let notice = models::with_fallback(notice, self.fallback.lock().as_deref());
        {
            let mut shown = self.shown.lock();
            if *shown == notice {
                return;
            }
            shown.clone_from(&notice);
        }
        match notice {
            Some((Severity::Error, text)) => {
                log::error!("{text}");
                messages::set_persistent(
                    self.effect,
                    Severity::Error,
                    &logging::with_pointer(&text),
                );
            }
            Some((severity, text)) => {
                log::warn!("{text}");
                messages::set_persistent(self.effect, severity, &text);
            }
            None => {
                messages::clear_persistent(self.effect);
            }
        }
    }

    /// Shows `error` as the effect's persistent error message.
    pub(crate) fn show_error(&self, error: &PluginError) {
        self.show(Some((Severity::Error, error.to_string())));
    }

    /// The tracker, unless a Track button holds it (then a render does not wait).
    fn lock_tracker(&self) -> Result<MutexGuard<'_, Tracker>> {
        if self.tracking.load(Ordering::SeqCst) {
            return self.tracker.try_lock().ok_or(PluginError::Busy);
        }
        Ok(self.tracker.lock())
    }

    /// The model the parameters ask for (loaded once per process and shared); a failure is
    /// remembered until the choice changes, so a broken model is not re-read at every render.
    fn model(&self, values: &Values) -> Result<(Arc<sam2_engine::Model>, ModelChoice)> {
        let key = ModelKey {
            dir: self.model_dir(values)?,
            device: values.device,
            precision: values.precision,
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
                *self.fallback.lock() = models::fallback_notice(&model);
                let identity = {
                    let mut known = self.model_identity.lock();
                    match known.as_ref() {
                        Some((k, identity)) if k == &key => identity.clone(),
                        _ => {
                            let identity = ModelIdentity::of(&key.dir).map_err(|e| {
                                PluginError::Model(format!(
                                    "The model folder {} cannot be read: {e}.",
                                    key.dir.display()
                                ))
                            })?;
                            *known = Some((key.clone(), identity.clone()));
                            identity
                        }
                    }
                };
                let choice = ModelChoice {
                    identity,
                    device: key.device,
                };
                Ok((model, choice))
            }
            Err(e) => {
                *self.fallback.lock() = None;
                *self.model_failure.lock() = Some((key, e.to_string()));
                Err(e)
            }
        }
    }

    /// The model folder (or checkpoint file) the parameters ask for, not loaded.
    fn model_dir(&self, values: &Values) -> Result<std::path::PathBuf> {
        // Without a bundle path there is no bundled model: the message then names no folder.
        let models_dir = self
            .bundle
            .as_ref()
            .map(BundlePaths::models_dir)
            .unwrap_or_default();
        models::model_dir(&values.model_directory, &models_dir)
    }

    /// The enabled objects' prompts (parsed only when a parameter changed), and sentences about
    /// the ones that could not be read.
    pub(crate) fn read_prompts(
        &self,
        values: &Values,
    ) -> Result<(BTreeMap<u32, ObjectPrompts>, Vec<String>)> {
        let raw: Vec<(u32, String, String)> = values
            .objects
            .iter()
            .filter(|o| o.enabled)
            .map(|o| Ok((o.slot, o.name.clone(), self.params.prompts_text(o.slot)?)))
            .collect::<Result<_>>()?;
        let mut cache = self.prompts.lock();
        let mut objects = BTreeMap::new();
        let mut warnings = Vec::new();
        for (slot, name, text) in raw {
            let entry = cache.get_mut(slot as usize - 1).ok_or_else(|| {
                PluginError::Internal(format!("no prompt cache for object {slot}"))
            })?;
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
        Ok((objects, warnings))
    }

    /// Model and session in step with the parameters, this instance's frames bound to it. The
    /// prompts are synced by the work that follows, in the same hold of the session
    /// (`Tracker::settle` for a render, `Tracker::sync_and_track` for a Track button).
    fn bind_session(
        &self,
        tracker: &mut Tracker,
        values: &Values,
        objects: &BTreeMap<u32, ObjectPrompts>,
    ) -> Result<ClipInfo> {
        let clip = self.connected_source()?;
        let info = self.clip_info(clip, values)?;
        let (model, choice) = self.model(values)?;
        crate::tracker::SESSIONS.set_budget(values.cache_bytes);
        tracker.ensure_session(&model, &choice, info, objects, values.cache_bytes)?;
        let access = if crate::ffi::host::temporal_clip_access() {
            Access::AnyFrame
        } else {
            Access::RenderedFrame
        };
        tracker.bind(Box::new(HostSource::new(
            clip,
            info,
            self.lent.clone(),
            access,
        )));
        Ok(info)
    }

    /// kOfxActionPurgeCaches: drops the finished mattes kept for tiled renders, and the tracking
    /// sessions no instance holds. A session an instance holds (the memory bank and the encoded
    /// frames, bounded by the memory budget) stays: it is the artist's work in progress, not a
    /// cache the host can rebuild.
    pub fn purge_caches(&self) -> OfxStatus {
        *self.finished.lock() = None;
        let released = crate::tracker::SESSIONS.release_idle();
        if released > 0 {
            log::info!("purge caches: released {released} idle tracking sessions");
        }
        kOfxStatOK
    }
}

/// Sentences about the objects the engine refused.
fn left_out(values: &Values, failed: Vec<(u32, PluginError)>) -> Vec<String> {
    failed
        .into_iter()
        .map(|(slot, e)| format!("{} is left out: {e}", values.object_name(slot)))
        .collect()
}
