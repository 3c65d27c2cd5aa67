//! Small graphs the engine builds in code (ONNX Runtime's model editor), so that the memories stay
//! where the graphs keep them and frames cross as bytes.
//!
//! On a card the memory encoder's output stays on the card. What the engine did to memories in
//! host memory — round them to the storage type, split a batch into one memory per object, gather
//! a frame's memory bank into memory attention's input — is done there by these graphs instead,
//! and no memory crosses the bus. A frame goes there as the resized bytes and is normalized by
//! lookup in the host's own table: 3 bytes a pixel cross instead of 12, and the values are the
//! same bits. Each graph is built on first use for its shape, on the providers of the graph it
//! works for, and timed on that graph's clock.

use std::collections::HashMap;
use std::sync::Arc;

use once_cell::sync::OnceCell;
use ort::editor::{Graph as EditedGraph, Model as EditedModel, Node, ONNX_DOMAIN, Opset};
use ort::operator::Attribute;
use ort::value::{Outlet, Shape, SymbolicDimensions, TensorElementType, ValueType};
use parking_lot::Mutex;

use super::device::Provider;
use super::manifest::{GraphName, Manifest, StorageDtype};
use super::runtime::{Graph, Runtime};
use super::{GraphTensor, Model};
use crate::error::{Error, Result};
use crate::memory_encoder::MemoryFeatures;
use crate::resample::sam2_normalization;

/// The opset the built graphs declare: Split still takes its sizes as an input there, which every
/// provider with a Split kernel implements.
const OPSET: u32 = 17;
/// ONNX's element type numbers, for Cast's `to`.
const FLOAT: i64 = 1;
const BFLOAT16: i64 = 16;
const INT64: i64 = 7;

/// What a built graph does, with the shapes it was built for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BuiltOp {
    /// The memory encoder's `[objects, mem_dim, H, W]` into one `[1, mem_dim, H, W]` memory per
    /// object, each rounded to bfloat16 and back when memories are stored so (exactly what
    /// rounding in host memory gives, and what the official predictor keeps). Never built for one
    /// object stored as float32: its memory is the encoder's output as it is.
    StoreMemories { batch: [usize; 4], round: bool },
    /// `parts` memories of `[1, mem_dim, H, W]`, in order, as one tensor of `shape`.
    GatherMemories {
        parts: usize,
        item: [usize; 4],
        shape: Vec<usize>,
    },
    /// A resized frame, `side × side × 3` bytes, through the model's normalization table
    /// ([`sam2_normalization`](crate::resample::sam2_normalization)) into the image encoder's
    /// `[1, 3, side, side]`: a quarter of the bytes cross.
    NormalizeFrame { side: usize },
    /// The decoder's mask input when there is no mask, `shape` of zeros: made once where the
    /// decoder runs instead of crossing on every propagated frame.
    Zeros { shape: [usize; 4] },
}

impl BuiltOp {
    /// The graph it works for: it runs on that graph's providers, reading or making what that
    /// graph reads or keeps, and its time counts on that graph's clock.
    fn beside(&self) -> GraphName {
        match self {
            BuiltOp::StoreMemories { .. } => GraphName::MemoryEncoder,
            BuiltOp::GatherMemories { .. } => GraphName::MemoryAttention,
            BuiltOp::NormalizeFrame { .. } => GraphName::ImageEncoder,
            BuiltOp::Zeros { .. } => GraphName::MaskDecoder,
        }
    }

    fn what(&self) -> String {
        match self {
            BuiltOp::StoreMemories { batch, round } => format!(
                "splits a batch of {} memories{}",
                batch[0],
                if *round { " rounded to bfloat16" } else { "" }
            ),
            BuiltOp::GatherMemories { parts, shape, .. } => {
                format!("gathers {parts} memories into memory attention's input {shape:?}")
            }
            BuiltOp::NormalizeFrame { side } => {
                format!("normalizes a {side}×{side} frame for the image encoder")
            }
            BuiltOp::Zeros { shape } => format!("makes the decoder's empty mask input {shape:?}"),
        }
    }

