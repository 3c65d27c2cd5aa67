//! What every graph wrapper does around its own inputs and outputs: take the graph's lock, run it,
//! time it on the graph's clock, keep the outputs later graphs read where the graph put them
//! ([`GraphTensor`]), count what crosses between host memory and the graphs ([`Traffic`]), and
//! turn ONNX Runtime's failures into errors that name the graph file and keep ONNX Runtime's error
//! as their cause.
//!
//! [`Traffic`]: super::graph_tensor::Traffic

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ndarray::{ArrayView, ArrayViewD, Dimension};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::{DynTensorValueType, DynValue, Tensor, TensorElementType, TensorRef};
use parking_lot::Mutex;

use super::graph_tensor::GraphTensor;
use super::manifest::GraphName;
use super::runtime::Graph;
use super::{Model, ObjectBatching};
use crate::error::{Error, Result};

/// A problem with a graph's inputs or outputs that ONNX Runtime did not report itself (a missing
/// output, a wrong shape), as an error naming the graph.
pub(crate) fn inference_error(graph: &Path, message: impl std::fmt::Display) -> Error {
    Error::Inference {
        path: graph.to_path_buf(),
        message: message.to_string(),
    }
}

/// One run of one graph: build the inputs with [`GraphRun::input`], then [`GraphRun::run`].
pub(crate) struct GraphRun<'m> {
    model: &'m Model,
    name: GraphName,
    path: PathBuf,
    /// A graph built in code that runs in the place of `name`, on its clock
    /// ([`built_graphs`](super::built_graphs)).
    built: Option<Arc<Mutex<Graph>>>,
}

/// The most objects one run of a per-object graph takes. Each object adds its own memory bank to
/// memory attention's inputs and work buffers (about 7 MiB of memories, and as much again inside
/// the run, at 1024 with 7 memories), so a frame with very many objects runs them in batches of
/// this many rather than growing one run without bound.
pub const MAX_OBJECTS_PER_RUN: usize = 16;

impl Model {
    /// The runs that take objects `0..count` through a per-object graph: batches of up to
    /// [`MAX_OBJECTS_PER_RUN`], or one object a run for graphs exported before batching
    /// ([`ObjectBatching::OneAtATime`]).
    pub(crate) fn object_runs(&self, count: usize) -> impl Iterator<Item = Range<usize>> + use<> {
        let step = match self.dir().object_batching() {
            ObjectBatching::Batched => MAX_OBJECTS_PER_RUN,
            ObjectBatching::OneAtATime => 1,
        };
        (0..count)
            .step_by(step)
            .map(move |start| start..(start + step).min(count))
    }

    /// Starts a run of graph `name`.
    pub(crate) fn graph_run(&self, name: GraphName) -> GraphRun<'_> {
        GraphRun {
            model: self,
            name,
            path: self.dir().graph_path(name),
            built: None,
        }
    }
}

