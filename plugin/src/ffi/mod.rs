//! The only place with `unsafe` code: a small safe layer over the raw OpenFX C API (`openfx`'s
//! `sys` module) — the exported entry points, the host's suites, property sets, parameters,
//! clips and images, messages, progress, and the overlay's drawing. Every `unsafe` block says
//! why it holds in a `// SAFETY:` line.
//!
//! What the layer relies on, once for all: the host keeps every handle it gave us (effect, clip,
//! parameter, property set, interact) valid for the life of the object it names, and its suite
//! functions may be called from any thread during an action (the OpenFX threading rules); a
//! suite pointer, once fetched, stays valid while our binary is loaded. Handles are opaque
//! tokens: copying them around threads dereferences nothing.

pub mod entry;
pub mod gl;
pub mod host;
pub mod images;
pub mod interact;
pub mod messages;
pub mod params;
pub mod path;
pub mod progress;
pub mod props;

use openfx::sys::generic::core::{OfxStatus, kOfxStatOK};

/// Runs a suite call that hands back a handle through an out-pointer (the common shape of the
/// OpenFX getters): the handle when the call succeeded and gave a non-null one.
pub(crate) fn out_handle<T>(call: impl FnOnce(*mut *mut T) -> OfxStatus) -> Option<*mut T> {
    let mut handle: *mut T = std::ptr::null_mut();
    (call(&mut handle) == kOfxStatOK && !handle.is_null()).then_some(handle)
}
