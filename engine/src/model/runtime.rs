//! Loading ONNX Runtime and turning the four graph files into sessions checked against the manifest.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`) rather than linked, so that a host
//! can open the plugin without ONNX Runtime beside it and get a sentence saying where to put it,
//! instead of a loader error before any of our code runs. `ort::init_from` is used, never
//! `ort::init()`, because the latter panics when the library is missing.
//!
//! Where the library comes from, first match wins:
//! 1. the path passed to [`Runtime::load`];
//! 2. for [`Runtime::load_default`]: the environment variable `SAM2_ORT_DYLIB`, then `ORT_DYLIB_PATH`
//!    (the variable `ort` itself reads), then `<workspace>/.local/onnxruntime/libonnxruntime.so`,
//!    where `bundle/fetch-onnxruntime.sh` puts it in a checkout. The last is a compile-time path,
//!    right for tests and tools run from the checkout; a shipped plugin passes the path of the
//!    library inside its bundle to [`Runtime::load`] instead.

use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use once_cell::sync::OnceCell;
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::manifest::{DType, Dim, GraphName, GraphSpec, ValueSpec, shape_string};
use crate::error::{Error, Result};

/// The oldest ONNX Runtime minor version this build accepts (the `api-NN` feature of `ort`).
pub const MIN_ORT_MINOR: u32 = ort::MINOR_VERSION;

/// Environment variable naming the ONNX Runtime library; ours first, so a user can point the
/// engine somewhere without touching other `ort` users in the same environment.
pub const ORT_DYLIB_ENV: &str = "SAM2_ORT_DYLIB";
/// `ort`'s own variable, honoured second.
pub const ORT_DYLIB_ENV_FALLBACK: &str = "ORT_DYLIB_PATH";

/// The library in this checkout, where `bundle/fetch-onnxruntime.sh` puts it.
pub fn checkout_library_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".local")
        .join("onnxruntime")
        .join(format!(
            "{}onnxruntime{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ))
}

/// The library [`Runtime::load_default`] uses: see the module documentation for the order.
pub fn default_library_path() -> PathBuf {
    [ORT_DYLIB_ENV, ORT_DYLIB_ENV_FALLBACK]
        .iter()
        .filter_map(std::env::var_os)
        .find(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(checkout_library_path)
}

/// What the process-wide load produced; ONNX Runtime can be loaded once per process.
#[derive(Debug)]
struct Loaded {
    /// The canonical path, to tell a second request for the same library from one for another.
    path: PathBuf,
    environment: ort::environment::Environment,
}

static LOADED: OnceCell<Loaded> = OnceCell::new();

/// A handle on the loaded ONNX Runtime; cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    path: PathBuf,
    environment: ort::environment::Environment,
    intra_threads: Option<usize>,
}

impl Runtime {
    /// Loads the library at `library`, or returns the already loaded one if it is the same file.
    pub fn load(library: impl AsRef<Path>) -> Result<Runtime> {
        let requested = library.as_ref();
        // Checked before the process-wide state, so a wrong path is reported as missing even when
        // another library is already loaded.
        if !requested.is_file() {
            return Err(Error::RuntimeMissing {
                path: requested.to_path_buf(),
                min_minor: MIN_ORT_MINOR,
            });
        }
        let canonical = requested
            .canonicalize()
            .map_err(|e| Error::io(requested, e))?;
        let loaded =
            LOADED.get_or_try_init(|| {
                let load_error = |message: String| Error::RuntimeLoad {
                    path: requested.to_path_buf(),
                    message,
                    min_minor: MIN_ORT_MINOR,
                };
                let builder = ort::init_from(&canonical).map_err(|e| load_error(e.to_string()))?;
                let environment = builder.with_name("sam2-rotoscope").build().map_err(|e| {
                    Error::RuntimeSetup {
                        message: e.to_string(),
                    }
                })?;
                log::info!("loaded ONNX Runtime from {}", canonical.display());
                Ok::<_, Error>(Loaded {
                    path: canonical.clone(),
                    environment,
                })
            })?;
        if loaded.path != canonical {
            return Err(Error::RuntimeAlreadyLoaded {
                loaded: loaded.path.clone(),
                requested: requested.to_path_buf(),
            });
        }
        Ok(Runtime {
            path: loaded.path.clone(),
            environment: loaded.environment.clone(),
            intra_threads: None,
        })
    }

    /// Loads the library from [`default_library_path`].
    pub fn load_default() -> Result<Runtime> {
        Runtime::load(default_library_path())
    }

    /// The library this runtime was loaded from (canonical path).
    pub fn library_path(&self) -> &Path {
        &self.path
    }

    /// Fixes the number of threads each session uses inside an operator. Results differ in the
    /// last bits between thread counts, so parity checks pin it; `None` leaves ONNX Runtime's choice.
    pub fn with_intra_threads(mut self, threads: Option<usize>) -> Runtime {
        self.intra_threads = threads;
        self
    }

    /// Creates a session for the graph file at `path` and checks its interface against `spec`.
    pub fn session(&self, name: GraphName, path: &Path, spec: &GraphSpec) -> Result<Graph> {
        let session_error = |message: String| Error::Session {
            path: path.to_path_buf(),
            message,
        };
        let mut builder =
            Session::builder(&self.environment).map_err(|e| session_error(e.to_string()))?;
        if let Some(threads) = self.intra_threads {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| session_error(e.to_string()))?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| session_error(e.to_string()))?;
        let graph = Graph {
            name,
            path: path.to_path_buf(),
            spec: spec.clone(),
            session,
        };
        graph.check_interface()?;
        Ok(graph)
    }
}

