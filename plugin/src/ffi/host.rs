//! The host: the `OfxHost` handed to `setHost`, and the suites fetched from it at load.

use std::ffi::{CStr, c_int};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use once_cell::sync::OnceCell;
use openfx::sys::generic::core::OfxHost;
use openfx::sys::generic::property::{OfxPropertySuiteV1, kOfxPropertySuite};
use openfx::sys::image_effect_v1::draw_suite::{OfxDrawSuiteV1, kOfxDrawSuite};
use openfx::sys::image_effect_v1::image_effect::{
    OfxImageEffectSuiteV1, kOfxImageEffectPropTemporalClipAccess, kOfxImageEffectSuite,
};
use openfx::sys::image_effect_v1::interact::{OfxInteractSuiteV1, kOfxInteractSuite};
use openfx::sys::image_effect_v1::message::{OfxMessageSuiteV2, kOfxMessageSuite};
use openfx::sys::image_effect_v1::param::{OfxParameterSuiteV1, kOfxParameterSuite};
use openfx::sys::image_effect_v1::progress::{
    OfxProgressSuiteV1, OfxProgressSuiteV2, kOfxProgressSuite,
};

use super::props::PropSet;
use crate::error::LoadError;

static HOST: AtomicPtr<OfxHost> = AtomicPtr::new(ptr::null_mut());

/// The suites this plugin uses. The first three are required; the others are optional and the
/// plugin does without them (no persistent messages, no progress bar, no overlay drawing).
#[derive(Debug)]
pub struct Suites {
    pub(crate) host: Option<PropSet>,
    pub(crate) property: &'static OfxPropertySuiteV1,
    pub(crate) effect: &'static OfxImageEffectSuiteV1,
    pub(crate) param: &'static OfxParameterSuiteV1,
    pub(crate) message: Option<&'static OfxMessageSuiteV2>,
    pub(crate) progress: Option<ProgressSuite>,
    pub(crate) interact: Option<&'static OfxInteractSuiteV1>,
    pub(crate) draw: Option<&'static OfxDrawSuiteV1>,
}

/// The progress suite in the newest version the host has.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ProgressSuite {
    V2(&'static OfxProgressSuiteV2),
    V1(&'static OfxProgressSuiteV1),
}

static SUITES: OnceCell<Suites> = OnceCell::new();

/// Remembers the host (`OfxPlugin::setHost`, called before any action).
pub(crate) fn set_host(host: *mut OfxHost) {
    HOST.store(host, Ordering::SeqCst);
}

fn fetch<T>(host: &OfxHost, name: &CStr, version: c_int) -> Option<&'static T> {
    let fetch_suite = host.fetchSuite?;
    // SAFETY: `fetchSuite` is the host's own function, called with its own property set and a
    // NUL-terminated suite name, as the API prescribes.
    let suite = unsafe { fetch_suite(host.host, name.as_ptr(), version) };
    // SAFETY: a non-null result points to the suite struct of exactly that name and version, which
    // the host keeps alive while our binary is loaded ('static for us).
    unsafe { suite.cast::<T>().as_ref() }
}

/// Fetches the suites (kOfxActionLoad). Fails, naming what is missing, when the host lacks a
/// required suite; the plugin then does not load.
pub fn load() -> Result<(), LoadError> {
    if SUITES.get().is_some() {
        return Ok(());
    }
    // SAFETY: the pointer was handed to setHost by the host, which keeps the struct alive while our
    // binary is loaded; null (no setHost yet) reads as None.
    let Some(host) = (unsafe { HOST.load(Ordering::SeqCst).as_ref() }) else {
        return Err(LoadError::NoHost);
    };
    let property = fetch::<OfxPropertySuiteV1>(host, kOfxPropertySuite, 1)
        .ok_or(LoadError::MissingSuite("property"))?;
    let effect = fetch::<OfxImageEffectSuiteV1>(host, kOfxImageEffectSuite, 1)
        .ok_or(LoadError::MissingSuite("image effect"))?;
    let param = fetch::<OfxParameterSuiteV1>(host, kOfxParameterSuite, 1)
        .ok_or(LoadError::MissingSuite("parameter"))?;
    let progress = fetch::<OfxProgressSuiteV2>(host, kOfxProgressSuite, 2)
        .map(ProgressSuite::V2)
        .or_else(|| fetch::<OfxProgressSuiteV1>(host, kOfxProgressSuite, 1).map(ProgressSuite::V1));
    let suites = Suites {
        host: PropSet::from_raw(host.host),
        property,
        effect,
        param,
        message: fetch::<OfxMessageSuiteV2>(host, kOfxMessageSuite, 2),
        progress,
        interact: fetch::<OfxInteractSuiteV1>(host, kOfxInteractSuite, 1),
        draw: fetch::<OfxDrawSuiteV1>(host, kOfxDrawSuite, 1),
    };
    // A concurrent load (not something hosts do) would have fetched the same suites.
    let _ = SUITES.set(suites);
    Ok(())
}

/// The suites, once loaded.
pub(crate) fn suites() -> Option<&'static Suites> {
    SUITES.get()
}

/// Whether the host lets an effect fetch source frames at other times than the one being
/// rendered (kOfxImageEffectPropTemporalClipAccess on the host); assumed when it does not say.
pub fn temporal_clip_access() -> bool {
    suites()
        .and_then(|s| s.host)
        .and_then(|h| h.int(kOfxImageEffectPropTemporalClipAccess, 0))
        .is_none_or(|v| v != 0)
}