    /// The graph, for a model with `manifest` (the frame normalization's mean and std).
    fn edit(&self, manifest: &Manifest) -> ort::Result<EditedModel> {
        let mut graph = EditedGraph::new()?;
        match self {
            BuiltOp::StoreMemories { batch, round } => {
                graph.set_inputs([outlet("features", batch)])?;
                let item = [1, batch[1], batch[2], batch[3]];
                let outputs: Vec<String> = (0..batch[0]).map(memory_name).collect();
                graph.set_outputs(outputs.iter().map(|name| outlet(name, &item)))?;
                let split = batch[0] > 1;
                let mut source = "features";
                if *round {
                    // One object: the second Cast writes the output itself.
                    let rounded = outputs.first().filter(|_| !split).map_or("rounded", |o| o);
                    graph.add_node(cast("to_bf16", source, "bf16", BFLOAT16)?)?;
                    graph.add_node(cast("to_f32", "bf16", rounded, FLOAT)?)?;
                    source = rounded;
                }
                if split {
                    graph.add_node(ints("sizes", &vec![1; batch[0]])?)?;
                    graph.add_node(Node::new(
                        "Split",
                        ONNX_DOMAIN,
                        "split",
                        [source, "sizes"],
                        &outputs,
                        [Attribute::new("axis", 0_i64)?],
                    )?)?;
                }
            }
            BuiltOp::GatherMemories { parts, item, shape } => {
                let inputs: Vec<String> = (0..*parts).map(memory_name).collect();
                graph.set_inputs(inputs.iter().map(|name| outlet(name, item)))?;
                graph.set_outputs([outlet("memory", shape)])?;
                graph.add_node(Node::new(
                    "Concat",
                    ONNX_DOMAIN,
                    "concat",
                    &inputs,
                    ["gathered"],
                    [Attribute::new("axis", 0_i64)?],
                )?)?;
                reshape(&mut graph, "gathered", "memory", shape)?;
            }
            BuiltOp::NormalizeFrame { side } => {
                let side = *side;
                graph.set_inputs([typed_outlet(
                    "frame",
                    &[side, side, 3],
                    TensorElementType::Uint8,
                )])?;
                graph.set_outputs([outlet("image", &[1, 3, side, side])])?;
                // Byte v of channel c is entry 256·c + v of the flattened table.
                let table = sam2_normalization(manifest.image_mean, manifest.image_std);
                graph.add_node(floats("table", table.as_flattened())?)?;
                graph.add_node(ints("offsets", &[0, 256, 512])?)?;
                graph.add_node(cast("to_index", "frame", "bytes", INT64)?)?;
                graph.add_node(Node::new(
                    "Add",
                    ONNX_DOMAIN,
                    "offset",
                    ["bytes", "offsets"],
                    ["index"],
                    [],
                )?)?;
                graph.add_node(Node::new(
                    "Gather",
                    ONNX_DOMAIN,
                    "lookup",
                    ["table", "index"],
                    ["normalized"],
                    [Attribute::new("axis", 0_i64)?],
                )?)?;
                graph.add_node(Node::new(
                    "Transpose",
                    ONNX_DOMAIN,
                    "planar",
                    ["normalized"],
                    ["planes"],
                    [Attribute::new("perm", [2_i64, 0, 1].as_slice())?],
                )?)?;
                reshape(&mut graph, "planes", "image", &[1, 3, side, side])?;
            }
            BuiltOp::Zeros { shape } => {
                graph.set_inputs([])?;
                graph.set_outputs([outlet("zeros", shape)])?;
                graph.add_node(ints("shape", &dims(shape))?)?;
                // Without a `value`, ConstantOfShape fills with float32 zeros.
                graph.add_node(Node::new(
                    "ConstantOfShape",
                    ONNX_DOMAIN,
                    "zeros",
                    ["shape"],
                    ["zeros"],
                    [],
                )?)?;
            }
        }
        let mut model = EditedModel::new([Opset::new(ONNX_DOMAIN, OPSET)?])?;
        model.set_graph(graph)?;
        Ok(model)
    }
}

fn memory_name(i: usize) -> String {
    format!("memory_{i}")
}

