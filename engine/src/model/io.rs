//! The few conversions every graph wrapper needs between ndarray and ONNX Runtime values, with
//! errors that name the graph file.

use ndarray::{ArrayD, ArrayView, Dimension, IxDyn};
use ort::session::SessionOutputs;
use ort::value::TensorRef;

use crate::error::{Error, Result};
use std::path::Path;

pub(crate) fn inference_error(graph: &Path, message: impl std::fmt::Display) -> Error {
    Error::Inference {
        path: graph.to_path_buf(),
        message: message.to_string(),
    }
}

/// Borrows a contiguous array as an input tensor (no copy).
pub(crate) fn input<'a, T, D>(graph: &Path, array: ArrayView<'a, T, D>) -> Result<TensorRef<'a, T>>
where
    T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
    D: Dimension + 'static,
{
    TensorRef::from_array_view(array).map_err(|e| inference_error(graph, e))
}

/// Copies the output `name` out as an array of exactly `shape`.
pub(crate) fn output<T>(
    graph: &Path,
    outputs: &SessionOutputs<'_>,
    name: &str,
    shape: &[usize],
) -> Result<ArrayD<T>>
where
    T: ort::value::PrimitiveTensorElementType + Clone + 'static,
{
    let value = outputs
        .get(name)
        .ok_or_else(|| inference_error(graph, format!("it produced no output \"{name}\"")))?;
    let view = value
        .try_extract_array::<T>()
        .map_err(|e| inference_error(graph, format!("output \"{name}\": {e}")))?;
    if view.shape() != shape {
        return Err(inference_error(
            graph,
            format!(
                "output \"{name}\" has shape {:?} where {:?} was expected",
                view.shape(),
                shape
            ),
        ));
    }
    view.to_owned()
        .into_shape_with_order(IxDyn(shape))
        .map_err(|e| inference_error(graph, e))
}
