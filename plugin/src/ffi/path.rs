//! The path of this plugin's own binary, to find what the bundle ships beside it.

use std::path::PathBuf;

/// The file the dynamic loader loaded this code from (`…/Contents/Linux-x86-64/SAM2Rotoscope.ofx`
/// in an installed bundle); `None` where the platform cannot say.
#[cfg(unix)]
pub fn own_binary() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;

    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let address = own_binary as fn() -> Option<PathBuf> as *const libc::c_void;
    // SAFETY: dladdr only reads the loader's tables for an address inside this library and fills
    // the struct it is given.
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader, valid while the library is
    // loaded; it is copied at once.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

#[cfg(not(unix))]
pub fn own_binary() -> Option<PathBuf> {
    None
}
