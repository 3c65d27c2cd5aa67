//! The SAM 2 video predictor as a library: model directories and their ONNX Runtime sessions, and
//! the exchange formats (interaction scripts, reference traces, clips) of docs/formats.md.
//!
//! It knows nothing about OpenFX, so that the CLI, the tests and the plugin drive one and the same
//! predictor. Everything a file or a user can get wrong comes back as an [`Error`] whose message is
//! a sentence naming the file; nothing here panics on input.

pub mod clip;
pub mod error;
mod exchange;
pub mod model;
pub mod script;
pub mod trace;

pub use clip::Clip;
pub use error::{Error, FileKind, Result};
pub use model::{ModelDir, ModelSessions, ModelTensors, Runtime};
pub use script::Script;
pub use trace::Trace;
