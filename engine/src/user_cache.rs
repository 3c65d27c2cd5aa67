//! The user's cache folder, where the engine and the effect keep what can be made again (frame
//! features moved out of RAM, track caches picked for an effect instance): one rule for every
//! caller, so all of it sits under one folder the user can find and clear.

use std::ffi::OsString;
use std::path::PathBuf;

/// `$XDG_CACHE_HOME/sam2-rotoscope` (else `~/.cache/sam2-rotoscope`) on Linux,
/// `~/Library/Caches/SAM2Rotoscope` on macOS, `%LOCALAPPDATA%\SAM2Rotoscope` on Windows; `None`
/// when the environment names no home. `var` reads the environment (a parameter, for tests).
pub fn user_cache_dir(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let nonempty = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if cfg!(target_os = "windows") {
        nonempty("LOCALAPPDATA").map(|d| d.join("SAM2Rotoscope"))
    } else if cfg!(target_os = "macos") {
        nonempty("HOME").map(|h| h.join("Library/Caches/SAM2Rotoscope"))
    } else {
        nonempty("XDG_CACHE_HOME")
            .or_else(|| nonempty("HOME").map(|h| h.join(".cache")))
            .map(|c| c.join("sam2-rotoscope"))
    }
}