/// One loaded graph with the manifest's description of it.
#[derive(Debug)]
pub struct Graph {
    name: GraphName,
    path: PathBuf,
    spec: GraphSpec,
    session: Session,
}

/// The element type ONNX Runtime reports for a manifest dtype.
fn ort_type(dtype: DType) -> TensorElementType {
    match dtype {
        DType::Float32 => TensorElementType::Float32,
        DType::Float16 => TensorElementType::Float16,
        DType::Bfloat16 => TensorElementType::Bfloat16,
        DType::Float64 => TensorElementType::Float64,
        DType::Int64 => TensorElementType::Int64,
        DType::Int32 => TensorElementType::Int32,
        DType::Int8 => TensorElementType::Int8,
        DType::Uint8 => TensorElementType::Uint8,
        DType::Bool => TensorElementType::Bool,
    }
}

/// Describes an ONNX Runtime shape in the manifest's notation: dynamic dimensions by their
/// symbol (or `?` when the graph gives none).
fn ort_shape_string(shape: &[i64], symbols: &[String]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d >= 0 {
                d.to_string()
            } else {
                match symbols.get(i) {
                    Some(s) if !s.is_empty() => s.clone(),
                    _ => "?".into(),
                }
            }
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Compares one declared value with what the graph declares; `None` when they agree.
///
/// A symbolic manifest dimension must be dynamic in the graph, since the engine will feed
/// different sizes. A fixed one must be that number, or dynamic: ONNX shape inference cannot
/// always prove an output's size (the exported decoder's masks come out of a `Where`), and
/// [`Graph::run_on_zeros`] checks the sizes a run really produces. Symbol names are not compared:
/// exporters rename them freely and nothing depends on them.
fn compare_value(side: &str, spec: &ValueSpec, actual: &ValueType) -> Option<String> {
    let ValueType::Tensor {
        ty,
        shape,
        dimension_symbols,
    } = actual
    else {
        return Some(format!(
            "its {side} \"{}\" is a {actual}, not a tensor",
            spec.name
        ));
    };
    if *ty != ort_type(spec.dtype) {
        return Some(format!(
            "its {side} \"{}\" has element type {ty} but the manifest says {}",
            spec.name, spec.dtype
        ));
    }
    let agree = shape.len() == spec.shape.len()
        && shape.iter().zip(&spec.shape).all(|(&d, m)| match m {
            Dim::Fixed(n) => d < 0 || i64::try_from(*n).is_ok_and(|n| n == d),
            Dim::Symbolic(_) => d < 0,
        });
    if agree {
        None
    } else {
        Some(format!(
            "its {side} \"{}\" has shape {} but the manifest says {}",
            spec.name,
            ort_shape_string(shape, dimension_symbols),
            shape_string(&spec.shape)
        ))
    }
}

fn compare_side(side: &str, listed: &[ValueSpec], actual: &[ort::value::Outlet]) -> Option<String> {
    for spec in listed {
        let Some(outlet) = actual.iter().find(|o| o.name() == spec.name) else {
            let names: Vec<&str> = actual.iter().map(|o| o.name()).collect();
            return Some(format!(
                "it has no {side} named \"{}\" (its {side}s are {names:?})",
                spec.name
            ));
        };
        if let Some(problem) = compare_value(side, spec, outlet.dtype()) {
            return Some(problem);
        }
    }
    actual
        .iter()
        .find(|o| !listed.iter().any(|s| s.name == o.name()))
        .map(|o| {
            format!(
                "it has an {side} \"{}\" that the manifest does not list",
                o.name()
            )
        })
}

impl Graph {
    /// Which of the four graphs this is.
    pub fn name(&self) -> GraphName {
        self.name
    }

    /// The graph file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest's description of the graph.
    pub fn spec(&self) -> &GraphSpec {
        &self.spec
    }

    /// The ONNX Runtime session, for the typed per-graph wrappers.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    fn mismatch(&self, problem: String) -> Error {
        Error::GraphMismatch {
            path: self.path.clone(),
            problem,
        }
    }

    /// Checks that the graph's inputs and outputs are exactly the manifest's, by name, element
    /// type and shape.
    fn check_interface(&self) -> Result<()> {
        let problem = compare_side("input", &self.spec.inputs, self.session.inputs())
            .or_else(|| compare_side("output", &self.spec.outputs, self.session.outputs()));
        match problem {
            None => Ok(()),
            Some(problem) => Err(self.mismatch(problem)),
        }
    }

    /// Runs the graph once on zeros (every symbolic dimension set to 1) and checks that every
    /// output has the manifest's shape. A cheap end-to-end check that the file really computes
    /// what it declares; it says nothing about the values.
    pub fn run_on_zeros(&mut self) -> Result<()> {
        let inference_error = |path: &Path, e: ort::Error| Error::Inference {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        // A quarter of a billion elements (1 GiB of f32) is far beyond any SAM 2 input; a larger
        // declared shape is a broken manifest, and allocating it would abort the process.
        const MAX_ELEMENTS: u64 = 1 << 28;
        let mut inputs: Vec<(String, DynValue)> = Vec::with_capacity(self.spec.inputs.len());
        for spec in &self.spec.inputs {
            let dims: Vec<u64> = spec
                .shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Symbolic(_) => 1,
                })
                .collect();
            let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            if elements.is_none_or(|n| n > MAX_ELEMENTS) {
                return Err(self.mismatch(format!(
                    "its input \"{}\" is declared with shape {}, too large to run",
                    spec.name,
                    shape_string(&spec.shape)
                )));
            }
            let shape: Vec<usize> = dims
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                .collect();
            let value = match spec.dtype {
                DType::Float32 => {
                    Tensor::from_array(ArrayD::<f32>::zeros(shape)).map(Tensor::into_dyn)
                }
                DType::Int64 => {
                    Tensor::from_array(ArrayD::<i64>::zeros(shape)).map(Tensor::into_dyn)
                }
                DType::Int32 => {
                    Tensor::from_array(ArrayD::<i32>::zeros(shape)).map(Tensor::into_dyn)
                }
                DType::Bool => Tensor::from_array(ArrayD::<bool>::from_elem(shape, false))
                    .map(Tensor::into_dyn),
                other => {
                    return Err(self.mismatch(format!(
                        "its input \"{}\" is {other}, which the engine never feeds",
                        spec.name
                    )));
                }
            }
            .map_err(|e| inference_error(&self.path, e))?;
            inputs.push((spec.name.clone(), value));
        }
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| inference_error(&self.path, e))?;
        for spec in &self.spec.outputs {
            let Some(value) = outputs.get(spec.name.as_str()) else {
                return Err(Error::GraphMismatch {
                    path: self.path.clone(),
                    problem: format!("a run produced no output \"{}\"", spec.name),
                });
            };
            let ValueType::Tensor { shape, .. } = value.dtype() else {
                return Err(Error::GraphMismatch {
                    path: self.path.clone(),
                    problem: format!("a run produced a non-tensor output \"{}\"", spec.name),
                });
            };
            let agree = shape.len() == spec.shape.len()
                && shape.iter().zip(&spec.shape).all(|(&d, m)| match m {
                    Dim::Fixed(n) => i64::try_from(*n).is_ok_and(|n| n == d),
                    Dim::Symbolic(_) => d >= 0,
                });
            if !agree {
                return Err(Error::GraphMismatch {
                    path: self.path.clone(),
                    problem: format!(
                        "a run on zeros produced output \"{}\" with shape {} where the manifest says {}",
                        spec.name,
                        ort_shape_string(shape, &[]),
                        shape_string(&spec.shape)
                    ),
                });
            }
        }
        Ok(())
    }
}
