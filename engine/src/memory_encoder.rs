//! The memory encoder: fuses a frame's features with its predicted mask into the memory that
//! later frames attend to.

use std::sync::Arc;

use half::bf16;
use ndarray::{Array1, Array2, Array4, ArrayView4, CowArray, Ix4};

use crate::error::{Error, Result};
use crate::memory_bank::MaskOrigin;
use crate::model::manifest::StorageDtype;
use crate::model::{GraphName, GraphTensor, Model};

/// One frame's memory features `[mem_dim · H · W]`, stored as the manifest's
/// `memory_storage_dtype` says: bfloat16 is exactly what the official predictor keeps (it rounds
/// memories to bf16 between frames), at half the bytes; float32 keeps them as the graph gave them.
#[derive(Debug, Clone)]
pub enum MemoryFeatures {
    Bfloat16(Arc<[bf16]>),
    Float32(Arc<[f32]>),
    /// Where the graphs run, a card's memory ([`Model::memories_stay_on_graphs`]), already
    /// rounded to the storage type there: float32 values, 4 bytes each whatever the storage
    /// type, since memory attention takes float32 and a card has room for them.
    Kept(Arc<GraphTensor>),
}

impl PartialEq for MemoryFeatures {
    /// Memories in host memory compare by value; a kept one only equals itself (comparing values
    /// would copy it down).
    fn eq(&self, other: &MemoryFeatures) -> bool {
        match (self, other) {
            (MemoryFeatures::Bfloat16(a), MemoryFeatures::Bfloat16(b)) => a == b,
            (MemoryFeatures::Float32(a), MemoryFeatures::Float32(b)) => a == b,
            (MemoryFeatures::Kept(a), MemoryFeatures::Kept(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl MemoryFeatures {
    pub(crate) fn stored(values: &[f32], dtype: StorageDtype) -> MemoryFeatures {
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
            MemoryFeatures::Kept(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        match self {
            MemoryFeatures::Bfloat16(v) => 2 * v.len(),
            MemoryFeatures::Float32(v) => 4 * v.len(),
            MemoryFeatures::Kept(t) => t.bytes(),
        }
    }

    /// Appends the values as f32 (exact: every bf16 is an f32); a kept memory is copied down.
    pub fn extend_f32(&self, out: &mut Vec<f32>) -> Result<()> {
        match self {
            MemoryFeatures::Bfloat16(v) => out.extend(v.iter().map(|v| v.to_f32())),
            MemoryFeatures::Float32(v) => out.extend_from_slice(v),
            MemoryFeatures::Kept(t) => {
                let host = t.to_host().map_err(|source| Error::TensorTransfer {
                    what: "memory features",
                    source,
                })?;
                out.extend(host.iter().copied());
            }
        }
        Ok(())
    }

    /// The memory as a tensor where the graphs keep it, if it is kept there.
    pub(crate) fn kept(&self) -> Option<&GraphTensor> {
        match self {
            MemoryFeatures::Kept(t) => Some(t),
            MemoryFeatures::Bfloat16(_) | MemoryFeatures::Float32(_) => None,
        }
    }
}

/// Encodes the memory of one frame: `origin` selects the binarized mask (clicks) over the
/// scaled sigmoid (tracking). The memory position encoding `[1, mem_dim, H, W]` is the same for
/// every frame: it is read into `pos_enc` on the first run only.
pub fn encode_memory(
    model: &Model,
    vision_features: &GraphTensor,
    low_res_logits: &[f32],
    object_score: f32,
    origin: MaskOrigin,
    pos_enc: &mut Option<GraphTensor>,
) -> Result<MemoryFeatures> {
    encode_memories(
        model,
        vision_features,
        &[(low_res_logits, object_score)],
        origin,
        pos_enc,
    )?
    .pop()
    .ok_or_else(|| Error::Internal {
        message: "the memory encoder gave no memory for its one object".into(),
    })
}

/// Encodes the memories of objects on one frame, each from its (logits, object score); all
/// masks share `origin`. One memory per object, in order.
///
/// Where the graphs keep their outputs on a card ([`Model::memories_stay_on_graphs`]), the
/// memories stay there, rounded to the storage type by a built graph; elsewhere they come back to
/// host memory and are rounded there. The position encoding stays where the graph ran.
pub fn encode_memories(
    model: &Model,
    vision_features: &GraphTensor,
    objects: &[(&[f32], f32)],
    origin: MaskOrigin,
    pos_enc: &mut Option<GraphTensor>,
) -> Result<Vec<MemoryFeatures>> {
    let g = model.geometry();
    let (m, f, low) = (g.mem_dim, g.feat, g.low_res);
    let dtype = model.manifest().memory.memory_storage_dtype;
    let run = model.graph_run(GraphName::MemoryEncoder);
    let from_points = Array1::from_elem(1, origin == MaskOrigin::Points);
    let on_graphs = model.memories_stay_on_graphs();
    let keep: &[&str] = if on_graphs {
        &["memory_pos_enc", "memory_features"]
    } else {
        &["memory_pos_enc"]
    };
    let mut memories = Vec::with_capacity(objects.len());
    for range in model.object_runs(objects.len()) {
        let batch = objects.get(range).unwrap_or_default();
        let b = batch.len();
        // One object's logits go in as they are; several are gathered into one batch.
        let mask: CowArray<'_, f32, Ix4> = match batch {
            [(logits, _)] => ArrayView4::from_shape((1, 1, low, low), logits)
                .map_err(|e| run.error(e))?
                .into(),
            _ => Array4::from_shape_vec(
                (b, 1, low, low),
                batch
                    .iter()
                    .flat_map(|(logits, _)| logits.iter().copied())
                    .collect(),
            )
            .map_err(|e| run.error(e))?
            .into(),
        };
        let score = Array2::from_shape_vec((b, 1), batch.iter().map(|o| o.1).collect())
            .map_err(|e| run.error(e))?;
        let feed = ort::inputs! {
            "vision_features" => run.tensor(vision_features),
            "mask_logits" => run.input(mask.view())?,
            "object_score_logits" => run.input(score.view())?,
            "mask_from_points" => run.input(from_points.view())?,
        };
        let kept = run.run(feed, keep, |out| {
            if pos_enc.is_none() {
                *pos_enc = Some(out.keep("memory_pos_enc", &[1, m, f, f])?);
            }
            if on_graphs {
                return out.keep("memory_features", &[b, m, f, f]).map(Some);
            }
            let features = out.view::<f32>("memory_features", &[b, m, f, f])?;
            for object in features.outer_iter() {
                let values = object
                    .as_slice()
                    .ok_or_else(|| out.error("memory_features is not contiguous"))?;
                memories.push(MemoryFeatures::stored(values, dtype));
            }
            Ok(None)
        })?;
        if let Some(features) = kept {
            memories.extend(model.store_memories(features, dtype)?);
        }
    }
    Ok(memories)
}