fn dims(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

fn outlet(name: &str, shape: &[usize]) -> Outlet {
    typed_outlet(name, shape, TensorElementType::Float32)
}

fn typed_outlet(name: &str, shape: &[usize], ty: TensorElementType) -> Outlet {
    Outlet::new(
        name,
        ValueType::Tensor {
            ty,
            shape: Shape::new(dims(shape)),
            dimension_symbols: SymbolicDimensions::empty(shape.len()),
        },
    )
}

fn cast(name: &str, input: &str, output: &str, to: i64) -> ort::Result<Node> {
    Node::new(
        "Cast",
        ONNX_DOMAIN,
        name,
        [input],
        [output],
        [Attribute::new("to", to)?],
    )
}

/// `input` as `output` of `shape`.
fn reshape(graph: &mut EditedGraph, input: &str, output: &str, shape: &[usize]) -> ort::Result<()> {
    let shape_name = format!("{output}_shape");
    graph.add_node(ints(&shape_name, &dims(shape))?)?;
    graph.add_node(Node::new(
        "Reshape",
        ONNX_DOMAIN,
        format!("{output}_reshape"),
        [input, shape_name.as_str()],
        [output],
        [],
    )?)
}

/// A constant integer vector, named by its output.
fn ints(name: &str, values: &[i64]) -> ort::Result<Node> {
    constant(name, Attribute::new("value_ints", values)?)
}

/// A constant float vector, named by its output.
fn floats(name: &str, values: &[f32]) -> ort::Result<Node> {
    constant(name, Attribute::new("value_floats", values)?)
}

/// A Constant node: the values live in the graph, with nothing to allocate for them.
fn constant(name: &str, value: Attribute) -> ort::Result<Node> {
    Node::new(
        "Constant",
        ONNX_DOMAIN,
        name,
        [] as [&str; 0],
        [name],
        [value],
    )
}

/// The built graphs of one model, each made on first use.
#[derive(Debug)]
pub(crate) struct BuiltGraphs {
    runtime: Runtime,
    graphs: Mutex<HashMap<BuiltOp, Arc<Mutex<Graph>>>>,
    /// Constant tensors made by built graphs, kept for every run that reads them.
    constants: Mutex<HashMap<BuiltOp, Arc<GraphTensor>>>,
    /// Why a graph could not be built, once one could not: from then on frames and memories go
    /// through host memory, as on the CPU, rather than a track failing over an optimisation.
    unavailable: OnceCell<String>,
    /// Tests only: refuse to build, as a provider without the operators would.
    #[cfg(test)]
    pub(crate) refuse: std::sync::atomic::AtomicBool,
}

impl BuiltGraphs {
    pub(crate) fn new(runtime: &Runtime) -> BuiltGraphs {
        BuiltGraphs {
            runtime: runtime.clone(),
            graphs: Mutex::default(),
            constants: Mutex::default(),
            unavailable: OnceCell::new(),
            #[cfg(test)]
            refuse: Default::default(),
        }
    }

    /// Why built graphs are not used, if one could not be built.
    pub(crate) fn unavailable(&self) -> Option<&str> {
        self.unavailable.get().map(String::as_str)
    }

    /// The graph for `op`, built now if it is new; `None`, with the reason logged once and kept
    /// in [`BuiltGraphs::unavailable`], if it cannot be.
    fn get(&self, model: &Model, op: BuiltOp) -> Option<(GraphName, Arc<Mutex<Graph>>)> {
        let beside = op.beside();
        if self.unavailable.get().is_some() {
            return None;
        }
        let mut graphs = self.graphs.lock();
        if let Some(graph) = graphs.get(&op) {
            return Some((beside, Arc::clone(graph)));
        }
        match self.build(model, &op) {
            Ok(graph) => {
                let graph = Arc::new(Mutex::new(graph));
                graphs.insert(op, Arc::clone(&graph));
                Some((beside, graph))
            }
            Err(e) => {
                self.give_up(&e);
                None
            }
        }
    }

    /// Stops using built graphs for the reason `e`, logged once.
    fn give_up(&self, e: &Error) {
        if self.unavailable.set(e.to_string()).is_ok() {
            log::warn!(
                "{e} Frames and memories go through host memory instead, which is slower on a card."
            );
        }
    }

    /// A built graph's run as `Some`, or `None` after giving up on built graphs when it failed:
    /// what it made can be made on the host, so its failure costs speed, not a track.
    fn settle<T>(&self, run: Result<T>) -> Option<T> {
        run.map_err(|e| self.give_up(&e)).ok()
    }

    fn build(&self, model: &Model, op: &BuiltOp) -> Result<Graph> {
        let beside = op.beside();
        let what = op.what();
        let path = model.dir().graph_path(beside);
        let edit_error = |source| Error::BuiltGraph {
            what: what.clone(),
            beside: path.clone(),
            source,
        };
        #[cfg(test)]
        if self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(edit_error(ort::Error::new("refused by the test")));
        }
        let edited = op.edit(model.manifest()).map_err(edit_error)?;
        // Where the graph beside it runs, read without its lock (which a run may hold). Beside
        // TensorRT it runs on CUDA, in the same memory: TensorRT would build an engine for each.
        let mut providers: Vec<Provider> = model
            .providers()
            .iter()
            .filter(|(name, _)| *name == beside)
            .map(|&(_, p)| match p {
                Provider::TensorRt { device_id } => Provider::Cuda { device_id },
                other => other,
            })
            .collect();
        providers.push(Provider::Cpu);
        providers.dedup();
        self.runtime
            .built_session(edited, (beside, &path), &providers, &what)
    }
}

