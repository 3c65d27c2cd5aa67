//! A loaded model: the verified directory and its four sessions, shared by every clip session.
//!
//! ONNX Runtime sessions are created once per model and shared (`Arc<Model>`); `ort` runs a session
//! through `&mut`, so each graph sits behind its own mutex — two clip sessions can encode one frame
//! while decoding another.

use std::sync::Arc;

use parking_lot::Mutex;

use super::manifest::Manifest;
use super::{Graph, ModelDir, ModelTensors, Runtime};
use crate::error::Result;

/// Sizes every per-frame array derives from, computed once from the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// S, the square model input.
    pub image_size: usize,
    /// C, the feature channels.
    pub hidden_dim: usize,
    /// Memory channels.
    pub mem_dim: usize,
    /// H = W of the feature map (S/16).
    pub feat: usize,
    /// Side of the low-resolution mask logits (S/4).
    pub low_res: usize,
}

impl Geometry {
    fn of(m: &Manifest) -> Geometry {
        let feat = m.feature_size() as usize;
        Geometry {
            image_size: m.image_size as usize,
            hidden_dim: m.hidden_dim as usize,
            mem_dim: m.mem_dim as usize,
            feat,
            low_res: feat * 4,
        }
    }

    /// Elements of one low-resolution mask.
    pub fn low_res_len(&self) -> usize {
        self.low_res * self.low_res
    }
}

/// The model every graph wrapper runs on.
#[derive(Debug)]
pub struct Model {
    dir: ModelDir,
    geometry: Geometry,
    pub(crate) image_encoder: Mutex<Graph>,
    pub(crate) mask_decoder: Mutex<Graph>,
    pub(crate) memory_encoder: Mutex<Graph>,
    pub(crate) memory_attention: Mutex<Graph>,
}

impl Model {
    /// Creates the four sessions of an opened model directory.
    pub fn load(dir: ModelDir, runtime: &Runtime) -> Result<Arc<Model>> {
        let sessions = dir.load_sessions(runtime)?;
        Ok(Arc::new(Model {
            geometry: Geometry::of(dir.manifest()),
            image_encoder: Mutex::new(sessions.image_encoder),
            mask_decoder: Mutex::new(sessions.mask_decoder),
            memory_encoder: Mutex::new(sessions.memory_encoder),
            memory_attention: Mutex::new(sessions.memory_attention),
            dir,
        }))
    }

    /// Opens, verifies and loads the model directory at `path`.
    pub fn open(path: impl AsRef<std::path::Path>, runtime: &Runtime) -> Result<Arc<Model>> {
        Model::load(ModelDir::open(path)?, runtime)
    }

    pub fn dir(&self) -> &ModelDir {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        self.dir.manifest()
    }

    pub fn tensors(&self) -> &ModelTensors {
        self.dir.tensors()
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }
}
