//! Parameters: defining them (describe) and reading and writing their values (instances). The
//! parameter suite's get and set functions are C variadics; each typed wrapper passes exactly the
//! pointers or values the API defines for that parameter type.

use std::ffi::{CStr, c_char, c_int};
use std::ptr;

use openfx::sys::generic::core::kOfxStatOK;
use openfx::sys::image_effect_v1::param::{OfxParamHandle, OfxParamSetHandle, OfxParameterSuiteV1};

use super::host;
use super::props::{PropSet, c_string};

/// The parameters of an effect (descriptor or instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSet(OfxParamSetHandle);

/// One parameter of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param(OfxParamHandle);

// SAFETY: opaque host tokens, valid across threads for the life of the effect (module docs).
unsafe impl Send for ParamSet {}
// SAFETY: as above.
unsafe impl Sync for ParamSet {}
// SAFETY: as above.
unsafe impl Send for Param {}
// SAFETY: as above.
unsafe impl Sync for Param {}

fn suite() -> Option<&'static OfxParameterSuiteV1> {
    host::suites().map(|s| s.param)
}

impl ParamSet {
    pub(crate) fn from_raw(handle: OfxParamSetHandle) -> Option<ParamSet> {
        (!handle.is_null()).then_some(ParamSet(handle))
    }

    /// Defines a parameter of `kind` (an `kOfxParamType…`); returns its property set to describe.
    pub fn define(self, kind: &CStr, name: &CStr) -> Option<PropSet> {
        let define = suite()?.paramDefine?;
        // SAFETY: a live parameter set, NUL-terminated strings and a valid out-pointer.
        let props =
            super::out_handle(|out| unsafe { define(self.0, kind.as_ptr(), name.as_ptr(), out) })?;
        PropSet::from_raw(props)
    }

    /// The parameter set's own properties (page order lives on the effect, not here).
    pub fn props(self) -> Option<PropSet> {
        let get = suite()?.paramSetGetPropertySet?;
        // SAFETY: a live parameter set and a valid out-pointer.
        let props = super::out_handle(|out| unsafe { get(self.0, out) })?;
        PropSet::from_raw(props)
    }

    pub fn param(self, name: &CStr) -> Option<Param> {
        let get = suite()?.paramGetHandle?;
        // SAFETY: a live parameter set, a NUL-terminated name and a valid out-pointer; the
        // property-set out-pointer may be null.
        super::out_handle(|out| unsafe { get(self.0, name.as_ptr(), out, ptr::null_mut()) })
            .map(Param)
    }

    /// Starts grouping parameter changes into one undoable step labelled `label`.
    pub fn edit_begin(self, label: &str) -> bool {
        let Some(begin) = suite().and_then(|s| s.paramEditBegin) else {
            return false;
        };
        let label = c_string(label);
        // SAFETY: a live parameter set and a NUL-terminated label the host copies.
        unsafe { begin(self.0, label.as_ptr()) == kOfxStatOK }
    }

    pub fn edit_end(self) -> bool {
        let Some(end) = suite().and_then(|s| s.paramEditEnd) else {
            return false;
        };
        // SAFETY: a live parameter set.
        unsafe { end(self.0) == kOfxStatOK }
    }
}

impl Param {
    /// An integer, choice or boolean parameter at `time`.
    pub fn int_at(self, time: f64) -> Option<i32> {
        let get = suite()?.paramGetValueAtTime?;
        let mut value: c_int = 0;
        // SAFETY: integer, choice and boolean parameters take one `int*` after the time.
        let status = unsafe { get(self.0, time, &mut value as *mut c_int) };
        (status == kOfxStatOK).then_some(value)
    }

    pub fn bool_at(self, time: f64) -> Option<bool> {
        self.int_at(time).map(|v| v != 0)
    }

    /// A double parameter at `time`.
    pub fn double_at(self, time: f64) -> Option<f64> {
        let get = suite()?.paramGetValueAtTime?;
        let mut value = 0.0f64;
        // SAFETY: double parameters take one `double*` after the time.
        let status = unsafe { get(self.0, time, &mut value as *mut f64) };
        (status == kOfxStatOK).then_some(value)
    }

    /// An RGB parameter at `time`.
    pub fn rgb_at(self, time: f64) -> Option<[f64; 3]> {
        let get = suite()?.paramGetValueAtTime?;
        let (mut r, mut g, mut b) = (0.0f64, 0.0f64, 0.0f64);
        // SAFETY: RGB parameters take three `double*` after the time.
        let status = unsafe {
            get(
                self.0,
                time,
                &mut r as *mut f64,
                &mut g as *mut f64,
                &mut b as *mut f64,
            )
        };
        (status == kOfxStatOK).then_some([r, g, b])
    }

    /// A string parameter's value (our strings do not animate).
    pub fn string(self) -> Option<String> {
        let get = suite()?.paramGetValue?;
        let mut value: *const c_char = ptr::null();
        // SAFETY: string parameters take one `char**`.
        let status = unsafe { get(self.0, &mut value as *mut *const c_char) };
        if status != kOfxStatOK || value.is_null() {
            return None;
        }
        // SAFETY: the host returns a NUL-terminated string it owns, valid until the parameter
        // changes; it is copied at once.
        Some(
            unsafe { CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    pub fn set_int(self, value: i32) -> bool {
        let Some(set) = suite().and_then(|s| s.paramSetValue) else {
            return false;
        };
        // SAFETY: integer, choice and boolean parameters take one `int` by value.
        unsafe { set(self.0, value as c_int) == kOfxStatOK }
    }

    pub fn set_string(self, value: &str) -> bool {
        let Some(set) = suite().and_then(|s| s.paramSetValue) else {
            return false;
        };
        let value = c_string(value);
        // SAFETY: string parameters take one `const char*`, which the host copies.
        unsafe { set(self.0, value.as_ptr()) == kOfxStatOK }
    }
}