impl Model {
    /// Whether the memories stay where the graphs run, rounded, split and gathered there by
    /// built graphs: when the memory encoder and memory attention keep their outputs on one card
    /// (and in the tests that take that path on the CPU), and the graphs could be built there.
    /// Elsewhere they come to host memory, where bfloat16 storage takes half the bytes.
    pub(crate) fn memories_stay_on_graphs(&self) -> bool {
        let encoder = self.card_of(GraphName::MemoryEncoder);
        let on_card = encoder.is_some() && encoder == self.card_of(GraphName::MemoryAttention);
        (on_card || self.binding_on_host().is_some()) && self.built.unavailable().is_none()
    }

    /// Whether graph `name` keeps its outputs on a card (or takes that path in the tests on the
    /// CPU), so that built graphs beside it save crossings.
    fn keeps_on_graphs(&self, name: GraphName) -> bool {
        self.card_of(name).is_some() || self.binding_on_host().is_some()
    }

    /// The memory encoder's `features` `[objects, mem_dim, H, W]` as one memory per object,
    /// rounded to `dtype`: kept where the graphs keep them (`[1, mem_dim, H, W]` each), or in
    /// host memory when the graph for that cannot be built or run.
    pub(crate) fn store_memories(
        &self,
        features: GraphTensor,
        dtype: StorageDtype,
    ) -> Result<Vec<MemoryFeatures>> {
        let batch: [usize; 4] = features.shape().try_into().map_err(|_| Error::Internal {
            message: format!(
                "memory features of shape {:?} where [objects, mem_dim, H, W] was expected",
                features.shape()
            ),
        })?;
        let round = dtype == StorageDtype::Bfloat16;
        if batch[0] == 1 && !round {
            return Ok(vec![MemoryFeatures::Kept(Arc::new(features))]);
        }
        let op = BuiltOp::StoreMemories { batch, round };
        if let Some(run) = self.built_run(op) {
            let names: Vec<String> = (0..batch[0]).map(memory_name).collect();
            let feed = ort::inputs! { "features" => run.tensor(&features) };
            let keep: Vec<&str> = names.iter().map(String::as_str).collect();
            let stored = run.run(feed, &keep, |out| {
                names
                    .iter()
                    .map(|name| {
                        let memory = out.keep(name, &[1, batch[1], batch[2], batch[3]])?;
                        Ok(MemoryFeatures::Kept(Arc::new(memory)))
                    })
                    .collect()
            });
            if let Some(stored) = self.built.settle(stored) {
                return Ok(stored);
            }
        }
        let host = features.to_host().map_err(|source| Error::TensorTransfer {
            what: "memory features",
            source,
        })?;
        host.outer_iter()
            .map(|object| {
                let values = object.as_slice().ok_or_else(|| Error::Internal {
                    message: "memory features are not contiguous".into(),
                })?;
                Ok(MemoryFeatures::stored(values, dtype))
            })
            .collect()
    }

    /// `memories`, each `[1, mem_dim, H, W]`, in order, as one tensor of `shape`, where the
    /// graphs keep them; `None` when the graph for that cannot be built or run.
    pub(crate) fn gather_memories(
        &self,
        memories: &[&GraphTensor],
        shape: &[usize],
    ) -> Result<Option<GraphTensor>> {
        let item: [usize; 4] = memories
            .first()
            .and_then(|m| m.shape().try_into().ok())
            .ok_or_else(|| Error::Internal {
                message: "memory attention was given no memories to gather".into(),
            })?;
        let op = BuiltOp::GatherMemories {
            parts: memories.len(),
            item,
            shape: shape.to_vec(),
        };
        let Some(run) = self.built_run(op) else {
            return Ok(None);
        };
        let names: Vec<String> = (0..memories.len()).map(memory_name).collect();
        let feed: Vec<_> = names
            .iter()
            .zip(memories)
            .map(|(name, memory)| (name.clone().into(), run.tensor(memory)))
            .collect();
        let gathered = run.run(feed, &["memory"], |out| out.keep("memory", shape));
        Ok(self.built.settle(gathered))
    }

