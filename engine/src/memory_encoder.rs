//! The memory encoder: fuses a frame's features with its predicted mask into the memory that
//! later frames attend to.

use std::sync::Arc;

use half::bf16;
use ndarray::{Array1, Array2, Array4, ArrayView4, Ix4};

use crate::error::Result;
use crate::memory_bank::MaskOrigin;
use crate::model::manifest::StorageDtype;
use crate::model::{GraphName, Model};

/// One frame's memory features `[mem_dim · H · W]`, stored as the manifest's
/// `memory_storage_dtype` says: bfloat16 is exactly what the official predictor keeps (it rounds
/// memories to bf16 between frames), at half the bytes; float32 keeps them as the graph gave them.
#[derive(Debug, Clone, PartialEq)]
pub enum MemoryFeatures {
    Bfloat16(Arc<[bf16]>),
    Float32(Arc<[f32]>),
}

impl MemoryFeatures {
    fn stored(values: &[f32], dtype: StorageDtype) -> MemoryFeatures {
        match dtype {
            StorageDtype::Bfloat16 => {
                MemoryFeatures::Bfloat16(values.iter().map(|&v| bf16::from_f32(v)).collect())
            }
            StorageDtype::Float32 => MemoryFeatures::Float32(values.into()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            MemoryFeatures::Bfloat16(v) => v.len(),
            MemoryFeatures::Float32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        match self {
            MemoryFeatures::Bfloat16(v) => 2 * v.len(),
            MemoryFeatures::Float32(v) => 4 * v.len(),
        }
    }

    /// Appends the values as f32 (exact: every bf16 is an f32).
    pub fn extend_f32(&self, out: &mut Vec<f32>) {
        match self {
            MemoryFeatures::Bfloat16(v) => out.extend(v.iter().map(|v| v.to_f32())),
            MemoryFeatures::Float32(v) => out.extend_from_slice(v),
        }
    }
}

/// Encodes the memory of one frame: `origin` selects the binarized mask (clicks) over the
/// scaled sigmoid (tracking). The memory position encoding `[1, mem_dim, H, W]` is the same for
/// every frame: it is read into `pos_enc` on the first run only.
pub fn encode_memory(
    model: &Model,
    vision_features: ArrayView4<'_, f32>,
    low_res_logits: &[f32],
    object_score: f32,
    origin: MaskOrigin,
    pos_enc: &mut Option<Array4<f32>>,
) -> Result<MemoryFeatures> {
    let g = model.geometry();
    let (m, f, low) = (g.mem_dim, g.feat, g.low_res);
    let dtype = model.manifest().memory.memory_storage_dtype;
    let run = model.graph_run(GraphName::MemoryEncoder);
    let mask =
        ArrayView4::from_shape((1, 1, low, low), low_res_logits).map_err(|e| run.error(e))?;
    let score = Array2::from_elem((1, 1), object_score);
    let from_points = Array1::from_elem(1, origin == MaskOrigin::Points);
    let feed = ort::inputs! {
        "vision_features" => run.input(vision_features)?,
        "mask_logits" => run.input(mask)?,
        "object_score_logits" => run.input(score.view())?,
        "mask_from_points" => run.input(from_points.view())?,
    };
    run.run(feed, |out| {
        let features = out.view::<f32>("memory_features", &[1, m, f, f])?;
        let features = features
            .as_slice()
            .map(|values| MemoryFeatures::stored(values, dtype))
            .ok_or_else(|| out.error("memory_features is not contiguous"))?;
        if pos_enc.is_none() {
            *pos_enc = Some(
                out.array::<f32>("memory_pos_enc", &[1, m, f, f])?
                    .into_dimensionality::<Ix4>()
                    .map_err(|e| out.error(e))?,
            );
        }
        Ok(features)
    })
}
