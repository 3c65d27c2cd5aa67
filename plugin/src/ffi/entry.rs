//! The symbols a host looks up in the binary (`OfxGetNumberOfPlugins`, `OfxGetPlugin`) and the
//! C entry points behind them. Each converts its raw arguments and hands over to the safe,
//! panic-guarded dispatch in the crate root.

use std::ffi::{CStr, c_char, c_int, c_void};

use openfx::sys::generic::core::{
    OfxHost, OfxPlugin, OfxPropertySetHandle, OfxStatus, kOfxStatErrBadHandle,
};
use openfx::sys::image_effect_v1::image_effect::{
    kOfxImageEffectPluginApi, kOfxImageEffectPluginPropOverlayInteractV1,
    kOfxImageEffectPluginPropOverlayInteractV2,
};

use super::images::RawHandle;
use super::props::PropSet;
use crate::describe::{PLUGIN_ID, VERSION_MAJOR, VERSION_MINOR};

static PLUGIN: OfxPlugin = OfxPlugin {
    pluginApi: kOfxImageEffectPluginApi.as_ptr(),
    apiVersion: 1,
    pluginIdentifier: PLUGIN_ID.as_ptr(),
    pluginVersionMajor: VERSION_MAJOR,
    pluginVersionMinor: VERSION_MINOR,
    setHost: Some(set_host),
    mainEntry: Some(main_entry),
};

/// How many plugins this binary holds.
#[unsafe(no_mangle)]
pub extern "C" fn OfxGetNumberOfPlugins() -> c_int {
    1
}

/// The `nth` plugin's description.
#[unsafe(no_mangle)]
pub extern "C" fn OfxGetPlugin(nth: c_int) -> *const OfxPlugin {
    if nth == 0 { &PLUGIN } else { std::ptr::null() }
}

extern "C" fn set_host(host: *mut OfxHost) {
    crate::guard(None, || {
        super::host::set_host(host);
        openfx::sys::generic::core::kOfxStatOK
    });
}

/// Converts an entry point's raw arguments.
fn arguments<'a>(
    action: *const c_char,
    in_args: OfxPropertySetHandle,
    out_args: OfxPropertySetHandle,
) -> Option<(&'a CStr, Option<PropSet>, Option<PropSet>)> {
    if action.is_null() {
        return None;
    }
    // SAFETY: the host passes the action as a NUL-terminated string that outlives the call.
    let action = unsafe { CStr::from_ptr(action) };
    Some((
        action,
        PropSet::from_raw(in_args),
        PropSet::from_raw(out_args),
    ))
}

extern "C" fn main_entry(
    action: *const c_char,
    handle: *const c_void,
    in_args: OfxPropertySetHandle,
    out_args: OfxPropertySetHandle,
) -> OfxStatus {
    match arguments(action, in_args, out_args) {
        Some((action, in_args, out_args)) => {
            crate::main_entry(action, RawHandle(handle), in_args, out_args)
        }
        None => kOfxStatErrBadHandle,
    }
}

extern "C" fn overlay_entry(
    action: *const c_char,
    handle: *const c_void,
    in_args: OfxPropertySetHandle,
    out_args: OfxPropertySetHandle,
) -> OfxStatus {
    match arguments(action, in_args, out_args) {
        Some((action, in_args, _)) => {
            crate::overlay::main_entry(action, RawHandle(handle), in_args)
        }
        None => kOfxStatErrBadHandle,
    }
}

/// Declares the overlay on the effect descriptor (describe): the same entry as V1 (OpenGL hosts)
/// and V2 (OpenFX 1.5 hosts with the Draw Suite, which pick V2 when it is there); the entry draws
/// with whatever the host hands it (overlay.rs). A host before 1.5 may not know the V2 property:
/// only V1 must be accepted.
pub fn declare_overlay(effect_props: PropSet) -> bool {
    let entry: unsafe extern "C" fn(
        *const c_char,
        *const c_void,
        OfxPropertySetHandle,
        OfxPropertySetHandle,
    ) -> OfxStatus = overlay_entry;
    let v1 = effect_props.set_pointer(
        kOfxImageEffectPluginPropOverlayInteractV1,
        0,
        entry as *mut c_void,
    );
    effect_props.set_pointer(
        kOfxImageEffectPluginPropOverlayInteractV2,
        0,
        entry as *mut c_void,
    );
    v1
}
