//! A runtime directory for Mesa, so that a run on `--device auto` or `gpu` prints nothing it
//! should not.
//!
//! Looking for a GPU, wgpu loads the Vulkan drivers, and with them Mesa's device-selection layer,
//! which asks libwayland for a display; without `XDG_RUNTIME_DIR` (cron, ssh, containers, farm
//! nodes) libwayland prints `error: XDG_RUNTIME_DIR is invalid or not set in the environment.`
//! twice — on a run that succeeds. The variable must be in the environment before the layer
//! reads it, and changing this process's environment is not possible in safe Rust; so the
//! command line runs itself again (`exec`: same process, same arguments, same everything) with
//! the variable pointing at a private folder of its own: `$TMPDIR/sam2-rotoscope-<uid>`, mode
//! 0700, used only if it is a real folder of this user's that no one else can enter. Nothing
//! is ever put in it. Where any of that fails, the run goes on as it is (and Mesa complains).

use std::ffi::OsStr;
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const VARIABLE: &str = "XDG_RUNTIME_DIR";

/// Whether libwayland accepts `value`: an absolute path (it checks no more; a missing folder is
/// merely "no display", which it does not print).
fn usable(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| Path::new(v).is_absolute())
}

/// Runs this command again with a usable `XDG_RUNTIME_DIR` if it has none; returns only when
/// it has one already or one cannot be given.
pub fn ensure() {
    if usable(std::env::var_os(VARIABLE).as_deref()) {
        return;
    }
    let Some(dir) = private_folder() else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = Command::new(exe);
    if let Some(zero) = args.next() {
        command.arg0(zero);
    }
    // Returns only if the exec failed; then go on without.
    let _ = command.args(args).env(VARIABLE, dir).exec();
}

/// `$TMPDIR/sam2-rotoscope-<uid>`, created if missing; `None` unless it is a folder (not a
/// link) of this user with mode 0700.
fn private_folder() -> Option<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = std::env::temp_dir().join(format!("sam2-rotoscope-{uid}"));
    // Fails harmlessly if it exists; checked below whoever made it.
    let _ = DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    let private = meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o777 == 0o700;
    (private && dir.is_absolute()).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_absolute_path_is_usable() {
        assert!(!usable(None));
        assert!(!usable(Some(OsStr::new(""))));
        assert!(!usable(Some(OsStr::new("run/user/1000"))));
        assert!(usable(Some(OsStr::new("/run/user/1000"))));
    }

    #[test]
    fn the_private_folder_is_this_user_s_alone() {
        let dir = private_folder().unwrap();
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), nix::unistd::getuid().as_raw());
    }
}
