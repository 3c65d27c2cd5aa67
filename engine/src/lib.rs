//! The SAM 2 video predictor as a library: model directories and their ONNX Runtime sessions, and
//! the exchange formats (interaction scripts, reference traces, clips) of docs/formats.md.
//!
//! It knows nothing about OpenFX, so that the CLI, the tests and the plugin drive one and the same
//! predictor. Everything a file or a user can get wrong comes back as an [`Error`] whose message is
//! a sentence naming the file; nothing here panics on input.

pub mod checkpoint;
pub mod clip;
pub mod error;
mod exchange;
pub mod fill_holes;
pub mod frame_cache;
pub mod frame_source;
mod frames;
pub mod image_encoder;
pub mod jpeg;
pub mod mask_decoder;
pub mod mask_prompt;
pub mod masklet;
pub mod matte;
pub mod memory_attention;
pub mod memory_bank;
pub mod memory_encoder;
pub mod memory_selection;
pub mod model;
pub mod npz;
pub mod object;
pub mod predictor;
pub mod propagation;
pub mod replay;
pub mod resample;
pub mod script;
pub mod staged_dir;
pub mod trace;
pub mod trace_writer;
pub mod track_cache;
mod track_step;
pub mod user_cache;

pub use clip::Clip;
pub use error::{Error, FileKind, Result};
pub use frame_source::{FolderSource, FrameSource, RgbFrame};
pub use model::{Model, ModelDir, ModelSessions, ModelTensors, Precision, Runtime};
pub use object::ObjectId;
pub use predictor::{ClipSession, FrameMasks, ObjectOutput, SessionSettings, SessionStats};
pub use propagation::{Direction, Propagation, PropagationEnd};
pub use script::Script;
pub use trace::Trace;
