//! Output folders that appear complete or not at all.
//!
//! Everything the engine writes for a user — the CLI's matte sequences, reference traces — is
//! written into a hidden staging folder next to its target and renamed into place at the end; a
//! [`StagedDir`] dropped before that (an error, a cancelled run) removes its staging folder. A
//! half-written folder would otherwise read as a complete, shorter one.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A failure to write an output folder. Messages are sentences; the CLI adds its own advice
/// (`--force`) for [`WriteError::Exists`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("The folder {path} already exists, and replacing it was not asked for.")]
    Exists { path: PathBuf },

    #[error("{path} exists and is not a folder; it is never replaced.")]
    NotAFolder { path: PathBuf },

    #[error(
        "The folder {path} is not replaced because it holds {entry}, which is not part of {what}; remove the folder yourself or write elsewhere."
    )]
    Foreign {
        path: PathBuf,
        entry: String,
        what: &'static str,
    },

    #[error(
        "The folder {parent}, in which {path} would be written, does not exist; create it first."
    )]
    NoParent { path: PathBuf, parent: PathBuf },

    #[error("{path} names no folder that can be written (it has no parent or no name).")]
    NotAPath { path: PathBuf },

    #[error("Could not {action} {path}: {source}.")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A [`WriteError::Io`] for `path`, for `map_err`.
pub fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`StagedDir::create`] does with a target that already exists.
#[derive(Debug, Clone, Copy)]
pub enum Existing {
    /// Refuse ([`WriteError::Exists`]).
    Refuse,
    /// Replace it at commit, but only a folder that holds nothing but output of this kind (an
    /// empty folder does): a mistyped `--out ~ --force` must not delete a home folder, nor a
    /// user's notes inside an earlier output. `foreign` finds the first entry that is not such
    /// output, as a path relative to the folder (see [`first_foreign`]); `what` names such output
    /// in the message ("a reference trace").
    Replace {
        foreign: fn(&Path) -> io::Result<Option<PathBuf>>,
        what: &'static str,
    },
}

/// The entries of `dir`, by name, with their types (symbolic links not followed).
pub fn entries(dir: &Path) -> io::Result<Vec<(OsString, fs::FileType)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        found.push((entry.file_name(), entry.file_type()?));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// For [`Existing::Replace`]: the first entry of `dir` (by name) that `is_ours` rejects, given
/// its name and type (a symbolic link is its own type, never a file or folder).
pub fn first_foreign(
    dir: &Path,
    is_ours: impl Fn(&OsStr, &fs::FileType) -> bool,
) -> io::Result<Option<PathBuf>> {
    Ok(entries(dir)?
        .into_iter()
        .find(|(name, kind)| !is_ours(name, kind))
        .map(|(name, _)| PathBuf::from(name)))
}

/// A folder that appears complete or not at all: written under a hidden sibling name
/// (`.NAME.partial-…`), renamed to its target by [`StagedDir::commit`], removed when dropped
/// uncommitted.
///
/// The staging folder is a sibling so that the rename never crosses file systems. It is created
/// with [`fs::create_dir`], which honours the user's umask, unlike a private temporary folder
/// whose 0700 mode the finished output would keep.
#[derive(Debug)]
pub struct StagedDir {
    target: PathBuf,
    staging: PathBuf,
    existing: Existing,
    committed: bool,
}

/// A staging folder left by an earlier run; see [`StagedDir::leftovers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub path: PathBuf,
    /// The process that created it.
    pub pid: u32,
}

/// Makes names unique within this process; the process id makes them unique across processes.
static NEXT_NAME: AtomicU64 = AtomicU64::new(0);

/// `PARENT/.NAME.TAG-PID-N`, for the first N that does not exist yet.
fn sibling(parent: &Path, name: &OsStr, tag: &str) -> PathBuf {
    loop {
        let n = NEXT_NAME.fetch_add(1, Ordering::Relaxed);
        let mut file = OsString::from(".");
        file.push(name);
        file.push(format!(".{tag}-{}-{n}", std::process::id()));
        let path = parent.join(file);
        if fs::symlink_metadata(&path).is_err() {
            return path;
        }
    }
}