impl GraphRun<'_> {
    /// Runs `graph`, built in code, in the place of this run's graph.
    pub(crate) fn on(mut self, graph: Arc<Mutex<Graph>>) -> Self {
        self.built = Some(graph);
        self
    }

    /// An error about this graph's inputs or outputs (see [`inference_error`]).
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> Error {
        inference_error(&self.path, message)
    }

    /// Borrows a contiguous array as an input tensor (no copy here; a GPU provider copies it to
    /// the card, which [`Traffic`](super::graph_tensor::Traffic) counts).
    pub(crate) fn input<'a, T, D>(&self, array: ArrayView<'a, T, D>) -> Result<TensorRef<'a, T>>
    where
        T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
        D: Dimension + 'static,
    {
        self.model.traffic.count_fed(array.len() * size_of::<T>());
        TensorRef::from_array_view(array).map_err(|source| Error::GraphRun {
            path: self.path.clone(),
            source,
        })
    }

    /// A kept tensor as an input, as it is: nothing moves when it is already where the graphs
    /// run.
    pub(crate) fn tensor<'a>(&self, tensor: &'a GraphTensor) -> SessionInputValue<'a> {
        if tensor.fed_from_host() {
            self.model.traffic.count_fed(tensor.bytes());
        }
        tensor.input()
    }

    /// Runs the graph under its lock and timed on its clock, and hands its outputs to `read`
    /// while the lock is held (the outputs borrow the session). The outputs named in `keep` stay
    /// in the memory of the graph's provider, for [`GraphOutputs::keep`] (or not read at all);
    /// every other output comes back to host memory and counts as
    /// [`Traffic`](super::graph_tensor::Traffic).
    pub(crate) fn run<T>(
        &self,
        inputs: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)>,
        keep: &[&str],
        read: impl FnOnce(&mut GraphOutputs<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        let mut graph = match &self.built {
            Some(built) => built.lock(),
            None => self.model.graph(self.name).lock(),
        };
        let device = match keep {
            [] => None,
            _ => graph
                .output_device()
                .or_else(|| self.model.binding_on_host()),
        };
        let graph_run_error = |source| Error::GraphRun {
            path: self.path.clone(),
            source,
        };
        let session = graph.session_mut();
        // The clock includes binding, which copies the host inputs to the card as a plain run does.
        let started = Instant::now();
        // Outputs on the card need a binding, which the outputs then borrow.
        let binding = match device {
            Some(device) => Some(bind(session, &inputs, keep, &device).map_err(graph_run_error)?),
            None => None,
        };
        let outputs = match &binding {
            Some(binding) => session.run_binding(binding),
            None => session.run(inputs),
        };
        let clock = self.model.clocks.get(self.name);
        match self.built {
            Some(_) => clock.add_time(started),
            None => clock.record(started),
        }
        read(&mut self.outputs(&mut outputs.map_err(graph_run_error)?, keep))
    }

    fn outputs<'r, 's>(
        &'r self,
        outputs: &'r mut SessionOutputs<'s>,
        keep: &[&str],
    ) -> GraphOutputs<'r, 's> {
        let returned: usize = outputs
            .iter()
            .filter(|(name, _)| !keep.contains(name))
            .filter_map(|(_, value)| value.downcast::<DynTensorValueType>().ok()?.size())
            .sum();
        self.model.traffic.count_returned(returned);
        GraphOutputs {
            path: &self.path,
            outputs,
            model: self.model,
        }
    }
}

/// A binding of one run: `inputs` as given, the outputs in `keep` on `device`, the others in host
/// memory.
fn bind(
    session: &Session,
    inputs: &[(std::borrow::Cow<'_, str>, SessionInputValue<'_>)],
    keep: &[&str],
    device: &MemoryInfo,
) -> ort::Result<ort::session::IoBinding> {
    let mut binding = session.create_binding()?;
    for (name, value) in inputs {
        match owned_host_copy(value)? {
            Some(copy) => binding.bind_input(name.as_ref(), &copy)?,
            None => binding.bind_input(name.as_ref(), &**value)?,
        }
    }
    let host = MemoryInfo::new(
        AllocationDevice::CPU,
        0,
        AllocatorType::Device,
        MemoryType::CPUOutput,
    )?;
    for output in session.outputs() {
        let name = output.name();
        let home = if keep.contains(&name) { device } else { &host };
        binding.bind_output_to_device(name, home)?;
    }
    Ok(binding)
}

/// An owned copy of an input in host memory, which the binding then copies to the device once;
/// `None` for a value already on a device (a kept output), bound as it is.
///
/// `ort` 2.0.0-rc.15 binds a borrowed host tensor (an array fed without a copy) by cloning it, and
/// that clone deadlocks: `Value::clone` copies through a cached identity session whose global
/// lock it holds while binding the borrowed source again, which clones again. An owned tensor is
/// bound without a clone.
fn owned_host_copy(value: &DynValue) -> ort::Result<Option<DynValue>> {
    let tensor = value.view().downcast::<DynTensorValueType>()?;
    if !tensor.memory_info().is_cpu_accessible() {
        return Ok(None);
    }
    let copy = match tensor.data_type() {
        TensorElementType::Float32 => owned_copy::<f32>(value)?,
        TensorElementType::Int64 => owned_copy::<i64>(value)?,
        TensorElementType::Int32 => owned_copy::<i32>(value)?,
        TensorElementType::Bool => owned_copy::<bool>(value)?,
        TensorElementType::Uint8 => owned_copy::<u8>(value)?,
        other => {
            return Err(ort::Error::new(format!(
                "a host input of type {other} cannot be bound to a run"
            )));
        }
    };
    Ok(Some(copy))
}