    /// Whether frames go to the image encoder as bytes, normalized by a built graph where it
    /// runs: when it keeps its outputs on a card (and in the tests that take that path on the
    /// CPU), and the graphs could be built there.
    pub(crate) fn frames_normalized_on_graphs(&self) -> bool {
        self.keeps_on_graphs(GraphName::ImageEncoder) && self.built.unavailable().is_none()
    }

    /// A resized frame (`side × side × 3` bytes) as the image encoder's input, normalized where
    /// the graphs run: a quarter of the bytes of the normalized frame cross. `None` where frames
    /// are normalized on the host ([`Model::frames_normalized_on_graphs`]), or when the graph for
    /// that cannot be built or run.
    pub(crate) fn normalize_frame(
        &self,
        resized: &[u8],
        side: usize,
    ) -> Result<Option<GraphTensor>> {
        if !self.frames_normalized_on_graphs() || side == 0 {
            return Ok(None);
        }
        let Some(run) = self.built_run(BuiltOp::NormalizeFrame { side }) else {
            return Ok(None);
        };
        let frame =
            ndarray::ArrayView3::from_shape((side, side, 3), resized).map_err(|e| run.error(e))?;
        let feed = ort::inputs! { "frame" => run.input(frame)? };
        let image = run.run(feed, &["image"], |out| {
            out.keep("image", &[1, 3, side, side])
        });
        Ok(self.built.settle(image))
    }

    /// Zeros of `shape` where the mask decoder keeps its outputs on a card (and in the tests that
    /// take that path on the CPU), made once; `None` elsewhere, or when the graph for that cannot
    /// be built or run.
    pub(crate) fn zero_masks(&self, shape: [usize; 4]) -> Result<Option<Arc<GraphTensor>>> {
        if !self.keeps_on_graphs(GraphName::MaskDecoder) {
            return Ok(None);
        }
        let op = BuiltOp::Zeros { shape };
        if let Some(zeros) = self.built.constants.lock().get(&op) {
            return Ok(Some(Arc::clone(zeros)));
        }
        let Some(run) = self.built_run(op.clone()) else {
            return Ok(None);
        };
        let zeros = run.run(Vec::new(), &["zeros"], |out| out.keep("zeros", &shape));
        let Some(zeros) = self.built.settle(zeros).map(Arc::new) else {
            return Ok(None);
        };
        self.built.constants.lock().insert(op, Arc::clone(&zeros));
        Ok(Some(zeros))
    }

    fn built_run(&self, op: BuiltOp) -> Option<super::io::GraphRun<'_>> {
        let (beside, graph) = self.built.get(self, op)?;
        Some(self.graph_run(beside).on(graph))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::Ordering;

    use half::bf16;
    use ndarray::{Array4, Axis};

    use super::*;

    fn model() -> Arc<Model> {
        let runtime = Runtime::load_default().unwrap_or_else(|e| panic!("{e}"));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/test");
        let model = Model::open(dir, &runtime).unwrap_or_else(|e| panic!("{e}"));
        model.bind_on_host.store(true, Ordering::Relaxed);
        model
    }

    /// Three objects' memories with bits below bfloat16's, and two ties, which go to the even
    /// neighbour: down for 0x3f80_8000, up for 0x3f81_8000.
    fn batch() -> Array4<f32> {
        Array4::from_shape_fn((3, 2, 4, 4), |(o, c, y, x)| {
            let i = (((o * 2 + c) * 4 + y) * 4 + x) as u32;
            f32::from_bits(match i {
                5 => 0x3f80_8000,
                6 => 0x3f81_8000,
                _ => 0x3f80_0000 + i * 0x1357,
            })
        })
    }

    fn values(memory: &MemoryFeatures) -> Vec<f32> {
        let mut out = Vec::new();
        memory
            .extend_f32(&mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        out
    }

    /// Each stored memory holds its object's values rounded as `dtype` says, bit for bit.
    fn check_stored(stored: &[MemoryFeatures], dtype: StorageDtype, what: &str) {
        let batch = batch();
        assert_eq!(stored.len(), 3, "{what}");
        for (o, memory) in stored.iter().enumerate() {
            let expected: Vec<f32> = batch
                .index_axis(Axis(0), o)
                .iter()
                .map(|&v| match dtype {
                    StorageDtype::Bfloat16 => bf16::from_f32(v).to_f32(),
                    StorageDtype::Float32 => v,
                })
                .collect();
            let got = values(memory);
            let differ = got
                .iter()
                .zip(&expected)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                (got.len(), differ),
                (expected.len(), 0),
                "{what}, object {o}"
            );
        }
    }

