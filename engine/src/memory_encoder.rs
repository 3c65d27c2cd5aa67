//! The memory encoder: fuses a frame's features with its predicted mask into the memory that
//! later frames attend to.

use std::sync::Arc;
use std::time::Instant;

use half::bf16;
use ndarray::{Array1, Array2, Array4, ArrayView4, Ix4};

use crate::error::Result;
use crate::model::Model;
use crate::model::io::{inference_error, input, output};

/// One frame's memory features `[mem_dim · H · W]`, stored as bfloat16 — exactly what the official
/// predictor keeps (it rounds memories to bf16 between frames), at half the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryFeatures(pub Arc<[bf16]>);

impl MemoryFeatures {
    fn from_f32(values: &[f32]) -> MemoryFeatures {
        MemoryFeatures(values.iter().map(|&v| bf16::from_f32(v)).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn bytes(&self) -> usize {
        2 * self.0.len()
    }

    /// Appends the values as f32 (exact: every bf16 is an f32).
    pub fn extend_f32(&self, out: &mut Vec<f32>) {
        out.extend(self.0.iter().map(|v| v.to_f32()));
    }
}

/// Encodes the memory of one frame. `mask_from_points` selects the binarized mask (the frame was
/// clicked) over the scaled sigmoid. Returns the memory and the memory position encoding
/// `[1, mem_dim, H, W]` (identical for every frame; callers keep one).
pub fn encode_memory(
    model: &Model,
    vision_features: ArrayView4<'_, f32>,
    low_res_logits: &[f32],
    object_score: f32,
    mask_from_points: bool,
) -> Result<(MemoryFeatures, Array4<f32>)> {
    let g = model.geometry();
    let (m, f, low) = (g.mem_dim, g.feat, g.low_res);
    let mut session = model.memory_encoder.lock();
    let path = session.path().to_path_buf();
    let graph = path.as_path();
    let mask = ArrayView4::from_shape((1, 1, low, low), low_res_logits)
        .map_err(|e| inference_error(graph, e))?;
    let score = Array2::from_elem((1, 1), object_score);
    let from_points = Array1::from_elem(1, mask_from_points);
    let feed = ort::inputs! {
        "vision_features" => input(graph, vision_features)?,
        "mask_logits" => input(graph, mask)?,
        "object_score_logits" => input(graph, score.view())?,
        "mask_from_points" => input(graph, from_points.view())?,
    };
    let started = Instant::now();
    let outputs = session.session_mut().run(feed);
    model.clocks.memory_encoder.record(started);
    let outputs = outputs.map_err(|e| inference_error(graph, e))?;
    let features = output::<f32>(graph, &outputs, "memory_features", &[1, m, f, f])?;
    let pos = output::<f32>(graph, &outputs, "memory_pos_enc", &[1, m, f, f])?
        .into_dimensionality::<Ix4>()
        .map_err(|e| inference_error(graph, e))?;
    let features = features
        .as_slice()
        .map(MemoryFeatures::from_f32)
        .ok_or_else(|| inference_error(graph, "memory_features is not contiguous"))?;
    Ok((features, pos))
}
