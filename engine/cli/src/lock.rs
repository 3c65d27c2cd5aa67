//! One run per output folder at a time.
//!
//! Two runs writing the same OUT_DIR would both do all their work and then race to rename it
//! into place: with `--force` both succeed and one result silently replaces the other, without
//! it the slower fails only at the very end. So a run takes an advisory lock (`flock`) on a
//! hidden file beside each output folder, `.NAME.lock`, before any work, and a second run fails
//! at once. The kernel releases the lock when the process ends however it ends, so a crashed run
//! never blocks the next one; the file itself is removed when the run ends.
//!
//! Holding the lock also makes it safe to remove the staging folders of earlier runs that were
//! killed outright (SIGKILL, a power cut): no other run can be writing them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use sam2_engine::staged_dir::StagedDir;

use crate::error::CliError;
use crate::signals;

/// An output folder this process may write; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    _file: Flock<File>,
}

/// `PARENT/.NAME.lock` for the output folder `target`.
fn lock_path(target: &Path) -> Result<PathBuf, CliError> {
    let absolute = std::path::absolute(target).map_err(|e| io_error(target, e))?;
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => {
            let mut file = std::ffi::OsString::from(".");
            file.push(name);
            file.push(".lock");
            Ok(parent.join(file))
        }
        _ => Err(CliError::NotAnOutputPath {
            path: target.to_path_buf(),
        }),
    }
}

fn io_error(path: &Path, source: io::Error) -> CliError {
    CliError::Lock {
        path: path.to_path_buf(),
        source,
    }
}

impl OutputLock {
    /// Removes the staging folders that killed runs left beside the locked folder: those whose
    /// process no longer runs. Best effort: what cannot be removed is said and left.
    pub fn remove_leftovers(&self, target: &Path) {
        let Ok(leftovers) = StagedDir::leftovers(target) else {
            return;
        };
        for leftover in leftovers {
            if leftover.pid == std::process::id() || process_runs(leftover.pid) {
                continue;
            }
            match fs::remove_dir_all(&leftover.path) {
                Ok(()) => log::info!(
                    "Removed {}, left by an earlier run (process {}) that was killed.",
                    leftover.path.display(),
                    leftover.pid
                ),
                Err(e) => log::warn!(
                    "{}, left by an earlier run that was killed, could not be removed: {e}.",
                    leftover.path.display()
                ),
            }
        }
    }

    /// Locks `target` (`what` names it in the message) or fails at once if another run holds it.
    pub fn take(target: &Path, what: &'static str) -> Result<OutputLock, CliError> {
        let path = lock_path(target)?;
        // The previous holder removes the file while it still holds the lock; a lock taken on
        // a file that is no longer at `path` locks nothing, so take it again.
        for _ in 0..16 {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(CliError::Busy {
                        what,
                        path: target.to_path_buf(),
                        lock: path,
                    });
                }
                Err((_, errno)) => return Err(io_error(&path, io::Error::from(errno))),
            };
            let held = locked.metadata().map_err(|e| io_error(&path, e))?;
            match fs::metadata(&path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    let lock = OutputLock {
                        path: path.clone(),
                        _file: locked,
                    };
                    return signals::create_file(|| Ok(lock), |l: &OutputLock| &l.path);
                }
                _ => continue,
            }
        }
        Err(io_error(
            &path,
            io::Error::other("it keeps being replaced by other runs"),
        ))
    }
}

/// Whether process `pid` exists (one of another user counts: it cannot be signalled, but runs).
fn process_runs(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Removed while still held (the lock goes with the file handle, after this).
        let _ = fs::remove_file(&self.path);
    }
}
