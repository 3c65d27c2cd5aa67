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
//!
//! Before loading, the file is checked against its record (size and SHA-256) when one lies beside
//! it, and its ELF headers against its length ([`super::library`]): a truncated copy would
//! otherwise crash the process with SIGBUS.
//!
//! # Devices
//!
//! [`Runtime::with_device`] picks where the graphs run (the CLI's `cpu` / `gpu` / `auto`):
//! - [`Device::Cpu`], the default: ONNX Runtime's CPU provider only. Any library works.
//! - [`Device::Gpu`]: the first GPU provider that starts, in the order of
//!   [`Provider::GPU_ORDER`] (CUDA, DirectML, Core ML, WebGPU), among those this build has; an
//!   error ([`Error::GpuUnavailable`]) that says why each failed if none does. TensorRT is never
//!   picked this way: it spends minutes building an engine per graph on first use.
//! - [`Device::Auto`]: the same, but when no GPU provider starts, the CPU, with the reasons logged
//!   (`log::warn!` once per reason a built-in provider failed, then `log::info!` per graph).
//!
//! [`Runtime::with_providers`] gives power users an exact, ordered list instead (TensorRT, a second
//! GPU with `cuda:1`); every provider in it must register, and ONNX Runtime hands each node to
//! the first one that supports it, the CPU behind them all.
//!
//! A GPU needs two things. The engine must be built with the provider's feature (`cargo build
//! --release --features cuda`; also `tensorrt`, `webgpu`, and `directml` on Windows, `coreml` on
//! macOS — without them this is a CPU-only build). And the ONNX Runtime library must be a build
//! with that provider: for CUDA, the `libonnxruntime.so.1.*` of the PyPI wheel `onnxruntime-gpu`
//! (the CUDA 13 build), with `libonnxruntime_providers_shared.so` and
//! `libonnxruntime_providers_cuda.so` beside it, pointed at with `SAM2_ORT_DYLIB`, and the CUDA 13
//! runtime and cuDNN 9 where the loader finds them (`LD_LIBRARY_PATH`). `ort`'s `load-dynamic`
//! loads all of that at run time, so building with `--features cuda` needs no CUDA installed.
//!
//! Each [`Graph`] records which providers it was created with ([`Graph::provider`]): what was
//! requested and registered, not a per-node account — ONNX Runtime may still run some nodes of a
//! CUDA session on the CPU, which it only reports in its own verbose log.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::ArrayD;
use once_cell::sync::OnceCell;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::device::{Device, FailureReason, Provider, ProviderFailure, ort_message};
use super::library::verify_library;
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

/// How the sessions of a [`Runtime`] choose their execution providers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    Device(Device),
    Providers(Vec<Provider>),
}

/// A handle on the loaded ONNX Runtime; cheap to clone.
#[derive(Debug, Clone)]
pub struct Runtime {
    path: PathBuf,
    environment: ort::environment::Environment,
    intra_threads: Option<usize>,
    placement: Placement,
    /// Provider failures already logged: the same missing CUDA library would otherwise be
    /// reported once per graph. Shared by clones, which load the same sessions.
    warned: Arc<parking_lot::Mutex<HashSet<String>>>,
}

