//! Tensors that stay where the graph that made them put them, and the count of what crosses
//! between host memory and the graphs.
//!
//! On a GPU provider every graph input given as a host array is copied to the card and every
//! output read as an array is copied back: at 1024 that was about 50 MiB a frame and object
//! (docs/architecture.md, "On a GPU"). A frame's features, the position encodings and the
//! conditioned features are only ever read by other graphs, so they are kept as ONNX Runtime
//! values in the memory of the provider that made them ([`GraphTensor`]) and fed to the next graph
//! as they are. On the CPU provider that memory is the host's, and keeping the value also saves
//! the copy out of ONNX Runtime that an array would take.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{Array, CowArray, Dimension, IxDyn};
use ort::memory::AllocationDevice;
use ort::session::SessionInputValue;
use ort::value::{Tensor, TensorValueType};

/// Bytes moved between host memory and the graphs since the model was loaded: host arrays fed to
/// a graph, and outputs read into host memory. On a GPU provider this is what crosses the bus; on
/// the CPU provider it is what would, so that a test here can hold the engine to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes of host data fed to graphs.
    pub to_graphs: u64,
    /// Bytes of graph outputs read into host memory.
    pub from_graphs: u64,
}

impl Traffic {
    /// What moved between `earlier` and `self`.
    pub fn since(self, earlier: Traffic) -> Traffic {
        Traffic {
            to_graphs: self.to_graphs.saturating_sub(earlier.to_graphs),
            from_graphs: self.from_graphs.saturating_sub(earlier.from_graphs),
        }
    }

    /// Both directions.
    pub fn total(self) -> u64 {
        self.to_graphs + self.from_graphs
    }
}

/// The model's running [`Traffic`], shared with the tensors its graphs made (a tensor read into
/// host memory later still counts against the model).
#[derive(Debug, Default)]
pub(crate) struct TrafficCounter {
    to_graphs: AtomicU64,
    from_graphs: AtomicU64,
}

impl TrafficCounter {
    pub(crate) fn count_fed(&self, bytes: usize) {
        self.to_graphs.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_returned(&self, bytes: usize) {
        self.from_graphs.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> Traffic {
        Traffic {
            to_graphs: self.to_graphs.load(Ordering::Relaxed),
            from_graphs: self.from_graphs.load(Ordering::Relaxed),
        }
    }
}

/// Where a [`GraphTensor`]'s values came from, which decides what feeding or reading it moves.
#[derive(Debug, Clone)]
enum Origin {
    /// A graph's output, in the memory of that graph's provider: feeding it to another graph
    /// moves nothing, reading it on the host moves its bytes.
    Graph(Arc<TrafficCounter>),
    /// Made on the host (read back from the disk cache, or computed there): each graph it is fed
    /// to takes its bytes across.
    Host,
}

/// An f32 tensor held as an ONNX Runtime value: a graph's output kept where the graph put it, or
/// host data made into one.
#[derive(Debug)]
pub struct GraphTensor {
    value: Tensor<f32>,
    shape: Vec<usize>,
    origin: Origin,
}

impl GraphTensor {
    /// A graph's output `value`, which must have exactly `shape`.
    pub(crate) fn from_graph(
        value: ort::value::DynValue,
        shape: &[usize],
        traffic: &Arc<TrafficCounter>,
    ) -> Result<GraphTensor, String> {
        let value = value
            .downcast::<TensorValueType<f32>>()
            .map_err(|e| format!("it is not a float32 tensor ({e})"))?;
        let actual: Vec<usize> = value.shape().iter().map(|&d| d as usize).collect();
        if actual != shape {
            return Err(format!(
                "it has shape {actual:?} where {shape:?} was expected"
            ));
        }
        Ok(GraphTensor {
            value,
            shape: actual,
            origin: Origin::Graph(Arc::clone(traffic)),
        })
    }

    /// Host data as a tensor (no copy: the value takes the array's buffer).
    pub fn from_host<D: Dimension>(array: Array<f32, D>) -> Result<GraphTensor, ort::Error> {
        let shape = array.shape().to_vec();
        let array = array.into_dyn();
        let array = if array.is_standard_layout() {
            array
        } else {
            array.as_standard_layout().into_owned()
        };
        Ok(GraphTensor {
            value: Tensor::from_array(array)?,
            shape,
            origin: Origin::Host,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> usize {
        4 * self.len()
    }

    /// Whether the values live in host memory (the CPU provider's outputs, host data); otherwise
    /// they are on a device, a GPU's memory.
    pub fn on_host(&self) -> bool {
        self.value.memory_info().is_cpu_accessible()
    }

    /// Whether feeding this tensor to a graph takes its bytes from host memory (see [`Traffic`]).
    pub(crate) fn fed_from_host(&self) -> bool {
        matches!(self.origin, Origin::Host)
    }

    /// The values in host memory: borrowed where they already are, copied down from the device
    /// otherwise. Reading a graph's output counts against its model's [`Traffic`].
    pub fn to_host(&self) -> Result<CowArray<'_, f32, IxDyn>, ort::Error> {
        if let Origin::Graph(traffic) = &self.origin {
            traffic.count_returned(self.bytes());
        }
        if self.on_host() {
            return Ok(self.value.try_extract_array::<f32>()?.into());
        }
        let host = self.value.to(AllocationDevice::CPU, 0)?;
        Ok(host.try_extract_array::<f32>()?.to_owned().into())
    }

    /// The tensor as a graph input, without copying it.
    pub(crate) fn input(&self) -> SessionInputValue<'_> {
        SessionInputValue::from(&self.value)
    }
}

/// Host data as a tensor for a unit test, with ONNX Runtime loaded first (tensors are its values:
/// making one without the library loaded would make `ort` look for it under its default name).
#[cfg(test)]
pub(crate) fn test_tensor<D: Dimension>(array: Array<f32, D>) -> GraphTensor {
    super::Runtime::load_default().unwrap_or_else(|e| panic!("{e}"));
    GraphTensor::from_host(array).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn host_data_reads_back_as_it_went_in_and_counts_no_traffic_of_its_own() {
        let array = Array3::from_shape_fn((2, 3, 4), |(a, b, c)| (a * 100 + b * 10 + c) as f32);
        let tensor = test_tensor(array.clone());
        assert_eq!(tensor.shape(), &[2, 3, 4]);
        assert_eq!(tensor.bytes(), 96);
        assert!(tensor.on_host());
        assert!(tensor.fed_from_host());
        let back = tensor.to_host().expect("host data reads back");
        assert_eq!(back.view(), array.into_dyn().view());
    }

    #[test]
    fn a_transposed_array_is_stored_in_its_logical_order() {
        let array = ndarray::Array2::from_shape_fn((2, 3), |(r, c)| (r * 3 + c) as f32);
        let transposed = array.t().to_owned();
        let t = array.reversed_axes();
        let tensor = test_tensor(t);
        assert_eq!(tensor.shape(), &[3, 2]);
        assert_eq!(
            tensor.to_host().expect("reads back").view(),
            transposed.into_dyn().view()
        );
    }

    #[test]
    fn traffic_since_subtracts_each_direction() {
        let counter = TrafficCounter::default();
        counter.count_fed(10);
        let start = counter.read();
        counter.count_fed(5);
        counter.count_returned(7);
        let moved = counter.read().since(start);
        assert_eq!(
            moved,
            Traffic {
                to_graphs: 5,
                from_graphs: 7
            }
        );
        assert_eq!(moved.total(), 12);
    }
}
