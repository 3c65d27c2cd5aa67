//! What every graph wrapper does around its own inputs and outputs: take the graph's lock, run it,
//! time it on the graph's clock, and turn ONNX Runtime's failures into errors that name the graph
//! file and keep ONNX Runtime's error as their cause.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{ArrayD, ArrayView, ArrayViewD, Dimension, IxDyn};
use ort::session::{SessionInputValue, SessionOutputs};
use ort::value::TensorRef;

use super::manifest::GraphName;
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
        }
    }
}

impl GraphRun<'_> {
    /// An error about this graph's inputs or outputs (see [`inference_error`]).
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> Error {
        inference_error(&self.path, message)
    }

    /// Borrows a contiguous array as an input tensor (no copy).
    pub(crate) fn input<'a, T, D>(&self, array: ArrayView<'a, T, D>) -> Result<TensorRef<'a, T>>
    where
        T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
        D: Dimension + 'static,
    {
        TensorRef::from_array_view(array).map_err(|source| Error::GraphRun {
            path: self.path.clone(),
            source,
        })
    }

    /// Runs the graph under its lock and timed on its clock, and hands its outputs to `read`
    /// while the lock is held (the outputs borrow the session).
    pub(crate) fn run<T>(
        &self,
        inputs: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)>,
        read: impl FnOnce(&GraphOutputs<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        let mut graph = self.model.graph(self.name).lock();
        let started = Instant::now();
        let outputs = graph.session_mut().run(inputs);
        self.model.clocks.get(self.name).record(started);
        let outputs = outputs.map_err(|source| Error::GraphRun {
            path: self.path.clone(),
            source,
        })?;
        read(&GraphOutputs {
            path: &self.path,
            outputs: &outputs,
        })
    }
}

/// The outputs of one run, read by name and checked against the shape the engine expects.
pub(crate) struct GraphOutputs<'r, 's> {
    path: &'r Path,
    outputs: &'r SessionOutputs<'s>,
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

    /// Copies the output `name` out as an array of exactly `shape`.
    pub(crate) fn array<T>(&self, name: &str, shape: &[usize]) -> Result<ArrayD<T>>
    where
        T: ort::value::PrimitiveTensorElementType + Clone + 'static,
    {
        self.view::<T>(name, shape)?
            .to_owned()
            .into_shape_with_order(IxDyn(shape))
            .map_err(|e| self.error(e))
    }
}
