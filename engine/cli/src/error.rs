//! What the command line reports: the engine's errors as they are (each already a sentence), and
//! the few mistakes only the command line can make.

use std::path::PathBuf;

use sam2_engine::matte::MatteError;
use sam2_engine::staged_dir::WriteError;
use sam2_engine::trace_writer::TraceWriteError;
use sam2_engine::track_cache::TrackCacheError;

use crate::signals::StopSignal;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Engine(#[from] sam2_engine::Error),

    #[error(transparent)]
    Matte(#[from] MatteError),

    #[error(transparent)]
    Write(#[from] WriteError),

    #[error(transparent)]
    Trace(#[from] TraceWriteError),

    #[error(transparent)]
    Cache(#[from] TrackCacheError),

    #[error(
        "{path} exists and is not a track cache; --cache replaces only an earlier track cache, so choose another file."
    )]
    NotACache { path: PathBuf },

    #[error(
        "The track cache {cache} lies inside the output folder {folder}, which is replaced as a whole; put the cache elsewhere."
    )]
    CacheInOutput { cache: PathBuf, folder: PathBuf },

    #[error(
        "The track cache {cache} was tracked on a clip of {cached}, but {clip} has {found}; give the clip it was tracked on."
    )]
    CacheClip {
        cache: PathBuf,
        clip: PathBuf,
        cached: String,
        found: String,
    },

    #[error(
        "Frames {first} to {last} were asked for, but the clip has {frames} frames (0 to {max})."
    )]
    FramesOutside {
        first: usize,
        last: usize,
        frames: usize,
        max: usize,
    },

    #[error(
        "The {what} {path} already exists; pass --force to replace it, or choose another folder."
    )]
    OutputExists { what: &'static str, path: PathBuf },

    #[error(
        "The trace folder {trace} and the output folder {out} overlap; give two separate folders."
    )]
    OutputsOverlap { out: PathBuf, trace: PathBuf },

    #[error(
        "Another sam2-rotoscope run is writing the {what} {path} now (it holds {lock}); wait for it to finish, or choose another folder."
    )]
    Busy {
        what: &'static str,
        path: PathBuf,
        lock: PathBuf,
    },

    #[error("Could not lock {path} against other runs: {source}.")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} names no folder that can be written (it has no parent or no name).")]
    NotAnOutputPath { path: PathBuf },

    #[error(
        "The model directory {path} does not exist; --model takes the folder that bundle/exporter wrote (it holds manifest.json)."
    )]
    ModelMissing { path: PathBuf },

    #[error(
        "The clip folder {path} does not exist; --clip takes a folder of frames named by number (0.png, 00001.jpg, …)."
    )]
    ClipMissing { path: PathBuf },

    #[error("The interaction script {path} does not exist.")]
    ScriptMissing { path: PathBuf },

    #[error(
        "No clip was given and the interaction script {script} names none; pass --clip FRAMES_DIR."
    )]
    NoClip { script: PathBuf },

    #[error(
        "The interaction script {script} asks for non_overlap_masks, which this engine does not implement; remove that setting."
    )]
    NonOverlapMasks { script: PathBuf },

    #[error("Could not write the matte {path}: {message}.")]
    Png { path: PathBuf, message: String },

    #[error(
        "SIGINT, SIGTERM and SIGHUP could not be caught ({message}), so a stopped run could leave a half-written folder behind; report this."
    )]
    SignalHandler { message: String },

    #[error("{done}, but the report could not be printed to stdout: {source}.")]
    Stdout {
        /// What was done in spite of it, as the start of a sentence.
        done: String,
        #[source]
        source: std::io::Error,
    },

    #[error("Stopped by {signal} before the output was complete; nothing was written.")]
    Stopped { signal: StopSignal },

    #[error(
        "Stopped by {signal} before every matte was written; the mattes written are whole, none is half-written. Run the same command again to write the rest."
    )]
    RenderStopped { signal: StopSignal },
}

impl CliError {
    /// [`WriteError::Exists`] with the command line's advice (`--force`).
    pub fn from_write(what: &'static str, error: WriteError) -> CliError {
        match error {
            WriteError::Exists { path } => CliError::OutputExists { what, path },
            other => CliError::Write(other),
        }
    }

    /// [`CliError::from_write`] for the trace writer's errors.
    pub fn from_trace(what: &'static str, error: TraceWriteError) -> CliError {
        match error {
            TraceWriteError::Folder(e) => CliError::from_write(what, e),
            other => CliError::Trace(other),
        }
    }
}
