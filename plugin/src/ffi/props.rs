//! Property sets: typed get and set over the property suite.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;

use openfx::sys::generic::core::{OfxPropertySetHandle, kOfxStatOK};
use openfx::sys::generic::property::OfxPropertySuiteV1;

use super::host;

/// A property set handle (of the host, an effect, a clip, an image, a parameter, an action's
/// arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropSet(OfxPropertySetHandle);

// SAFETY: a property set handle is an opaque token of the host's, valid across threads for the
// life of its object; the property suite may be called from any thread (see the module docs).
unsafe impl Send for PropSet {}
// SAFETY: as above; `PropSet` holds no data of its own.
unsafe impl Sync for PropSet {}

fn suite() -> Option<&'static OfxPropertySuiteV1> {
    host::suites().map(|s| s.property)
}

/// A Rust string as a C string; interior NULs (never in our texts) are dropped rather than
/// failing.
pub(crate) fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

impl PropSet {
    pub(crate) fn from_raw(handle: OfxPropertySetHandle) -> Option<PropSet> {
        (!handle.is_null()).then_some(PropSet(handle))
    }

    pub(crate) fn raw(self) -> OfxPropertySetHandle {
        self.0
    }

    pub fn string(self, name: &CStr, index: i32) -> Option<String> {
        let get = suite()?.propGetString?;
        let mut value: *mut c_char = ptr::null_mut();
        // SAFETY: a live handle, a NUL-terminated name and a valid out-pointer.
        let status = unsafe { get(self.0, name.as_ptr(), index, &mut value) };
        if status != kOfxStatOK || value.is_null() {
            return None;
        }
        // SAFETY: on success the host hands back a NUL-terminated string it owns, valid until the
        // property changes; it is copied at once.
        Some(
            unsafe { CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    pub fn int(self, name: &CStr, index: i32) -> Option<i32> {
        let get = suite()?.propGetInt?;
        let mut value: c_int = 0;
        // SAFETY: a live handle, a NUL-terminated name and a valid out-pointer.
        let status = unsafe { get(self.0, name.as_ptr(), index, &mut value) };
        (status == kOfxStatOK).then_some(value)
    }

    pub fn double(self, name: &CStr, index: i32) -> Option<f64> {
        let get = suite()?.propGetDouble?;
        let mut value = 0.0f64;
        // SAFETY: a live handle, a NUL-terminated name and a valid out-pointer.
        let status = unsafe { get(self.0, name.as_ptr(), index, &mut value) };
        (status == kOfxStatOK).then_some(value)
    }

    pub(crate) fn pointer(self, name: &CStr, index: i32) -> Option<*mut c_void> {
        let get = suite()?.propGetPointer?;
        let mut value: *mut c_void = ptr::null_mut();
        // SAFETY: a live handle, a NUL-terminated name and a valid out-pointer.
        let status = unsafe { get(self.0, name.as_ptr(), index, &mut value) };
        (status == kOfxStatOK && !value.is_null()).then_some(value)
    }

    pub fn ints<const N: usize>(self, name: &CStr) -> Option<[i32; N]> {
        let get = suite()?.propGetIntN?;
        let mut values = [0 as c_int; N];
        // SAFETY: `values` holds exactly the N ints asked for.
        let status = unsafe { get(self.0, name.as_ptr(), N as c_int, values.as_mut_ptr()) };
        (status == kOfxStatOK).then_some(values)
    }

    pub fn doubles<const N: usize>(self, name: &CStr) -> Option<[f64; N]> {
        let get = suite()?.propGetDoubleN?;
        let mut values = [0.0f64; N];
        // SAFETY: `values` holds exactly the N doubles asked for.
        let status = unsafe { get(self.0, name.as_ptr(), N as c_int, values.as_mut_ptr()) };
        (status == kOfxStatOK).then_some(values)
    }

    pub fn set_string(self, name: &CStr, index: i32, value: &str) -> bool {
        let Some(set) = suite().and_then(|s| s.propSetString) else {
            return false;
        };
        let value = c_string(value);
        // SAFETY: a live handle and NUL-terminated strings; the host copies the value.
        unsafe { set(self.0, name.as_ptr(), index, value.as_ptr()) == kOfxStatOK }
    }

    /// Sets a multi-valued string property to exactly `values`.
    pub fn set_strings(self, name: &CStr, values: &[&str]) -> bool {
        values
            .iter()
            .enumerate()
            .all(|(i, v)| self.set_string(name, i as i32, v))
    }

    pub fn set_int(self, name: &CStr, index: i32, value: i32) -> bool {
        let Some(set) = suite().and_then(|s| s.propSetInt) else {
            return false;
        };
        // SAFETY: a live handle and a NUL-terminated name.
        unsafe { set(self.0, name.as_ptr(), index, value) == kOfxStatOK }
    }

    pub fn set_ints(self, name: &CStr, values: &[i32]) -> bool {
        values
            .iter()
            .enumerate()
            .all(|(i, &v)| self.set_int(name, i as i32, v))
    }

    pub fn set_double(self, name: &CStr, index: i32, value: f64) -> bool {
        let Some(set) = suite().and_then(|s| s.propSetDouble) else {
            return false;
        };
        // SAFETY: a live handle and a NUL-terminated name.
        unsafe { set(self.0, name.as_ptr(), index, value) == kOfxStatOK }
    }

    pub fn set_doubles(self, name: &CStr, values: &[f64]) -> bool {
        values
            .iter()
            .enumerate()
            .all(|(i, &v)| self.set_double(name, i as i32, v))
    }

    pub(crate) fn set_pointer(self, name: &CStr, index: i32, value: *mut c_void) -> bool {
        let Some(set) = suite().and_then(|s| s.propSetPointer) else {
            return false;
        };
        // SAFETY: a live handle and a NUL-terminated name; the host stores the pointer as given.
        unsafe { set(self.0, name.as_ptr(), index, value) == kOfxStatOK }
    }
}
