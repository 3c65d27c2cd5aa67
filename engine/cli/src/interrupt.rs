//! Ctrl-C: no half-written output left behind.
//!
//! Output folders are written under hidden staging names and renamed at the end
//! ([`sam2_engine::staged_dir::StagedDir`]), which removes them when dropped — but a process
//! killed by SIGINT drops nothing. So the staging folders are registered here, and the Ctrl-C
//! handler (a thread of its own, not a signal context) removes them and ends the process.
//!
//! The handler must not run while the outputs are being renamed into place, or it could remove
//! half of a finished output: [`commit`] holds the registry's lock for the renames, and the
//! handler takes the same lock and never releases it. A model call in progress is simply
//! abandoned, which is what the user asked for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::CliError;
use crate::progress;

/// The shell's convention for a process ended by SIGINT (128 + 2).
pub const EXIT_CODE: i32 = 130;

/// Staging folders to remove on Ctrl-C.
static STAGED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Installs the Ctrl-C handler.
pub fn install() -> Result<(), CliError> {
    ctrlc::set_handler(|| {
        // Held until the process ends, so that no commit starts after this.
        let staged = STAGED.lock();
        for path in staged.iter() {
            remove(path);
        }
        let what = if staged.is_empty() {
            "Interrupted."
        } else {
            "Interrupted; the half-written output was removed."
        };
        progress::print_line(&format!("error: {what}"));
        std::process::exit(EXIT_CODE);
    })
    .map_err(|e| CliError::SignalHandler {
        message: e.to_string(),
    })
}

/// Removes `path`, retrying while a writer thread still adds files to it.
fn remove(path: &Path) {
    for _ in 0..50 {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return,
        }
    }
}

/// Registers a staging folder for removal on Ctrl-C.
pub fn register(path: &Path) {
    STAGED.lock().push(path.to_path_buf());
}

/// Runs `renames` (moving the staging folders into place) where Ctrl-C cannot interrupt it,
/// then forgets the staging folders.
pub fn commit<T>(renames: impl FnOnce() -> T) -> T {
    let mut staged = STAGED.lock();
    let result = renames();
    staged.clear();
    result
}
