//! The track cache: what a tracked clip takes to render its mattes again with no model — per
//! object and frame the low-res mask logits and object score — in one append-only file per clip
//! session, with what the results were computed from (the [`Provenance`]).
//!
//! Tracking is sequential, rendering is not: a render farm renders frame ranges in separate
//! processes and machines, and some hosts create an effect instance per frame. The cache lets one
//! process track and any number render from the file alone, and lets a session keep the results
//! of frames not in use out of RAM. Layout and guarantees are in docs/formats.md ("Track cache").
//!
//! - [`TrackCacheWriter`] appends blocks as tracking proceeds and *commits* (an objects record,
//!   then fsync) at the end of each step; one writer per file at a time (a lock beside it).
//! - [`TrackCacheReader`] reads up to the last commit (or, for a live view, to the last complete
//!   block); every block is checksummed again when read, a torn tail (a writer mid-append, or
//!   killed) is ignored, a damaged, truncated or replaced file is a [`TrackCacheError`] sentence.
//! - The logits are stored at the matte precision ([`crate::matte::precision`]: 16-bit codes,
//!   predicted and deflated, about 30–60 KiB per frame and object at 1024²). Every matte rounds
//!   its logits to that precision, so a matte rendered from the cache is byte-identical to one
//!   rendered from the live session; the model keeps full precision (a session's cold results
//!   also go to a private full-precision spill, [`ColdStore`]).

mod codec;
mod cold;
mod provenance;
mod reader;
mod record;
mod source;
mod spill;
mod writer;

use std::path::PathBuf;

/// The cache's median-edge prediction of a code from its neighbours, for tools that weigh other
/// code widths with the same predictor (the bench).
pub use codec::predict as predict_code;
pub use cold::ColdStore;
pub use provenance::{
    Expected, Layout, Provenance, engine_version, fingerprint_clip, model_hash, predictor_text,
    prompts_hash,
};
pub use reader::{CachedFrame, TrackCacheReader, View};
pub use source::{SourcePrint, frame_digest};
pub use writer::TrackCacheWriter;

/// What can go wrong with a track cache, each a sentence naming the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrackCacheError {
    #[error("Could not {action} the track cache {path}: {source}.")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("The track cache {path} does not exist; track the clip into it first.")]
    Missing { path: PathBuf },

    #[error("{path} is not a track cache (it does not start with the track cache's signature).")]
    NotACache { path: PathBuf },

    #[error(
        "The track cache {path} has format version {found}; this engine reads version {expected}. Track the clip again with this version."
    )]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    #[error(
        "The track cache {path} is out of date: {changes}. Its results are not used; track the clip again to refresh it."
    )]
    Stale { path: PathBuf, changes: String },

    #[error(
        "The track cache {path} is damaged at byte {offset} ({problem}). Its results are not used; track the clip again to rebuild it."
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        problem: String,
    },

    #[error(
        "The track cache {path} was truncated while it was being read (block at byte {offset} is gone). Track the clip again to rebuild it."
    )]
    Truncated { path: PathBuf, offset: u64 },

    #[error(
        "The track cache {path} was replaced while it was being read (tracked again?); start the render again to use the new one."
    )]
    Replaced { path: PathBuf },

    #[error(
        "The track cache {path} holds no finished tracking yet (its tracking is still running or stopped before its first step ended); wait for the tracking task, or track the clip again."
    )]
    Uncommitted { path: PathBuf },

    #[error(
        "Another process is writing the track cache {path} now (it holds {lock}); wait for it to finish, or choose another cache file."
    )]
    Busy { path: PathBuf, lock: PathBuf },

    #[error(
        "The session writing the track cache {path} lost the result of object {object} on frame {frame} that it had moved out of memory. Track the clip again."
    )]
    NotCached {
        path: PathBuf,
        object: u64,
        frame: usize,
    },

    #[error(
        "The result of object {object} on frame {frame} cannot go into the track cache {path}: {problem}."
    )]
    Unstorable {
        path: PathBuf,
        object: u64,
        frame: usize,
        problem: String,
    },
}

/// Whether `path` is a file that starts with a track cache's signature (any version): what a
/// writer may replace without asking.
pub fn is_track_cache(path: &std::path::Path) -> bool {
    let mut signature = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|f| record::read_at(&f, 0, &mut signature))
        .is_ok_and(|whole| whole && &signature == record::SIGNATURE)
}

pub type Result<T, E = TrackCacheError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