/// A created session and the providers it got, before its interface is checked.
struct Placed {
    session: Session,
    providers: Vec<Provider>,
    skipped: Vec<ProviderFailure>,
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
        // A damaged copy would load and then crash the process (SIGBUS) when its missing part
        // runs; checked unless this very file is already loaded.
        if LOADED.get().is_none_or(|loaded| loaded.path != canonical) {
            verify_library(&canonical)?;
        }
        let loaded = LOADED.get_or_try_init(|| {
            let load_error = |message: String| Error::RuntimeLoad {
                path: requested.to_path_buf(),
                message,
                min_minor: MIN_ORT_MINOR,
            };
            let builder = ort::init_from(&canonical).map_err(|e| load_error(e.to_string()))?;
            let environment = builder
                .with_name("sam2-rotoscope")
                .build()
                .map_err(|source| Error::RuntimeSetup { source })?;
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
            placement: Placement::Device(Device::Cpu),
            warned: Arc::default(),
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

    /// Picks the device the sessions created from now on run on (see the module documentation);
    /// replaces an earlier [`Runtime::with_providers`].
    pub fn with_device(mut self, device: Device) -> Runtime {
        self.placement = Placement::Device(device);
        self
    }

    /// Registers exactly these providers, in this order of preference, on every session created
    /// from now on; a provider that cannot be registered is an error, never skipped. The CPU is
    /// always behind them, for the nodes they do not take. Replaces an earlier
    /// [`Runtime::with_device`].
    pub fn with_providers(mut self, providers: impl IntoIterator<Item = Provider>) -> Runtime {
        self.placement = Placement::Providers(providers.into_iter().collect());
        self
    }

    /// The device chosen with [`Runtime::with_device`]; `None` after [`Runtime::with_providers`].
    pub fn device(&self) -> Option<Device> {
        match self.placement {
            Placement::Device(device) => Some(device),
            Placement::Providers(_) => None,
        }
    }

    /// Whether sessions of this runtime may run on a GPU provider: the device `gpu` or `auto` in a
    /// build with a GPU provider, or a list naming one. Says nothing of whether one will start.
    pub fn may_use_gpu(&self) -> bool {
        match &self.placement {
            Placement::Device(Device::Cpu) => false,
            Placement::Device(Device::Gpu | Device::Auto) => {
                Provider::GPU_ORDER.iter().any(|p| p.is_compiled_in())
            }
            Placement::Providers(providers) => providers.iter().any(|p| *p != Provider::Cpu),
        }
    }

    /// Creates a session for the graph file at `path` on the chosen device and checks its
    /// interface against `spec`.
    pub fn session(&self, name: GraphName, path: &Path, spec: &GraphSpec) -> Result<Graph> {
        let placed = match &self.placement {
            Placement::Device(Device::Cpu) => Placed {
                session: self.commit(path, self.builder(path)?)?,
                providers: vec![Provider::Cpu],
                skipped: Vec::new(),
            },
            Placement::Device(device) => self.place_on_gpu(name, path, *device)?,
            Placement::Providers(providers) => self.place_listed(name, path, providers)?,
        };
        let graph = Graph {
            name,
            path: path.to_path_buf(),
            spec: spec.clone(),
            session: placed.session,
            providers: placed.providers,
            skipped: placed.skipped,
        };
        graph.check_interface()?;
        Ok(graph)
    }

    /// A session builder with this runtime's settings and no provider yet. A fresh one per try,
    /// since a builder keeps every provider registered on it, failed tries included.
    fn builder(&self, path: &Path) -> Result<SessionBuilder> {
        // A builder's error carries the builder back for recovery; the cause keeps its code and
        // message.
        fn cause<R>(e: ort::Error<R>) -> ort::Error {
            ort::Error::new_with_code(e.code(), e.message())
        }
        let session_error = |source: ort::Error| Error::Session {
            path: path.to_path_buf(),
            source,
        };
        // The four graphs run one after another, each with its own thread pool; workers that spin
        // while idle steal the cores from the next graph (measured: 256 model 44 → 19 ms/frame).
        let mut builder = Session::builder(&self.environment)
            .map_err(session_error)?
            .with_intra_op_spinning(false)
            .map_err(|e| session_error(cause(e)))?
            .with_inter_op_spinning(false)
            .map_err(|e| session_error(cause(e)))?;
        if let Some(threads) = self.intra_threads {
            builder = builder
                .with_intra_threads(threads)
                .map_err(|e| session_error(cause(e)))?;
        }
        Ok(builder)
    }

    /// Creates the session; a failure is the graph's fault (no provider besides the CPU is on).
    fn commit(&self, path: &Path, mut builder: SessionBuilder) -> Result<Session> {
        builder
            .commit_from_file(path)
            .map_err(|source| Error::Session {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Registers `provider` on `builder`, or says why it cannot be.
    fn register(
        &self,
        builder: SessionBuilder,
        provider: Provider,
    ) -> std::result::Result<SessionBuilder, ProviderFailure> {
        let failure = |reason: FailureReason| ProviderFailure { provider, reason };
        let registration = |message: String| failure(FailureReason::Registration { message });
        let Some(ort_provider) = provider.to_ort().map_err(failure)? else {
            return Err(failure(FailureReason::NotInBuild));
        };
        // Asked first, because registering a provider the library lacks gives a message about
        // the provider's own library that sends a user looking in the wrong place.
        match (ort_provider.in_library)() {
            Ok(true) => {}
            Ok(false) => {
                return Err(failure(FailureReason::NotInLibrary {
                    library: self.path.clone(),
                }));
            }
            Err(e) => return Err(registration(ort_message(&e))),
        }
        builder
            .with_execution_providers([ort_provider.dispatch])
            .map_err(|e| registration(ort_message(&e)))
    }

    /// Tries the GPU providers this build has, in [`Provider::GPU_ORDER`], and takes the first
    /// whose session can be created: registering succeeds even without a device, so only
    /// creating the session proves that the provider works. With [`Device::Auto`], falls back to
    /// the CPU.
    fn place_on_gpu(&self, name: GraphName, path: &Path, device: Device) -> Result<Placed> {
        let mut skipped = Vec::new();
        for provider in Provider::GPU_ORDER {
            if !provider.is_compiled_in() {
                continue;
            }
            let attempt = self
                .register(self.builder(path)?, provider)
                .and_then(|mut builder| {
                    builder.commit_from_file(path).map_err(|e| ProviderFailure {
                        provider,
                        reason: FailureReason::Session {
                            message: ort_message(&e),
                        },
                    })
                });
            match attempt {
                Ok(session) => {
                    log::info!("{name}: running on {provider} (device {device})");
                    return Ok(Placed {
                        session,
                        providers: vec![provider, Provider::Cpu],
                        skipped,
                    });
                }
                Err(failure) => {
                    if device == Device::Auto {
                        let line = failure.to_string();
                        if self.warned.lock().insert(line.clone()) {
                            log::warn!("{line}.");
                        } else {
                            log::debug!("{name}: {line}.");
                        }
                    }
                    skipped.push(failure);
                }
            }
        }
        if device != Device::Auto {
            return Err(Error::GpuUnavailable {
                path: path.to_path_buf(),
                tried: skipped,
            });
        }
        if skipped.is_empty() {
            log::info!(
                "{name}: running on the CPU (device auto): this build of the engine has no GPU support; rebuild it with --features cuda, directml, coreml or webgpu for one."
            );
        } else {
            log::info!(
                "{name}: running on the CPU (device auto): none of the GPU providers {} could be used, for the reasons in the warnings.",
                skipped
                    .iter()
                    .map(|f| f.provider.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Placed {
            session: self.commit(path, self.builder(path)?)?,
            providers: vec![Provider::Cpu],
            skipped,
        })
    }

    /// Registers every listed provider, in order; any that cannot be is an error.
    fn place_listed(&self, name: GraphName, path: &Path, listed: &[Provider]) -> Result<Placed> {
        let unavailable = |failure: ProviderFailure| Error::ProviderUnavailable {
            path: path.to_path_buf(),
            failure,
        };
        let mut builder = self.builder(path)?;
        for &provider in listed {
            builder = self.register(builder, provider).map_err(unavailable)?;
        }
        let session = match listed.iter().find(|&&p| p != Provider::Cpu) {
            // The CPU provider does not fail to start, so a failure is the graph's.
            None => self.commit(path, builder)?,
            // With several, ONNX Runtime's message names the one that failed; the first is blamed
            // in the variant because it is the one the user asked for most.
            Some(&first) => builder.commit_from_file(path).map_err(|e| {
                unavailable(ProviderFailure {
                    provider: first,
                    reason: FailureReason::Session {
                        message: ort_message(&e),
                    },
                })
            })?,
        };
        let mut providers = listed.to_vec();
        if !providers.contains(&Provider::Cpu) {
            providers.push(Provider::Cpu);
        }
        log::info!(
            "{name}: running on {}",
            providers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", then ")
        );
        Ok(Placed {
            session,
            providers,
            skipped: Vec::new(),
        })
    }
}

impl Runtime {
    /// Creates a session for `model`, a small graph the engine builds in code
    /// ([`built_graphs`](super::built_graphs)), on `providers`, those of the graph `beside` (at
    /// `path`): it reads the tensors that graph keeps and leaves its own beside them. `what` says
    /// what it does, for errors.
    pub(crate) fn built_session(
        &self,
        model: ort::editor::Model,
        beside: (GraphName, &Path),
        providers: &[Provider],
        what: &str,
    ) -> Result<Graph> {
        let (name, path) = beside;
        let error = |source: ort::Error| Error::BuiltGraph {
            what: what.to_string(),
            beside: path.to_path_buf(),
            source,
        };
        let mut builder = self.builder(path)?;
        for &provider in providers.iter().filter(|&&p| p != Provider::Cpu) {
            builder = self
                .register(builder, provider)
                .map_err(|failure| error(ort::Error::new(failure.to_string())))?;
        }
        let session = model.into_session(&builder).map_err(error)?;
        Ok(Graph {
            name,
            path: path.to_path_buf(),
            spec: GraphSpec {
                file: what.to_string(),
                inputs: Vec::new(),
                outputs: Vec::new(),
            },
            session,
            providers: providers.to_vec(),
            skipped: Vec::new(),
        })
    }
}

/// One loaded graph with the manifest's description of it.
#[derive(Debug)]
pub struct Graph {
    name: GraphName,
    path: PathBuf,
    spec: GraphSpec,
    session: Session,
    /// Registered providers in ONNX Runtime's order of preference, the CPU last.
    providers: Vec<Provider>,
    /// GPU providers tried before these, with why they were not used.
    skipped: Vec<ProviderFailure>,
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

    /// The provider this graph's session prefers: the GPU provider it got, or the CPU. ONNX
    /// Runtime may still run single nodes that provider lacks on the CPU.
    pub fn provider(&self) -> Provider {
        self.providers.first().copied().unwrap_or(Provider::Cpu)
    }

    /// Where this graph's kept outputs ([`GraphTensor`](super::GraphTensor)) stay: the card's
    /// memory where the provider has one ([`Provider::output_card`]); `None`, host memory,
    /// elsewhere.
    pub(crate) fn output_device(&self) -> Option<MemoryInfo<'static>> {
        let device_id = self.provider().output_card()?;
        let id = i32::try_from(device_id).ok()?;
        match MemoryInfo::new(
            AllocationDevice::CUDA,
            id,
            AllocatorType::Device,
            MemoryType::Default,
        ) {
            Ok(info) => Some(info),
            Err(e) => {
                log::warn!(
                    "{}: outputs come back to host memory, since ONNX Runtime could not describe CUDA device {id}'s memory ({e})",
                    self.path.display()
                );
                None
            }
        }
    }

    /// Every provider registered on the session, in ONNX Runtime's order of preference; the CPU,
    /// which ONNX Runtime always keeps as the last resort, is last.
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The GPU providers tried before [`Graph::provider`] and why each was not used (empty unless
    /// the device is [`Device::Gpu`] or [`Device::Auto`] and something failed).
    pub fn skipped(&self) -> &[ProviderFailure] {
        &self.skipped
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
        let inference_error = |path: &Path, source: ort::Error| Error::GraphRun {
            path: path.to_path_buf(),
            source,
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

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, Once};

    use super::*;
    use crate::model::ModelDir;

    /// Every log line of this test binary with the thread that logged it, so a test can check
    /// that a fallback says why (tests run in parallel: each reads its own thread's lines).
    static LINES: Mutex<Vec<(std::thread::ThreadId, String)>> = Mutex::new(Vec::new());

    /// The lines this test's thread logged.
    fn own_lines() -> Vec<String> {
        let me = std::thread::current().id();
        LINES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(thread, _)| *thread == me)
            .map(|(_, line)| line.clone())
            .collect()
    }

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            LINES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((
                    std::thread::current().id(),
                    format!("{} {}", record.level(), record.args()),
                ));
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture;

    fn capture_logs() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            log::set_logger(&CAPTURE).unwrap();
            log::set_max_level(log::LevelFilter::Info);
        });
    }

    fn fixture_model() -> ModelDir {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/test");
        ModelDir::open(&dir).unwrap_or_else(|e| panic!("{e}"))
    }

    fn runtime(device: Device) -> Runtime {
        Runtime::load_default()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_intra_threads(Some(1))
            .with_device(device)
    }

    /// The GPU providers this build has, in the order they are tried.
    fn compiled_in_gpus() -> Vec<Provider> {
        Provider::GPU_ORDER
            .into_iter()
            .filter(|p| p.is_compiled_in())
            .collect()
    }

    #[test]
    fn the_default_device_is_the_cpu() {
        let runtime = Runtime::load_default().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(runtime.device(), Some(Device::Cpu));
        let listed = runtime.with_providers([Provider::Cpu]);
        assert_eq!(listed.device(), None);
        assert_eq!(
            listed.with_device(Device::Auto).device(),
            Some(Device::Auto)
        );
    }

    #[test]
    fn cpu_device_loads_the_fixture_model_on_the_cpu() {
        let model = fixture_model();
        let mut sessions = model
            .load_sessions(&runtime(Device::Cpu))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            sessions.providers(),
            GraphName::ALL.map(|name| (name, Provider::Cpu)).to_vec()
        );
        for name in GraphName::ALL {
            let graph = sessions.get_mut(name);
            assert_eq!(graph.providers(), [Provider::Cpu]);
            assert!(graph.skipped().is_empty());
            graph
                .run_on_zeros()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn auto_device_loads_the_fixture_model_on_the_cpu_and_logs_why() {
        capture_logs();
        let model = fixture_model();
        let mut sessions = model
            .load_sessions(&runtime(Device::Auto))
            .unwrap_or_else(|e| panic!("{e}"));
        let gpus = compiled_in_gpus();
        for name in GraphName::ALL {
            let graph = sessions.get_mut(name);
            if graph.provider() != Provider::Cpu {
                // A machine with a working GPU provider: nothing to fall back from.
                assert_eq!(graph.providers().last(), Some(&Provider::Cpu));
                continue;
            }
            assert_eq!(graph.providers(), [Provider::Cpu]);
            // Every GPU provider of this build was tried, and each says why it was not used.
            let tried: Vec<Provider> = graph.skipped().iter().map(|f| f.provider).collect();
            assert_eq!(tried, gpus, "{name}");
            graph
                .run_on_zeros()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let lines = own_lines();
            let fallback = lines
                .iter()
                .find(|l| l.contains(&format!("{name}: running on the CPU (device auto)")))
                .unwrap_or_else(|| panic!("{name}: no fallback logged in {lines:#?}"));
            assert!(fallback.starts_with("INFO"), "{fallback}");
            if gpus.is_empty() {
                assert!(fallback.contains("no GPU support"), "{fallback}");
                assert!(fallback.contains("--features cuda"), "{fallback}");
            } else {
                for failure in graph.skipped() {
                    // Once for the model, not once per graph.
                    let reason = format!("WARN {failure}.");
                    let times = lines.iter().filter(|l| **l == reason).count();
                    assert_eq!(times, 1, "{reason} in {lines:#?}");
                }
            }
        }
    }

    #[test]
    fn gpu_device_without_a_usable_gpu_provider_is_an_error_naming_them() {
        let model = fixture_model();
        let path = model.graph_path(GraphName::ImageEncoder);
        let spec = model.manifest().graphs.get(GraphName::ImageEncoder);
        let gpus = compiled_in_gpus();
        let err = match runtime(Device::Gpu).session(GraphName::ImageEncoder, &path, spec) {
            Ok(graph) if !gpus.is_empty() => {
                // A machine where a GPU provider works.
                assert_ne!(graph.provider(), Provider::Cpu);
                return;
            }
            Ok(graph) => panic!("a build without GPU providers ran on {}", graph.provider()),
            Err(err) => err,
        };
        let message = err.to_string();
        let Error::GpuUnavailable { path: at, tried } = err else {
            panic!("expected GpuUnavailable, got {err:?}");
        };
        assert_eq!(at, path);
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.ends_with('.'), "{message}");
        assert_eq!(
            tried.iter().map(|f| f.provider).collect::<Vec<_>>(),
            gpus,
            "{message}"
        );
        if gpus.is_empty() {
            for missing in ["cuda", "directml", "coreml", "webgpu"] {
                assert!(message.contains(missing), "{message}");
            }
            assert!(message.contains("--features cuda"), "{message}");
        } else {
            for provider in gpus {
                assert!(message.contains(provider.name()), "{message}");
            }
        }
        assert!(message.contains("device cpu or auto"), "{message}");
    }

    #[test]
    fn listed_providers_are_registered_or_refused() {
        let model = fixture_model();
        let path = model.graph_path(GraphName::MaskDecoder);
        let spec = model.manifest().graphs.get(GraphName::MaskDecoder);
        let cpu = runtime(Device::Cpu).with_providers([Provider::Cpu]);
        let mut graph = cpu
            .session(GraphName::MaskDecoder, &path, spec)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(graph.providers(), [Provider::Cpu]);
        graph.run_on_zeros().unwrap_or_else(|e| panic!("{e}"));

        // DirectML exists on Windows only: on any other platform it is refused whatever the build.
        if cfg!(windows) {
            return;
        }
        let directml = Provider::DirectMl { device_id: 0 };
        let err = runtime(Device::Cpu)
            .with_providers([directml, Provider::Cpu])
            .session(GraphName::MaskDecoder, &path, spec)
            .map(|_| ())
            .unwrap_err();
        let message = err.to_string();
        let Error::ProviderUnavailable { failure, .. } = err else {
            panic!("expected ProviderUnavailable, got {err:?}");
        };
        assert_eq!(failure.provider, directml);
        assert_eq!(failure.reason, FailureReason::NotInBuild);
        assert!(message.contains("only on Windows"), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn a_model_says_whether_it_fell_back_to_the_cpu_and_why() {
        let cpu = crate::Model::load(fixture_model(), &runtime(Device::Cpu))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(cpu.skipped_providers().is_empty());
        assert!(!cpu.fell_back_to_cpu());
        assert_eq!(
            cpu.providers(),
            GraphName::ALL.map(|name| (name, Provider::Cpu)).to_vec()
        );

        let auto = crate::Model::load(fixture_model(), &runtime(Device::Auto))
            .unwrap_or_else(|e| panic!("{e}"));
        if auto.providers().iter().all(|(_, p)| *p != Provider::Cpu) {
            // A machine where a GPU provider works: nothing fell back.
            assert!(!auto.fell_back_to_cpu());
            return;
        }
        // Every GPU provider of this build was tried, and is listed once for the four graphs.
        let tried: Vec<Provider> = auto
            .skipped_providers()
            .iter()
            .map(|f| f.provider)
            .collect();
        assert_eq!(tried, compiled_in_gpus());
        // A build without GPU providers has nothing broken to report.
        assert_eq!(auto.fell_back_to_cpu(), !compiled_in_gpus().is_empty());
    }

    #[test]
    fn precision_fast_takes_the_gpu_set_only_where_a_gpu_took_every_graph() {
        use crate::model::{FastTarget, Precision};
        for device in [Device::Cpu, Device::Auto] {
            let runtime = runtime(device);
            assert_eq!(
                runtime.may_use_gpu(),
                device == Device::Auto && !compiled_in_gpus().is_empty()
            );
            let fast = crate::Model::load_at(fixture_model(), &runtime, Precision::Fast)
                .unwrap_or_else(|e| panic!("{e}"));
            let on_gpu = fast.providers().iter().all(|(_, p)| *p != Provider::Cpu);
            let target = fast.graph_set().fast().map(|set| set.target());
            // A machine where a GPU provider works runs the float16 set; everywhere else (a CPU
            // build, or a CUDA build over the CPU-only library, which tries the GPU set first)
            // the int8 set, never the float16 graphs on the CPU.
            let expected = if on_gpu {
                FastTarget::Gpu
            } else {
                FastTarget::Cpu
            };
            assert_eq!(target, Some(expected), "{device}");
        }
        assert!(
            !runtime(Device::Cpu)
                .with_providers([Provider::Cpu])
                .may_use_gpu()
        );
        assert!(
            runtime(Device::Cpu)
                .with_providers([Provider::WebGpu])
                .may_use_gpu()
        );
    }

    /// A CUDA build with the checkout's library, the CPU-only ONNX Runtime: what a user gets with
    /// `SAM2_ORT_DYLIB` pointing at the wrong (CPU) library. `./test.sh` runs it with
    /// `--features cuda`.
    #[cfg(feature = "cuda")]
    #[test]
    fn a_cpu_only_library_under_a_cuda_build_falls_back_naming_the_library() {
        let own_library = [ORT_DYLIB_ENV, ORT_DYLIB_ENV_FALLBACK]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
        if own_library {
            // Another library was chosen; it may well have CUDA.
            return;
        }
        capture_logs();
        let auto = runtime(Device::Auto);
        let library = auto.library_path().to_path_buf();
        let model = crate::Model::load(fixture_model(), &auto).unwrap_or_else(|e| panic!("{e}"));
        assert!(model.fell_back_to_cpu());
        let cuda = Provider::Cuda { device_id: 0 };
        let failure = ProviderFailure {
            provider: cuda,
            reason: FailureReason::NotInLibrary {
                library: library.clone(),
            },
        };
        assert_eq!(model.skipped_providers(), std::slice::from_ref(&failure));
        let text = failure.to_string();
        assert!(text.contains(&library.display().to_string()), "{text}");
        assert!(text.contains("onnxruntime-gpu"), "{text}");
        let lines = own_lines();
        assert!(lines.contains(&format!("WARN {text}.")), "{lines:#?}");

        let err = crate::Model::load(fixture_model(), &runtime(Device::Gpu)).unwrap_err();
        let message = err.to_string();
        let Error::GpuUnavailable { tried, .. } = err else {
            panic!("expected GpuUnavailable, got {message}");
        };
        assert_eq!(tried, [failure]);
        assert!(message.contains("onnxruntime-gpu"), "{message}");
        assert!(message.contains("device cpu or auto"), "{message}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_listed_provider_missing_from_the_build_says_which_feature_to_enable() {
        let model = fixture_model();
        let path = model.graph_path(GraphName::MemoryEncoder);
        let spec = model.manifest().graphs.get(GraphName::MemoryEncoder);
        let err = runtime(Device::Cpu)
            .with_providers([Provider::Cuda { device_id: 1 }])
            .session(GraphName::MemoryEncoder, &path, spec)
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::ProviderUnavailable { failure, .. }
                    if failure.reason == FailureReason::NotInBuild
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("CUDA (device 1)"), "{message}");
        assert!(message.contains("--features cuda"), "{message}");
    }
}
