//! Memory attention: conditions the current frame's features on the memory bank (spatial memories
//! of prompted and recent frames, and object pointers).

use ndarray::{Array1, ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::memory_encoder::MemoryFeatures;
use crate::model::{GraphName, GraphTensor, Model, ObjectBatching};

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

/// What memory attention reads of one object's memory bank on one frame.
#[derive(Debug, Clone, Copy)]
pub struct BankInputs<'a> {
    pub memories: &'a [MemoryEntry<'a>],
    pub pointers: &'a [PointerEntry<'a>],
}

impl BankInputs<'_> {
    /// Whether `self` and `other` can share one run: the graph takes one list of temporal slots
    /// and one of pointer positions for all its objects (objects prompted on the same frames and
    /// tracked together have the same).
    pub fn same_layout(&self, other: &BankInputs<'_>) -> bool {
        self.memories.len() == other.memories.len()
            && self.pointers.len() == other.pointers.len()
            && self
                .memories
                .iter()
                .zip(other.memories)
                .all(|(a, b)| a.temporal_slot == b.temporal_slot)
            && self
                .pointers
                .iter()
                .zip(other.pointers)
                .all(|(a, b)| a.position.to_bits() == b.position.to_bits())
    }
}

/// Runs memory attention for `objects` on one frame; every object must hold at least one memory
/// and all must have the [same layout](BankInputs::same_layout). Returns one `[b, C, H, W]` tensor
/// per run of [`Model::object_runs`], left where the graph ran: only the decoder reads them.
pub fn condition(
    model: &Model,
    current_features: &GraphTensor,
    current_pos_enc: &GraphTensor,
    objects: &[BankInputs<'_>],
    memory_pos_enc: &GraphTensor,
) -> Result<Vec<GraphTensor>> {
    let g = model.geometry();
    let (c, m, f) = (g.hidden_dim, g.mem_dim, g.feat);
    let run = model.graph_run(GraphName::MemoryAttention);
    let Some(first) = objects.first() else {
        return Err(run.error("it was asked to condition no object"));
    };
    if first.memories.is_empty() {
        return Err(run.error("the memory bank passed to it was empty"));
    }
    if let Some(other) = objects.iter().find(|o| !o.same_layout(first)) {
        return Err(run.error(format!(
            "objects with different memory banks ({} and {} memories, {} and {} pointers) were put in one run",
            first.memories.len(),
            other.memories.len(),
            first.pointers.len(),
            other.pointers.len()
        )));
    }
    let (frames, pointers) = (first.memories.len(), first.pointers.len());
    let slots: Array1<i64> = first.memories.iter().map(|e| e.temporal_slot).collect();
    let positions: Array1<f32> = first.pointers.iter().map(|p| p.position).collect();
    let batched = model.dir().object_batching() == ObjectBatching::Batched;
    // A frame's objects are nearly always one run.
    let mut parts = Vec::with_capacity(1);
    for range in model.object_runs(objects.len()) {
        let batch = objects.get(range).unwrap_or_default();
        let n = batch.len();
        // Graphs exported before batching take one object's bank without the objects dimension.
        let (memory_shape, pointer_shape) = if batched {
            (vec![n, frames, m, f, f], vec![n, pointers, c])
        } else {
            (vec![frames, m, f, f], vec![pointers, c])
        };
        let memory = gather(model, batch, &memory_shape)?;
        let mut flat = Vec::with_capacity(n * pointers * c);
        for object in batch {
            for p in object.pointers {
                flat.extend_from_slice(p.pointer);
            }
        }
        let object_pointers =
            ArrayD::from_shape_vec(IxDyn(&pointer_shape), flat).map_err(|e| run.error(e))?;
        let feed = ort::inputs! {
            "current_features" => run.tensor(current_features),
            "current_pos_enc" => run.tensor(current_pos_enc),
            "memory" => run.tensor(&memory),
            "memory_pos_enc" => run.tensor(memory_pos_enc),
            "memory_temporal_slot" => run.input(slots.view())?,
            "object_pointers" => run.input(object_pointers.view())?,
            "object_pointer_positions" => run.input(positions.view())?,
        };
        parts.push(run.run(feed, &["conditioned_features"], |out| {
            out.keep("conditioned_features", &[n, c, f, f])
        })?);
    }
    Ok(parts)
}

/// The memories of `batch`, object by object and frame by frame, as memory attention's input of
/// `shape`: gathered where the graphs keep them when every one is kept there (and the graph for
/// that can be built), in host memory otherwise.
fn gather(model: &Model, batch: &[BankInputs<'_>], shape: &[usize]) -> Result<GraphTensor> {
    let entries = || batch.iter().flat_map(|object| object.memories);
    if let Some(kept) = entries()
        .map(|entry| entry.features.kept())
        .collect::<Option<Vec<&GraphTensor>>>()
        && let Some(memory) = model.gather_memories(&kept, shape)?
    {
        return Ok(memory);
    }
    let run = model.graph_run(GraphName::MemoryAttention);
    let mut memory = Vec::with_capacity(shape.iter().product());
    for entry in entries() {
        entry.features.extend_f32(&mut memory)?;
    }
    let memory = ArrayD::from_shape_vec(IxDyn(shape), memory).map_err(|e| run.error(e))?;
    GraphTensor::from_host(memory).map_err(|source| Error::TensorTransfer {
        what: "memory bank",
        source,
    })
}
