//! Memory attention: conditions the current frame's features on the memory bank (spatial memories
//! of prompted and recent frames, and object pointers).

use ndarray::{Array1, Array2, Array4, ArrayView4, Ix4};

use crate::error::Result;
use crate::memory_encoder::MemoryFeatures;
use crate::model::{GraphName, Model};

/// One spatial memory and its temporal slot (`num_maskmem − t_pos − 1`).
#[derive(Debug, Clone, Copy)]
pub struct MemoryEntry<'a> {
    pub features: &'a MemoryFeatures,
    pub temporal_slot: i64,
}

/// One object pointer and its normalized signed temporal distance.
#[derive(Debug, Clone, Copy)]
pub struct PointerEntry<'a> {
    pub pointer: &'a [f32],
    pub position: f32,
}

/// Runs memory attention; `memories` must hold at least one entry.
pub fn condition(
    model: &Model,
    current_features: ArrayView4<'_, f32>,
    current_pos_enc: ArrayView4<'_, f32>,
    memories: &[MemoryEntry<'_>],
    memory_pos_enc: ArrayView4<'_, f32>,
    pointers: &[PointerEntry<'_>],
) -> Result<Array4<f32>> {
    let g = model.geometry();
    let (c, m, f) = (g.hidden_dim, g.mem_dim, g.feat);
    let run = model.graph_run(GraphName::MemoryAttention);
    if memories.is_empty() {
        return Err(run.error("the memory bank passed to it was empty"));
    }
    let mut memory = Vec::with_capacity(memories.len() * m * f * f);
    for entry in memories {
        entry.features.extend_f32(&mut memory);
    }
    let memory =
        Array4::from_shape_vec((memories.len(), m, f, f), memory).map_err(|e| run.error(e))?;
    let slots: Array1<i64> = memories.iter().map(|e| e.temporal_slot).collect();
    let mut flat = Vec::with_capacity(pointers.len() * c);
    for p in pointers {
        flat.extend_from_slice(p.pointer);
    }
    let object_pointers =
        Array2::from_shape_vec((pointers.len(), c), flat).map_err(|e| run.error(e))?;
    let positions: Array1<f32> = pointers.iter().map(|p| p.position).collect();
    let feed = ort::inputs! {
        "current_features" => run.input(current_features)?,
        "current_pos_enc" => run.input(current_pos_enc)?,
        "memory" => run.input(memory.view())?,
        "memory_pos_enc" => run.input(memory_pos_enc)?,
        "memory_temporal_slot" => run.input(slots.view())?,
        "object_pointers" => run.input(object_pointers.view())?,
        "object_pointer_positions" => run.input(positions.view())?,
    };
    run.run(feed, |out| {
        out.array::<f32>("conditioned_features", &[1, c, f, f])?
            .into_dimensionality::<Ix4>()
            .map_err(|e| out.error(e))
    })
}
