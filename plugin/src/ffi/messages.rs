//! Messages on an effect: the persistent message (message suite V2), shown by the host on the
//! effect until cleared.

use openfx::sys::generic::core::kOfxStatOK;
use openfx::sys::image_effect_v1::message::{kOfxMessageError, kOfxMessageWarning};

use super::host;
use super::images::Effect;
use super::props::c_string;

/// How serious a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// Shows `text` on the effect until [`clear_persistent`]; false when the host cannot.
pub fn set_persistent(effect: Effect, severity: Severity, text: &str) -> bool {
    let Some(set) = host::suites()
        .and_then(|s| s.message)
        .and_then(|m| m.setPersistentMessage)
    else {
        return false;
    };
    let kind = match severity {
        Severity::Error => kOfxMessageError,
        Severity::Warning => kOfxMessageWarning,
    };
    let text = c_string(text);
    // SAFETY: a live effect handle, NUL-terminated strings, a null message id (allowed), and the
    // format "%s" with exactly one `const char*` argument, so the text is never read as a format.
    unsafe {
        set(
            effect.raw(),
            kind.as_ptr(),
            std::ptr::null(),
            c"%s".as_ptr(),
            text.as_ptr(),
        ) == kOfxStatOK
    }
}

/// Removes the effect's persistent message.
pub fn clear_persistent(effect: Effect) -> bool {
    let Some(clear) = host::suites()
        .and_then(|s| s.message)
        .and_then(|m| m.clearPersistentMessage)
    else {
        return false;
    };
    // SAFETY: a live effect handle.
    unsafe { clear(effect.raw()) == kOfxStatOK }
}
