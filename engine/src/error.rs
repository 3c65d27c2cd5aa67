//! Every way the engine can fail, as one enum.
//!
//! The messages end up in a host's error dialog or a CI log, read by someone who did not write the
//! code, so each `Display` is a full sentence that names the file and says what is wrong and, where
//! there is one, what to do about it. Variants carry typed fields (paths, sizes, hashes) so that
//! callers and tests can match on them instead of parsing text.

use std::path::PathBuf;

/// What a JSON file is, in the words of docs/formats.md; used to say which kind of file was bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `manifest.json` of a model directory.
    Manifest,
    /// An interaction script.
    Script,
    /// `trace.json` of a reference trace.
    Trace,
    /// `<library>.record.json`: the size and SHA-256 of the ONNX Runtime library beside it.
    LibraryRecord,
    /// `fast/manifest.json` of a model directory: its fast graph set.
    FastSet,
}

impl FileKind {
    /// The noun used in messages.
    pub fn noun(self) -> &'static str {
        match self {
            FileKind::Manifest => "model manifest",
            FileKind::Script => "interaction script",
            FileKind::Trace => "reference trace",
            FileKind::LibraryRecord => "ONNX Runtime library record",
            FileKind::FastSet => "fast set manifest",
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.noun())
    }
}

/// The engine's error. See the module documentation for the message style.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("Could not read {path}: {source}.")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "There is no manifest.json in {dir}; a model directory holds manifest.json next to its ONNX graphs — point to the folder that bundle/exporter wrote."
    )]
    ManifestMissing { dir: PathBuf },

    #[error("The {kind} {path} could not be parsed: {message}.")]
    Parse {
        kind: FileKind,
        path: PathBuf,
        message: String,
    },

    #[error(
        "The file {path} has format \"{found}\", but a {kind} must have format \"{expected}\"; it is not a {kind}."
    )]
    UnknownFormat {
        kind: FileKind,
        path: PathBuf,
        found: String,
        expected: &'static str,
    },

    #[error(
        "The {kind} {path} is version {found}, newer than version {supported}, the newest this build of SAM 2 Rotoscope reads; update SAM 2 Rotoscope or write the file with a matching exporter."
    )]
    NewerVersion {
        kind: FileKind,
        path: PathBuf,
        found: u64,
        supported: u64,
    },

    #[error("The model manifest {path} is not consistent: {problem}; export the model again.")]
    InvalidManifest { path: PathBuf, problem: String },

    #[error(
        "The model file {path} does not exist although the manifest lists it; the model directory is incomplete — copy the whole directory again or export the model again."
    )]
    ModelFileMissing { path: PathBuf },

    #[error(
        "The model file {path} is truncated: expected {expected} bytes, found {found}; the copy or download was cut short — copy the model directory again."
    )]
    ModelFileTruncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },

    #[error(
        "The model file {path} does not match its manifest: it is {found} bytes but the manifest says {expected}; the file was changed after export — export the model again."
    )]
    ModelFileSize {
        path: PathBuf,
        expected: u64,
        found: u64,
    },

    #[error(
        "The model file {path} does not match its manifest: SHA-256 is {actual} but the manifest says {expected}; the file is corrupted or was changed after export — export the model again."
    )]
    ModelFileHash {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("The tensor file {path} could not be read as a float32 .npy array: {message}.")]
    TensorRead { path: PathBuf, message: String },

    #[error(
        "The tensor file {path} ({name}) has shape {found:?}, but the manifest says {expected:?}; export the model again."
    )]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error(
        "The ONNX Runtime library {path} does not exist; run bundle/fetch-onnxruntime.sh to put it there, or set SAM2_ORT_DYLIB to the path of a libonnxruntime (version 1.{min_minor} or newer)."
    )]
    RuntimeMissing { path: PathBuf, min_minor: u32 },

    #[error(
        "The ONNX Runtime library {path} could not be loaded: {message}; run bundle/fetch-onnxruntime.sh for a known-good copy, or set SAM2_ORT_DYLIB to another libonnxruntime (version 1.{min_minor} or newer)."
    )]
    RuntimeLoad {
        path: PathBuf,
        message: String,
        min_minor: u32,
    },

    #[error(
        "The ONNX Runtime library {path} is damaged: {problem}. Loading it could crash the process, so it was not loaded; reinstall the plugin bundle, or in a checkout delete .local/onnxruntime and run bundle/fetch-onnxruntime.sh, or set SAM2_ORT_DYLIB to another libonnxruntime."
    )]
    RuntimeDamaged {
        path: PathBuf,
        problem: crate::model::library::LibraryDamage,
    },

    #[error(
        "ONNX Runtime is already loaded from {loaded} in this process, so {requested} cannot be loaded as well; one process uses one ONNX Runtime library."
    )]
    RuntimeAlreadyLoaded { loaded: PathBuf, requested: PathBuf },

    #[error("ONNX Runtime could not be set up: {source}.")]
    RuntimeSetup {
        #[source]
        source: ort::Error,
    },

    #[error("ONNX Runtime could not load the graph {path}: {source}; export the model again.")]
    Session {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },

    #[error(
        "ONNX Runtime could not build the small graph that {what}, to run beside {beside}: {source}."
    )]
    BuiltGraph {
        what: String,
        beside: PathBuf,
        #[source]
        source: ort::Error,
    },

    #[error("The graph {path} does not match its manifest: {problem}; export the model again.")]
    GraphMismatch { path: PathBuf, problem: String },

    #[error("Running the graph {path} failed: {message}.")]
    Inference { path: PathBuf, message: String },

    /// ONNX Runtime refused an input or failed to run the graph; its error is the cause.
    #[error("Running the graph {path} failed in ONNX Runtime: {source}.")]
    GraphRun {
        path: PathBuf,
        #[source]
        source: ort::Error,
    },

    /// An output could not be read as the engine expects; ONNX Runtime's error is the cause.
    #[error("The output \"{output}\" of the graph {path} could not be read: {source}.")]
    GraphOutput {
        path: PathBuf,
        output: String,
        #[source]
        source: ort::Error,
    },

    /// A tensor kept where the graphs run could not be moved to or from host memory (a card's
    /// memory full, or a driver error); ONNX Runtime's error is the cause.
    #[error(
        "The {what} could not be moved between host memory and where the graphs run: {source}."
    )]
    TensorTransfer {
        what: &'static str,
        #[source]
        source: ort::Error,
    },

    #[error("Interaction {index} ({op}) in the interaction script {path} is not valid: {problem}.")]
    InvalidInteraction {
        path: PathBuf,
        index: usize,
        op: String,
        problem: String,
    },

    #[error(
        "The clip folder {dir} holds no frames; a clip is a folder of .png, .jpg or .jpeg images named by integer (0.png, 00001.jpg, …)."
    )]
    EmptyClip { dir: PathBuf },

    #[error(
        "The clip folder {dir} holds {name}, whose name is not a non-negative integer; frames must be named by their index (0.png, 00001.jpg, …) — rename or remove that file."
    )]
    FrameName { dir: PathBuf, name: String },

    #[error(
        "The clip folder {dir} holds two frames numbered {number} ({first} and {second}); keep one of them."
    )]
    DuplicateFrame {
        dir: PathBuf,
        number: u64,
        first: String,
        second: String,
    },

    #[error("The frame {path} is not a readable PNG or JPEG image: {problem}.")]
    FrameHeader { path: PathBuf, problem: String },

    #[error(
        "The frame {path} is {found_w}×{found_h} but {first} is {expected_w}×{expected_h}; all frames of a clip must have the same size."
    )]
    FrameSize {
        path: PathBuf,
        first: PathBuf,
        expected_w: u32,
        expected_h: u32,
        found_w: u32,
        found_h: u32,
    },

    #[error("The reference trace {path} is not consistent: {problem}.")]
    InvalidTrace { path: PathBuf, problem: String },

    #[error("Frame {frame} is outside the clip, which has {num_frames} frames (0–{}).", num_frames.saturating_sub(1))]
    FrameOutOfRange { frame: usize, num_frames: usize },

    #[error("Frame {frame} could not be read: {message}.")]
    FrameSource { frame: usize, message: String },

    #[error("The clip has no frames; there is nothing to track.")]
    EmptySource,

    #[error("The prompt for object {object} on frame {frame} is not usable: {problem}.")]
    InvalidPrompt {
        frame: usize,
        object: crate::object::ObjectId,
        problem: String,
    },

    #[error(
        "The prompt for object {object} on frame {frame} has {count} points (a box counts as two), more than the {max} one object can have on one frame; use fewer clicks, or clear the frame's earlier clicks first."
    )]
    TooManyPoints {
        frame: usize,
        object: crate::script::ObjectId,
        count: usize,
        max: usize,
    },

    #[error("There is no object {object} in this session.")]
    UnknownObject { object: crate::object::ObjectId },

    #[error("{}", match object {
        Some(o) => format!("Object {o} has no click, box or mask on any frame; add one before tracking."),
        None => "Nothing to track yet: add a click, a box or a mask on some frame first.".to_string(),
    })]
    NothingToTrack {
        object: Option<crate::object::ObjectId>,
    },

    #[error(
        "The model manifest {path} sets {setting} to {found}, which this engine does not implement: {reason}; export the model with the official setting."
    )]
    UnsupportedBehaviour {
        path: PathBuf,
        setting: &'static str,
        found: String,
        reason: &'static str,
    },

    #[error("The mask {path} cannot be used as a prompt: {problem}.")]
    MaskFile { path: PathBuf, problem: String },

    #[error("\"{given}\" is not a device; choose cpu, gpu or auto.")]
    UnknownDevice { given: String },

    #[error("\"{given}\" is not a precision; choose exact or fast.")]
    UnknownPrecision { given: String },

    #[error(
        "The model in {dir} has no fast graph set for where it runs ({set}), so it cannot run at precision fast; add the sets with `bundle/exporter/py fast --model {dir}` (a model opened from an official checkpoint has only the exact graphs until then), or choose precision exact."
    )]
    FastSetMissing { dir: PathBuf, set: &'static str },

    #[error(
        "The fast graph set {path} was made from another export of the model (its manifest.json has changed since), so its graphs may hold other weights; add the set again with `bundle/exporter/py fast --model {dir}`, or choose precision exact."
    )]
    FastSetStale { path: PathBuf, dir: PathBuf },

    #[error(
        "The fast set manifest {path} is not consistent: {problem}; add the set again with `bundle/exporter/py fast --model {dir}`."
    )]
    InvalidFastSet {
        path: PathBuf,
        dir: PathBuf,
        problem: String,
    },

    #[error(
        "\"{given}\" is not an execution provider; choose cpu, cuda, cuda:N, tensorrt, tensorrt:N, directml, directml:N, coreml or webgpu."
    )]
    UnknownProvider { given: String },

    #[error("{}", crate::model::device::gpu_unavailable_message(path, tried))]
    GpuUnavailable {
        path: PathBuf,
        tried: Vec<crate::model::device::ProviderFailure>,
    },

    #[error(
        "The execution provider {} was asked for but cannot run the graph {path}: {failure}. Choose the device cpu or auto to run on the CPU instead.",
        failure.provider
    )]
    ProviderUnavailable {
        path: PathBuf,
        failure: crate::model::device::ProviderFailure,
    },

    /// A checkpoint file given as the model that cannot become one: not SAM 2, truncated, of
    /// an architecture no graph template fits, or a damaged template.
    #[error("The checkpoint {path} cannot be used as a model: {problem}.")]
    Checkpoint { path: PathBuf, problem: String },

    #[error("Internal error in the engine: {message}. Please report it.")]
    Internal { message: String },

    /// The session's track cache (its cold tier) could not be written or read back.
    #[error(transparent)]
    TrackCache(#[from] crate::track_cache::TrackCacheError),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the file it happened on, which `std::io::Error` does not carry.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
