//! Everything that can go wrong in the effect, as sentences an artist reads in the host (the
//! effect's persistent message). The engine's own errors are sentences already and pass through.

use std::path::PathBuf;

use sam2_engine::matte::MatteError;

use crate::prompts::PromptsError;
use crate::render::RenderError;

/// Why the plugin could not load (kOfxActionLoad); the host then does not offer the effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("the host did not call setHost before loading the plugin")]
    NoHost,
    #[error("the host does not offer the OpenFX {0} suite")]
    MissingSuite(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Engine(#[from] sam2_engine::Error),

    #[error("{0}")]
    Matte(#[from] MatteError),

    #[error("{0}")]
    Prompts(#[from] PromptsError),

    #[error("{0}")]
    Render(#[from] RenderError),

    #[error(
        "ONNX Runtime was not found, so SAM 2 cannot run (looked for {looked}). Reinstall the plugin bundle, which ships it in Contents/Linux-x86-64, or set the environment variable SAM2_ORT_DYLIB to a libonnxruntime.so of version 1.30 or newer before starting the host."
    )]
    RuntimeNotFound { looked: String },

    #[error(
        "No SAM 2 model is chosen: set Model Directory (Model page) to a model exported with bundle/exporter, or put one in {models_dir}."
    )]
    NoModel { models_dir: PathBuf },

    #[error(
        "The model directory {dir} holds no SAM 2 model (no manifest.json); choose the folder that bundle/exporter wrote."
    )]
    NotAModel { dir: PathBuf },

    #[error("The Source input is not connected; connect the clip to segment.")]
    NoSource,

    #[error("The output image could not be written: {problem}.")]
    OutputImage { problem: String },

    #[error(
        "The host did not {what}, which SAM 2 Rotoscope needs; it cannot work in this host as it is."
    )]
    HostRefused { what: String },

    #[error(
        "The host gave the {action} action no {property}, which OpenFX requires; the action was not carried out."
    )]
    MissingProperty {
        action: &'static str,
        property: String,
    },

    #[error(
        "The host has no parameter {name} on this effect; the effect was described differently from how it was created (an older or newer plugin?). Recreate the effect."
    )]
    MissingParameter { name: String },

    #[error("The host did not give the value of the parameter {name}.")]
    UnreadableParameter { name: String },

    #[error(
        "The host handed over a {what} image, which SAM 2 Rotoscope cannot read; it reads RGBA or RGB in 8-bit, 16-bit, half or float."
    )]
    UnsupportedImage { what: String },

    #[error(
        "Frame {frame} is outside the source clip (frames {first}–{last}); the source is shown as it is."
    )]
    OutsideClip { frame: i64, first: i64, last: i64 },

    #[error(
        "SAM 2 Rotoscope is busy tracking; this frame is shown without its matte and refreshes when tracking ends."
    )]
    Busy,

    #[error(
        "A render of this effect is still running; press the button again when it has finished."
    )]
    RenderRunning,

    #[error("{0}")]
    Model(String),

    #[error(
        "This host hands over only the frame being rendered, so the Track buttons cannot read other frames; render or play the clip in order from a prompted frame instead: each frame is tracked as it is rendered."
    )]
    NoTemporalAccess,

    #[error("{0}")]
    TrackCache(#[from] sam2_engine::track_cache::TrackCacheError),

    #[error("There are no prompts to track: click on the objects first.")]
    NothingToTrack,

    #[error(
        "{path} exists and is not a track cache; the effect replaces only an earlier track cache there, so choose another Track Cache File."
    )]
    NotATrackCache { path: PathBuf },

    #[error(
        "The Track Cache File {path} is a relative path, which would depend on the host's working folder; give a full path."
    )]
    RelativeCachePath { path: PathBuf },

    #[error(
        "The host gives no frame range for the clip, so the whole clip cannot be tracked into a cache; set Clip Length (Cache page) to its frame count."
    )]
    UnknownClipLength,

    #[error(
        "There is no folder for a track cache (no HOME or cache folder in the environment); set Track Cache File (Cache page)."
    )]
    NoCacheFolder,

    #[error("Could not write {path}: {message}.")]
    WriteFile { path: PathBuf, message: String },

    #[error("Internal error in SAM 2 Rotoscope: {0}. Please report it.")]
    Internal(String),
}

pub type Result<T, E = PluginError> = std::result::Result<T, E>;
