//! SAM 2 Rotoscope as an OpenFX image effect: host glue around `sam2-engine`.
//!
//! - [`ffi`] — the only `unsafe` code: the exported symbols and a small safe layer over the C API.
//! - [`describe`] and [`params`] — the factory: contexts, clips, parameters on pages.
//! - [`instance`] — an instance's actions: render, the Track and Clear buttons, preferences.
//! - [`tracker`] — an instance's lease on a shared engine session, in step with the prompts in the
//!   parameters; [`registry`] — the process-wide sessions, one per clip and prompts.
//! - [`prompts`] — the persisted prompt model; [`pen`] — the overlay's pure pen logic and
//!   drawing; [`overlay`] — its interact entry.
//! - [`render`] — pixel conversion for every depth and layout, and the output modes.
//! - [`track_cache`] — the effect's track cache: the prompts as a script, what a render expects
//!   of a cache, a frame's results from it.
//! - [`models`] — where ONNX Runtime and the model are found; models shared between instances.
//! - [`logging`] — the log file (`SAM2_ROTOSCOPE_LOG`), named by every persistent error message.
//!
//! Every entry point runs inside [`guard`]: a panic becomes kOfxStatFailed and a persistent
//! message, never an unwind across the C boundary.

#[allow(unsafe_code)]
mod ffi;

pub(crate) mod describe;
pub mod error;
mod host_source;
pub(crate) mod instance;
pub mod logging;
pub mod models;
pub(crate) mod overlay;
pub(crate) mod overlay_gl;
pub(crate) mod params;
pub mod pen;
pub mod prompts;
pub mod registry;
pub mod render;
pub mod track_cache;
pub mod tracker;

use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};

use openfx::sys::generic::core::{
    OfxStatus, kOfxActionCreateInstance, kOfxActionDescribe, kOfxActionDestroyInstance,
    kOfxActionInstanceChanged, kOfxActionLoad, kOfxActionPurgeCaches, kOfxActionUnload,
    kOfxStatErrMissingHostFeature, kOfxStatFailed, kOfxStatOK, kOfxStatReplyDefault,
};
use openfx::sys::image_effect_v1::image_effect::{
    kOfxImageEffectActionDescribeInContext, kOfxImageEffectActionGetClipPreferences,
    kOfxImageEffectActionGetRegionsOfInterest, kOfxImageEffectActionRender,
};

use crate::ffi::images::{Effect, RawHandle};
use crate::ffi::messages::{self, Severity};
use crate::ffi::props::PropSet;
use crate::instance::Instance;

/// Runs an entry point's work, turning a panic into kOfxStatFailed and, when there is an effect,
/// a persistent message.
pub(crate) fn guard(effect: Option<Effect>, work: impl FnOnce() -> OfxStatus) -> OfxStatus {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(status) => status,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            let text = error::PluginError::Internal(what).to_string();
            log::error!("{text}");
            if let Some(effect) = effect {
                messages::set_persistent(effect, Severity::Error, &logging::with_pointer(&text));
            }
            kOfxStatFailed
        }
    }
}

/// The effect's main entry, after the FFI layer converted its arguments.
pub(crate) fn main_entry(
    action: &CStr,
    handle: RawHandle,
    in_args: Option<PropSet>,
    out_args: Option<PropSet>,
) -> OfxStatus {
    let effect = handle.effect();
    guard(effect, || dispatch(action, effect, in_args, out_args))
}

/// Runs `f` on the instance of `effect`; `kOfxStatFailed` without one.
fn with_instance(effect: Option<Effect>, f: impl FnOnce(&Instance) -> OfxStatus) -> OfxStatus {
    effect
        .and_then(|e| e.with_instance(f))
        .unwrap_or(kOfxStatFailed)
}

fn dispatch(
    action: &CStr,
    effect: Option<Effect>,
    in_args: Option<PropSet>,
    out_args: Option<PropSet>,
) -> OfxStatus {
    if action == kOfxActionLoad {
        logging::install();
        return match ffi::host::load() {
            Ok(()) => kOfxStatOK,
            Err(why) => {
                log::error!("SAM 2 Rotoscope cannot load: {why}.");
                kOfxStatErrMissingHostFeature
            }
        };
    }
    if action == kOfxActionUnload {
        // Every instance is gone: the tracking sessions they left idle go too.
        tracker::SESSIONS.release_idle();
        return kOfxStatOK;
    }
    let Some(effect) = effect else {
        return kOfxStatReplyDefault;
    };
    // Describing happens before any instance: there is nowhere to show a message but the log.
    let report = |result: error::Result<()>| match result {
        Ok(()) => kOfxStatOK,
        Err(why) => {
            log::error!("SAM 2 Rotoscope cannot describe itself: {why}");
            kOfxStatFailed
        }
    };
    if action == kOfxActionDescribe {
        return report(describe::describe(effect));
    }
    if action == kOfxImageEffectActionDescribeInContext {
        return report(describe::describe_in_context(effect));
    }
    if action == kOfxActionCreateInstance {
        return match Instance::create(effect) {
            Ok(instance) => {
                if effect.attach_instance(Box::new(instance)) {
                    kOfxStatOK
                } else {
                    kOfxStatFailed
                }
            }
            Err(why) => {
                let text = format!("SAM 2 Rotoscope could not start. {why}");
                log::error!("{text}");
                messages::set_persistent(effect, Severity::Error, &logging::with_pointer(&text));
                kOfxStatFailed
            }
        };
    }
    if action == kOfxActionDestroyInstance {
        drop(effect.take_instance());
        return kOfxStatOK;
    }
    if action == kOfxActionPurgeCaches {
        return with_instance(Some(effect), Instance::purge_caches);
    }
    match (in_args, out_args) {
        (Some(args), _) if action == kOfxImageEffectActionRender => {
            with_instance(Some(effect), |i| i.render(args))
        }
        (Some(args), _) if action == kOfxActionInstanceChanged => {
            with_instance(Some(effect), |i| i.instance_changed(args))
        }
        (_, Some(out)) if action == kOfxImageEffectActionGetClipPreferences => {
            with_instance(Some(effect), |i| i.clip_preferences(out))
        }
        (Some(args), Some(out)) if action == kOfxImageEffectActionGetRegionsOfInterest => {
            with_instance(Some(effect), |i| i.regions_of_interest(args, out))
        }
        _ => kOfxStatReplyDefault,
    }
}