    #[test]
    fn stored_memories_round_like_the_host_and_gather_back_in_order() {
        let model = model();
        for dtype in [StorageDtype::Bfloat16, StorageDtype::Float32] {
            let features = GraphTensor::from_host(batch()).unwrap_or_else(|e| panic!("{e}"));
            let stored = model
                .store_memories(features, dtype)
                .unwrap_or_else(|e| panic!("{e}"));
            check_stored(&stored, dtype, &format!("{dtype:?}"));
            let kept: Vec<&GraphTensor> = stored
                .iter()
                .map(|m| m.kept().unwrap_or_else(|| panic!("{dtype:?}: not kept")))
                .collect();
            // Objects 2, 0, 1 as one object with three memories (memory attention's [n, frames, ..]).
            let order = [kept[2], kept[0], kept[1]];
            let gathered = model
                .gather_memories(&order, &[1, 3, 2, 4, 4])
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("{dtype:?}: the gather was not built"));
            assert_eq!(gathered.shape(), &[1, 3, 2, 4, 4]);
            let got = gathered.to_host().unwrap_or_else(|e| panic!("{e}"));
            for (slot, memory) in order.iter().enumerate() {
                let memory = memory.to_host().unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    got.index_axis(Axis(1), slot).index_axis(Axis(0), 0),
                    memory.index_axis(Axis(0), 0),
                    "{dtype:?}, slot {slot}"
                );
            }
        }
        assert_eq!(model.built.unavailable(), None);
    }

    #[test]
    fn a_frame_normalized_where_the_graphs_run_equals_the_hosts_for_every_byte() {
        let model = model();
        assert!(model.frames_normalized_on_graphs());
        // 16 × 16 pixels: every byte value once in each channel, in three different orders.
        let frame: Vec<u8> = (0..=255u8)
            .flat_map(|p| [p, 255 - p, p.wrapping_mul(7)])
            .collect();
        let m = model.manifest();
        let table = sam2_normalization(m.image_mean, m.image_std);
        let host = crate::resample::sam2_normalize(&frame, 16, &table);
        let kept = model
            .normalize_frame(&frame, 16)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the frame was normalized on the host"));
        let got = kept.to_host().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.shape(), host.shape());
        let differ = got
            .iter()
            .zip(&host)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differ, 0);
    }

    #[test]
    fn a_built_graph_whose_run_fails_leaves_the_memories_in_host_memory() {
        let model = model();
        let features = GraphTensor::from_host(batch()).unwrap_or_else(|e| panic!("{e}"));
        let stored = model
            .store_memories(features, StorageDtype::Bfloat16)
            .unwrap_or_else(|e| panic!("{e}"));
        let kept: Vec<&GraphTensor> = stored.iter().filter_map(MemoryFeatures::kept).collect();
        assert_eq!(kept.len(), 3);
        // Two memories cannot take a shape that holds three: ONNX Runtime's Reshape fails.
        let gathered = model
            .gather_memories(&kept[..2], &[1, 3, 2, 4, 4])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(gathered.is_none());
        let reason = model.built.unavailable().unwrap_or_default();
        assert!(
            reason.contains("reshape") || reason.contains("Reshape"),
            "{reason}"
        );
        assert!(!model.memories_stay_on_graphs());
        // The memories already kept still read back, for memory attention's host gather.
        check_stored(&stored, StorageDtype::Bfloat16, "after the failed run");
    }

    #[test]
    fn a_graph_that_cannot_be_built_leaves_the_memories_in_host_memory() {
        let model = model();
        assert!(model.memories_stay_on_graphs());
        model.built.refuse.store(true, Ordering::Relaxed);
        let features = GraphTensor::from_host(batch()).unwrap_or_else(|e| panic!("{e}"));
        let stored = model
            .store_memories(features, StorageDtype::Bfloat16)
            .unwrap_or_else(|e| panic!("{e}"));
        check_stored(&stored, StorageDtype::Bfloat16, "refused");
        assert!(
            stored
                .iter()
                .all(|m| matches!(m, MemoryFeatures::Bfloat16(_))),
            "the memories are stored in host memory, as bfloat16"
        );
        let reason = model.built.unavailable().unwrap_or_default();
        assert!(
            reason.contains("could not build the small graph that splits a batch of 3 memories")
                && reason.contains("refused by the test"),
            "{reason}"
        );
        assert!(!model.memories_stay_on_graphs());
        assert!(!model.frames_normalized_on_graphs());
    }
}