fn owned_copy<T>(value: &DynValue) -> ort::Result<DynValue>
where
    T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
{
    Ok(Tensor::from_array(value.try_extract_array::<T>()?.to_owned())?.into_dyn())
}

/// The outputs of one run, read by name and checked against the shape the engine expects.
pub(crate) struct GraphOutputs<'r, 's> {
    path: &'r Path,
    outputs: &'r mut SessionOutputs<'s>,
    model: &'r Model,
}

impl GraphOutputs<'_, '_> {
    /// An error about this graph's outputs.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> Error {
        inference_error(self.path, message)
    }

    /// Borrows the output `name`, which must have exactly `shape`.
    pub(crate) fn view<T>(&self, name: &str, shape: &[usize]) -> Result<ArrayViewD<'_, T>>
    where
        T: ort::value::PrimitiveTensorElementType + Clone + 'static,
    {
        let value = self
            .outputs
            .get(name)
            .ok_or_else(|| self.error(format!("it produced no output \"{name}\"")))?;
        let view = value
            .try_extract_array::<T>()
            .map_err(|source| Error::GraphOutput {
                path: self.path.to_path_buf(),
                output: name.to_string(),
                source,
            })?;
        if view.shape() != shape {
            return Err(self.error(format!(
                "output \"{name}\" has shape {:?} where {:?} was expected",
                view.shape(),
                shape
            )));
        }
        Ok(view)
    }

    /// Takes the output `name`, which must have exactly `shape`, as it is: where the graph put it
    /// when the run was asked to keep it ([`GraphRun::run`]), in host memory otherwise.
    pub(crate) fn keep(&mut self, name: &str, shape: &[usize]) -> Result<GraphTensor> {
        let value = self
            .outputs
            .remove(name)
            .ok_or_else(|| self.error(format!("it produced no output \"{name}\"")))?;
        GraphTensor::from_graph(value, shape, &self.model.traffic)
            .map_err(|e| self.error(format!("output \"{name}\": {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use crate::model::{Model, Runtime, Traffic};
    use crate::predictor::{ClipSession, SessionSettings};
    use crate::propagation::Propagation;
    use crate::script::Label;
    use crate::{FolderSource, ObjectId};

    /// The fixture model, one thread per graph (results differ in the last bits between thread
    /// counts).
    fn test_model() -> Arc<Model> {
        let runtime = Runtime::load_default()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_intra_threads(Some(1));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/test");
        Model::open(dir, &runtime).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Two objects clicked on frame 0 of `crossing` and tracked to its end: every frame's logits
    /// of both, and what crossed between host memory and the graphs.
    fn track(model: &Arc<Model>) -> (Vec<Vec<f32>>, Traffic) {
        track_calling(model, |_| {})
    }

    /// [`track`], calling `on_frame` with the number of frames tracked so far after each.
    fn track_calling(
        model: &Arc<Model>,
        mut on_frame: impl FnMut(usize),
    ) -> (Vec<Vec<f32>>, Traffic) {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let clip =
            FolderSource::open(fixtures.join("clips/crossing")).unwrap_or_else(|e| panic!("{e}"));
        let settings = SessionSettings::for_model(model);
        let before = model.traffic();
        let mut session = ClipSession::new(Arc::clone(model), Box::new(clip), settings)
            .unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (ObjectId(1), ObjectId(2));
        let mut tracked = 0;
        session
            .add_points(0, a, &[[60.0, 80.0]], &[Label::Positive], true)
            .unwrap_or_else(|e| panic!("{e}"));
        session
            .add_box(0, b, [234.0, 50.0, 306.0, 106.0], &[], &[])
            .unwrap_or_else(|e| panic!("{e}"));
        session
            .propagate(Propagation::default(), |_| {
                tracked += 1;
                on_frame(tracked);
                ControlFlow::Continue(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let mut logits = Vec::new();
        for frame in 0..session.num_frames() {
            for object in [a, b] {
                let result = session
                    .result(frame, object)
                    .unwrap_or_else(|| panic!("frame {frame} of object {object} was not tracked"));
                logits.push(result.low_res_logits.to_vec());
            }
        }
        (logits, model.traffic().since(before))
    }

    /// On a card the graphs run through I/O bindings that leave the kept outputs on the device,
    /// and the memories stay there, rounded, split and gathered by built graphs; here the
    /// binding's device is the host's memory. The same kernels run on the same inputs, ONNX
    /// Runtime's Cast rounds to bfloat16 as the host does (to nearest, ties to even), and frames
    /// are normalized by the host's table, so a whole propagation must give bit for bit the plain
    /// runs' results, with exactly the memories, three quarters of each frame and the decoder's
    /// empty mask inputs no longer crossing.
    #[test]
    fn a_propagation_through_bindings_gives_bit_for_bit_what_plain_runs_give() {
        let model = test_model();
        let runs = |t: crate::model::GraphTimes| {
            [
                t.image_encoder.runs,
                t.mask_decoder.runs,
                t.memory_encoder.runs,
                t.memory_attention.runs,
            ]
        };
        let before = model.graph_times();
        let (plain, plain_traffic) = track(&model);
        let plain_runs = runs(model.graph_times().since(&before));
        model.bind_on_host.store(true, Ordering::Relaxed);
        let before = model.graph_times();
        let (bound, bound_traffic) = track(&model);
        // Built graphs add their time to the graph they work for, not runs.
        assert_eq!(runs(model.graph_times().since(&before)), plain_runs);
        assert_eq!(plain.len(), bound.len());
        for (i, (p, b)) in plain.iter().zip(&bound).enumerate() {
            let differ = p
                .iter()
                .zip(b)
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(
                differ,
                0,
                "frame {} object {}: {differ} logits differ",
                i / 2,
                i % 2 + 1
            );
        }
        // Both objects' memory of every frame came out of the memory encoder; each later frame
        // attended to the prompted frame's and up to num_maskmem − 1 recent ones, per object.
        // Every frame went in once, as 3 bytes a pixel instead of 3 floats. No decoder run had a
        // mask input (two clicks, then both objects on every later frame): its zeros were made
        // where the decoder runs.
        let g = model.geometry();
        let mask = (4 * g.low_res * g.low_res) as u64;
        let memory = (4 * g.mem_dim * g.feat * g.feat) as u64;
        let num_maskmem = model.manifest().memory.num_maskmem as u64;
        let frames = (plain.len() / 2) as u64;
        let attended: u64 = (1..frames).map(|t| t.min(num_maskmem)).sum();
        let pixels = (g.image_size * g.image_size) as u64;
        assert_eq!(
            bound_traffic,
            Traffic {
                to_graphs: plain_traffic.to_graphs
                    - 2 * attended * memory
                    - frames * 3 * (4 - 1) * pixels
                    - 2 * frames * mask,
                from_graphs: plain_traffic.from_graphs - 2 * frames * memory,
            },
            "{frames} frames: the bound run moved the plain run's bytes less the memories, three \
             quarters of the frames and the decoder's empty mask inputs"
        );
        assert!(bound_traffic.to_graphs > 0 && bound_traffic.from_graphs > 0);
    }

    /// A card whose provider cannot build the graphs that keep the memories there (from the
    /// fifth frame on, with memories already kept): the memories go through host memory from
    /// then on, and the masks are bit for bit the same.
    #[test]
    fn losing_the_built_graphs_half_way_through_a_propagation_changes_no_mask() {
        let model = test_model();
        let (plain, _) = track(&model);
        model.bind_on_host.store(true, Ordering::Relaxed);
        let (bound, _) = track_calling(&model, |tracked| {
            if tracked == 4 {
                model.built.refuse.store(true, Ordering::Relaxed);
            }
        });
        assert!(
            model.built.unavailable().is_some(),
            "a graph was built after the refusal"
        );
        assert_eq!(plain.len(), bound.len());
        for (i, (p, b)) in plain.iter().zip(&bound).enumerate() {
            let same = p.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "frame {} object {}: logits differ", i / 2, i % 2 + 1);
        }
    }
}