/// The absolute form of `path` (lexically; nothing needs to exist).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, WriteError> {
    std::path::absolute(path).map_err(io_error("resolve", path))
}

pub(crate) fn parent_and_name(target: &Path) -> Result<(&Path, &OsStr), WriteError> {
    match (target.parent(), target.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(WriteError::NotAPath {
            path: target.to_path_buf(),
        }),
    }
}

impl StagedDir {
    /// Checks `target` (its parent folder must exist; an existing target is dealt with as
    /// `existing` says) and creates the staging folder.
    pub fn create(target: impl AsRef<Path>, existing: Existing) -> Result<StagedDir, WriteError> {
        let target = absolute(target.as_ref())?;
        StagedDir::check(&target, existing)?;
        let (parent, name) = parent_and_name(&target)?;
        // Another process may take a name between the check and the creation; take the next.
        let mut attempts = 0;
        let staging = loop {
            let candidate = sibling(parent, name, "partial");
            match fs::create_dir(&candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                }
                Err(e) => return Err(io_error("create the folder", &candidate)(e)),
            }
        };
        Ok(StagedDir {
            target,
            staging,
            existing,
            committed: false,
        })
    }

    /// Checks, creating nothing, what [`StagedDir::create`] checks: that the parent folder exists
    /// and what `existing` says about an existing target. Lets a caller refuse early, before
    /// expensive work.
    pub fn check(target: impl AsRef<Path>, existing: Existing) -> Result<(), WriteError> {
        let target = absolute(target.as_ref())?;
        let (parent, _) = parent_and_name(&target)?;
        if !parent.is_dir() {
            return Err(WriteError::NoParent {
                path: target.clone(),
                parent: parent.to_path_buf(),
            });
        }
        check_existing(&target, existing)
    }

    /// The staging folders that runs writing `target` left beside it (`.NAME.partial-PID-N`,
    /// from a run killed outright), with the process id of each. Whether that process still runs
    /// — and so whether the folder may go — is for the caller to decide.
    pub fn leftovers(target: impl AsRef<Path>) -> Result<Vec<Leftover>, WriteError> {
        let target = absolute(target.as_ref())?;
        let (parent, name) = parent_and_name(&target)?;
        let mut prefix = OsString::from(".");
        prefix.push(name);
        prefix.push(".partial-");
        let Some(prefix) = prefix.to_str() else {
            return Ok(Vec::new()); // names this process could not have made either
        };
        let mut found = Vec::new();
        for entry in fs::read_dir(parent).map_err(io_error("list", parent))? {
            let entry = entry.map_err(io_error("list", parent))?;
            let file_name = entry.file_name();
            let pid = file_name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|rest| rest.split_once('-'))
                .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|(pid, _)| pid.parse::<u32>().ok());
            if let Some(pid) = pid {
                found.push(Leftover {
                    path: entry.path(),
                    pid,
                });
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    /// Where to write now.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Where the folder ends up (absolute).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the staging folder to the target, replacing an existing target if that is
    /// allowed (checked again: it may have appeared since [`StagedDir::create`]). Returns the
    /// target.
    pub fn commit(mut self) -> Result<PathBuf, WriteError> {
        check_existing(&self.target, self.existing)?;
        let (parent, name) = parent_and_name(&self.target)?;
        let old = match fs::symlink_metadata(&self.target) {
            Ok(_) => {
                // Moved aside first and deleted last, so that a failed rename can put it back.
                let old = sibling(parent, name, "replaced");
                fs::rename(&self.target, &old).map_err(io_error("move aside", &self.target))?;
                Some(old)
            }
            Err(_) => None,
        };
        if let Err(source) = fs::rename(&self.staging, &self.target) {
            if let Some(old) = &old
                && let Err(e) = fs::rename(old, &self.target)
            {
                log::warn!(
                    "The earlier {} could not be put back from {}: {e}.",
                    self.target.display(),
                    old.display()
                );
            }
            return Err(WriteError::Io {
                action: "rename into place the finished folder",
                path: self.target.clone(),
                source,
            });
        }
        self.committed = true;
        if let Some(old) = old
            && let Err(e) = fs::remove_dir_all(&old)
        {
            log::warn!(
                "The replaced folder was left at {}, because it could not be removed: {e}.",
                old.display()
            );
        }
        Ok(self.target.clone())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: there is nobody left to report a failure to.
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// `Ok` when `target` does not exist, or may be replaced.
fn check_existing(target: &Path, existing: Existing) -> Result<(), WriteError> {
    let Ok(meta) = fs::symlink_metadata(target) else {
        return Ok(());
    };
    let Existing::Replace { foreign, what } = existing else {
        return Err(WriteError::Exists {
            path: target.to_path_buf(),
        });
    };
    if !meta.is_dir() {
        return Err(WriteError::NotAFolder {
            path: target.to_path_buf(),
        });
    }
    match foreign(target).map_err(io_error("list", target))? {
        Some(entry) => Err(WriteError::Foreign {
            path: target.to_path_buf(),
            entry: entry.display().to_string(),
            what,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_a(dir: &Path) -> io::Result<Option<PathBuf>> {
        first_foreign(dir, |name, kind| kind.is_file() && name == "a")
    }

    /// Replaces folders that hold nothing but a file named `a`.
    const OURS: Existing = Existing::Replace {
        foreign: not_a,
        what: "a test output",
    };

    #[test]
    fn an_existing_target_is_refused_or_replaced_only_when_it_is_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("t");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("a"), b"old").unwrap();
        let err = StagedDir::create(&target, Existing::Refuse).unwrap_err();
        assert!(matches!(err, WriteError::Exists { .. }), "{err}");

        let staged = StagedDir::create(&target, OURS).unwrap();
        fs::write(staged.path().join("a"), b"new").unwrap();
        staged.commit().unwrap();
        assert_eq!(fs::read(target.join("a")).unwrap(), b"new");
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no staging or replaced folder left"
        );

        fs::write(target.join("notes.txt"), b"mine").unwrap();
        let err = StagedDir::create(&target, OURS).unwrap_err();
        assert!(err.to_string().contains("holds notes.txt"), "{err}");
        fs::remove_file(target.join("notes.txt")).unwrap();
        // The right name, the wrong kind.
        fs::remove_file(target.join("a")).unwrap();
        fs::create_dir(target.join("a")).unwrap();
        let err = StagedDir::create(&target, OURS).unwrap_err();
        assert!(err.to_string().contains("holds a,"), "{err}");

        let file = tmp.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = StagedDir::create(&file, OURS).unwrap_err();
        assert!(matches!(err, WriteError::NotAFolder { .. }), "{err}");
    }

    #[test]
    fn a_target_that_appears_meanwhile_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("t");
        let staged = StagedDir::create(&target, Existing::Refuse).unwrap();
        fs::create_dir(&target).unwrap();
        let err = staged.commit().unwrap_err();
        assert!(matches!(err, WriteError::Exists { .. }), "{err}");
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "the staging folder is gone"
        );
    }

    #[test]
    fn leftovers_are_the_target_s_staging_folders_with_their_process() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("out");
        let staged = StagedDir::create(&target, Existing::Refuse).unwrap();
        for other in [
            ".out.partial-12-0",
            ".out.partial-x-0",
            ".out.partial-12-",
            ".outer.partial-5-0",
            ".out.replaced-7-0",
            "out.partial-9-0",
        ] {
            fs::create_dir(tmp.path().join(other)).unwrap();
        }
        let found = StagedDir::leftovers(&target).unwrap();
        let mine = Leftover {
            path: staged.path().to_path_buf(),
            pid: std::process::id(),
        };
        let other = Leftover {
            path: tmp.path().join(".out.partial-12-0"),
            pid: 12,
        };
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.contains(&mine) && found.contains(&other), "{found:?}");
    }

    #[test]
    fn a_missing_parent_is_a_sentence() {
        let tmp = tempfile::tempdir().unwrap();
        let err = StagedDir::create(tmp.path().join("a").join("b"), Existing::Refuse).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("does not exist; create it first."), "{text}");
    }
}
