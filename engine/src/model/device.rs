//! Where the graphs run: the device a user picks ([`Device`]), the ONNX Runtime execution providers
//! behind it ([`Provider`]), and why a provider could not be used ([`ProviderFailure`]).
//!
//! A user thinks in "CPU or GPU", not in provider names, so [`Device`] is the everyday choice and
//! [`Runtime::session`](super::Runtime::session) turns it into providers; an explicit provider
//! list is there for power users (TensorRT, a second GPU). Which providers exist depends on two
//! things that are easy to confuse, and the messages keep them apart: the cargo features this
//! engine was built with (`cuda`, `tensorrt`, `directml`, `coreml`, `webgpu`), and the ONNX Runtime
//! library loaded at run time, which must itself be a build with that provider.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The device the graphs run on, as a user picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The CPU only: always works, the reference for parity checks.
    #[default]
    Cpu,
    /// A GPU provider or an error: for users who would rather be told than wait on the CPU.
    Gpu,
    /// A GPU provider when one starts, else the CPU, with the reasons logged.
    Auto,
}

impl Device {
    /// Every device, in the order the CLI lists them.
    pub const ALL: [Device; 3] = [Device::Cpu, Device::Gpu, Device::Auto];

    /// The name used on the command line and in settings files.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
            Device::Auto => "auto",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Device {
    type Err = Error;

    /// Reads `cpu`, `gpu` or `auto`, in any case, since users type `GPU` as often as `gpu`.
    fn from_str(s: &str) -> Result<Device, Error> {
        let given = s.trim();
        Device::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(given))
            .ok_or_else(|| Error::UnknownDevice {
                given: s.to_string(),
            })
    }
}

/// One ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Provider {
    /// NVIDIA GPUs through CUDA (feature `cuda`; the `onnxruntime-gpu` library, CUDA 13, cuDNN 9).
    #[serde(rename = "cuda")]
    Cuda { device_id: u32 },
    /// NVIDIA TensorRT (feature `tensorrt`). Never chosen by [`Device::Gpu`]: it builds an engine
    /// per graph and input shape, which takes minutes on first use.
    #[serde(rename = "tensorrt")]
    TensorRt { device_id: u32 },
    /// DirectX 12 GPUs on Windows (feature `directml`; the DirectML build of ONNX Runtime).
    #[serde(rename = "directml")]
    DirectMl { device_id: u32 },
    /// Apple's Core ML on macOS (feature `coreml`).
    #[serde(rename = "coreml")]
    CoreMl,
    /// WebGPU through Dawn (feature `webgpu`; an ONNX Runtime build with WebGPU).
    #[serde(rename = "webgpu")]
    WebGpu,
    /// ONNX Runtime's own CPU provider, always present.
    #[serde(rename = "cpu")]
    Cpu,
}

impl Provider {
    /// The CUDA device whose memory keeps the kept outputs ([`GraphTensor`](super::GraphTensor))
    /// of graphs on this provider: CUDA's and TensorRT's. The other GPU providers' memory has not
    /// been tried with ONNX Runtime's binding on their hardware, so their outputs come back to
    /// host memory as before.
    pub fn output_card(self) -> Option<u32> {
        match self {
            Provider::Cuda { device_id } | Provider::TensorRt { device_id } => Some(device_id),
            Provider::DirectMl { .. } | Provider::CoreMl | Provider::WebGpu | Provider::Cpu => None,
        }
    }

    /// The GPU providers [`Device::Gpu`] and [`Device::Auto`] try, first that starts wins. CUDA
    /// first, as the fastest where it exists; DirectML and Core ML are each their platform's
    /// native path; WebGPU last, as the most portable and the slowest.
    pub const GPU_ORDER: [Provider; 4] = [
        Provider::Cuda { device_id: 0 },
        Provider::DirectMl { device_id: 0 },
        Provider::CoreMl,
        Provider::WebGpu,
    ];

    /// The provider's usual name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cuda { .. } => "CUDA",
            Provider::TensorRt { .. } => "TensorRT",
            Provider::DirectMl { .. } => "DirectML",
            Provider::CoreMl => "CoreML",
            Provider::WebGpu => "WebGPU",
            Provider::Cpu => "CPU",
        }
    }

    /// The engine's cargo feature that compiles it in; `None` for the CPU, which is always there.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Provider::Cuda { .. } => Some("cuda"),
            Provider::TensorRt { .. } => Some("tensorrt"),
            Provider::DirectMl { .. } => Some("directml"),
            Provider::CoreMl => Some("coreml"),
            Provider::WebGpu => Some("webgpu"),
            Provider::Cpu => None,
        }
    }

    /// The only platform the provider exists on, where it is tied to one and this is not it.
    fn missing_platform(self) -> Option<&'static str> {
        match self {
            Provider::DirectMl { .. } if !cfg!(windows) => Some("Windows"),
            Provider::CoreMl if !cfg!(target_vendor = "apple") => Some("macOS"),
            _ => None,
        }
    }

    /// Whether this build can use it: its feature is on and, for DirectML and Core ML, this is
    /// their platform. `ort` compiles both everywhere, but elsewhere they can only fail at run
    /// time, so the engine treats them as absent.
    pub fn is_compiled_in(self) -> bool {
        match self {
            Provider::Cuda { .. } => cfg!(feature = "cuda"),
            Provider::TensorRt { .. } => cfg!(feature = "tensorrt"),
            Provider::DirectMl { .. } => cfg!(all(feature = "directml", windows)),
            Provider::CoreMl => cfg!(all(feature = "coreml", target_vendor = "apple")),
            Provider::WebGpu => cfg!(feature = "webgpu"),
            Provider::Cpu => true,
        }
    }

    /// What to check when the provider is compiled in but would not start.
    fn start_hint(self) -> &'static str {
        match self {
            Provider::Cuda { .. } => {
                "check that the CUDA 13 libraries (cudart, cuBLAS, cuFFT, cuRAND) and cuDNN 9 are installed where the loader finds them (LD_LIBRARY_PATH on Linux, PATH on Windows) and that libonnxruntime_providers_cuda lies next to the ONNX Runtime library"
            }
            Provider::TensorRt { .. } => {
                "check that TensorRT 10 and the CUDA 13 libraries are installed where the loader finds them and that libonnxruntime_providers_tensorrt lies next to the ONNX Runtime library"
            }
            Provider::DirectMl { .. } => {
                "check that the GPU and its driver support DirectX 12 and that DirectML.dll lies next to the ONNX Runtime library"
            }
            Provider::CoreMl => "check that this Mac runs macOS 10.15 or newer",
            Provider::WebGpu => {
                "check that a Vulkan, Metal or DirectX 12 driver for the GPU is installed"
            }
            Provider::Cpu => "report it, since the CPU provider always starts",
        }
    }

    /// Which ONNX Runtime library has the provider.
    fn library_hint(self) -> &'static str {
        match self {
            Provider::Cuda { .. } | Provider::TensorRt { .. } => {
                "point SAM2_ORT_DYLIB at the libonnxruntime of the onnxruntime-gpu wheel (the CUDA 13 build, with libonnxruntime_providers_cuda beside it)"
            }
            Provider::DirectMl { .. } => {
                "point SAM2_ORT_DYLIB at onnxruntime.dll from the Microsoft.ML.OnnxRuntime.DirectML package"
            }
            Provider::CoreMl => "use the macOS build of ONNX Runtime, which includes Core ML",
            Provider::WebGpu => "point SAM2_ORT_DYLIB at an ONNX Runtime build with WebGPU",
            Provider::Cpu => "every ONNX Runtime library has it",
        }
    }

    /// `ort`'s provider, set to fail loudly, with whether the loaded library has it; `None` when
    /// this build does not compile it in (see [`Provider::is_compiled_in`]).
    pub(crate) fn to_ort(self) -> Result<Option<OrtProvider>, FailureReason> {
        #[cfg(any(
            feature = "cuda",
            feature = "tensorrt",
            all(feature = "directml", windows)
        ))]
        let device = |id: u32| {
            i32::try_from(id).map_err(|_| FailureReason::Registration {
                message: format!("device id {id} is out of range"),
            })
        };
        Ok(match self {
            Provider::Cpu => Some(OrtProvider::of(ort::ep::CPU::default())),
            #[cfg(feature = "cuda")]
            Provider::Cuda { device_id } => Some(OrtProvider::of(
                ort::ep::CUDA::default().with_device_id(device(device_id)?),
            )),
            #[cfg(feature = "tensorrt")]
            Provider::TensorRt { device_id } => Some(OrtProvider::of(
                ort::ep::TensorRT::default().with_device_id(device(device_id)?),
            )),
            #[cfg(all(feature = "directml", windows))]
            Provider::DirectMl { device_id } => Some(OrtProvider::of(
                ort::ep::DirectML::default().with_device_id(device(device_id)?),
            )),
            #[cfg(all(feature = "coreml", target_vendor = "apple"))]
            Provider::CoreMl => Some(OrtProvider::of(ort::ep::CoreML::default())),
            #[cfg(feature = "webgpu")]
            Provider::WebGpu => Some(OrtProvider::of(ort::ep::WebGPU::default())),
            #[allow(unreachable_patterns)]
            _ => None,
        })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Cuda { device_id }
            | Provider::TensorRt { device_id }
            | Provider::DirectMl { device_id }
                if *device_id != 0 =>
            {
                write!(f, "{} (device {device_id})", self.name())
            }
            _ => f.write_str(self.name()),
        }
    }
}

impl FromStr for Provider {
    type Err = Error;

    /// Reads `cpu`, `cuda`, `tensorrt`, `directml`, `coreml` or `webgpu`, in any case; the three
    /// that address one of several GPUs take `:N` for device N (`cuda:1`), else device 0.
    fn from_str(s: &str) -> Result<Provider, Error> {
        let unknown = || Error::UnknownProvider {
            given: s.to_string(),
        };
        let lower = s.trim().to_ascii_lowercase();
        let (name, device_id) = match lower.split_once(':') {
            Some((name, id)) => (name, Some(id.parse::<u32>().map_err(|_| unknown())?)),
            None => (lower.as_str(), None),
        };
        let id = device_id.unwrap_or(0);
        let provider = match name {
            "cuda" => Provider::Cuda { device_id: id },
            "tensorrt" => Provider::TensorRt { device_id: id },
            "directml" => Provider::DirectMl { device_id: id },
            "coreml" => Provider::CoreMl,
            "webgpu" => Provider::WebGpu,
            "cpu" => Provider::Cpu,
            _ => return Err(unknown()),
        };
        // A device number on a provider that has none is a typo worth reporting.
        let addressable = matches!(
            provider,
            Provider::Cuda { .. } | Provider::TensorRt { .. } | Provider::DirectMl { .. }
        );
        if device_id.is_some() && !addressable {
            return Err(unknown());
        }
        Ok(provider)
    }
}

/// An `ort` provider ready to register, and how to ask whether the loaded library has it.
pub(crate) struct OrtProvider {
    pub(crate) dispatch: ort::ep::ExecutionProviderDispatch,
    /// A function rather than the answer: asking needs the library loaded, and `ort` panics when
    /// it is not, so only [`Runtime`](super::Runtime) may call it.
    pub(crate) in_library: fn() -> ort::Result<bool>,
}

impl OrtProvider {
    fn of<E>(ep: E) -> OrtProvider
    where
        E: ort::ep::ExecutionProvider + Into<ort::ep::ExecutionProviderDispatch>,
    {
        OrtProvider {
            in_library: E::is_available,
            // `ort`'s default is to log a failed registration and go on without the provider;
            // the engine decides itself whether that is an error or a fallback.
            dispatch: ep.into().error_on_failure(),
        }
    }
}

/// Why a provider could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// This build of the engine does not have it (the cargo feature is off, or not this platform).
    NotInBuild,
    /// The ONNX Runtime library was built without it.
    NotInLibrary { library: PathBuf },
    /// ONNX Runtime would not register it; usually its own libraries (CUDA, cuDNN) are missing.
    Registration { message: String },
    /// It registered, but no session could be created with it: no device, too little memory.
    Session { message: String },
}

/// A provider that was tried (or asked for) and why it could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    pub provider: Provider,
    pub reason: FailureReason,
}

/// ONNX Runtime's message without the source location and status code it starts with
/// (`/onnxruntime_src/…/provider_bridge_ort.cc:2043 … [ONNXRuntimeError] : 1 : FAIL : Failed to
/// load library …`): the rest is what a user can act on.
pub(crate) fn ort_message(error: &impl fmt::Display) -> String {
    const MARKER: &str = "[ONNXRuntimeError] : ";
    let full = error.to_string();
    let stripped = full.find(MARKER).and_then(|at| {
        let after = full.get(at + MARKER.len()..)?;
        let (_code, rest) = after.split_once(" : ")?;
        let (_name, message) = rest.split_once(" : ")?;
        Some(message.to_string())
    });
    stripped.unwrap_or(full)
}

/// ONNX Runtime's messages end in a period or a newline about half the time; ours add their own.
fn trimmed(message: &str) -> &str {
    message.trim_end_matches(['.', ' ', '\n', '\r'])
}

impl fmt::Display for ProviderFailure {
    /// A clause (lower case, no final period) so that several can be joined into one sentence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.provider;
        match &self.reason {
            FailureReason::NotInBuild => match (p.missing_platform(), p.feature()) {
                (Some(platform), _) => write!(f, "the {p} provider exists only on {platform}"),
                (_, Some(feature)) => write!(
                    f,
                    "this build of the engine has no {p} support: rebuild the engine with --features {feature}"
                ),
                (_, None) => write!(f, "this build of the engine has no {p} support"),
            },
            FailureReason::NotInLibrary { library } => write!(
                f,
                "the ONNX Runtime library {} was built without the {p} provider: {}",
                library.display(),
                p.library_hint()
            ),
            FailureReason::Registration { message } => write!(
                f,
                "the {p} provider could not start: {}; {}",
                trimmed(message),
                p.start_hint()
            ),
            FailureReason::Session { message } => write!(
                f,
                "the {p} provider started but could not create the session: {}; {}",
                trimmed(message),
                p.start_hint()
            ),
        }
    }
}

/// The message of [`Error::GpuUnavailable`]: what was tried and how to get a GPU, or the CPU.
pub(crate) fn gpu_unavailable_message(path: &Path, tried: &[ProviderFailure]) -> String {
    if tried.is_empty() {
        return format!(
            "This build of the engine has no GPU support, so the graph {} cannot run on the GPU: rebuild the engine with --features cuda (NVIDIA), directml (Windows), coreml (macOS) or webgpu, or choose the device cpu or auto.",
            path.display()
        );
    }
    let reasons: Vec<String> = tried.iter().map(ToString::to_string).collect();
    format!(
        "No GPU execution provider could run the graph {}: {}. Choose the device cpu or auto to run on the CPU instead.",
        path.display(),
        reasons.join("; and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_from_their_names_in_any_case() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("gpu".parse::<Device>().unwrap(), Device::Gpu);
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert_eq!(" GPU ".parse::<Device>().unwrap(), Device::Gpu);
        for device in Device::ALL {
            assert_eq!(device.to_string().parse::<Device>().unwrap(), device);
        }
        assert_eq!(Device::default(), Device::Cpu);
    }

    #[test]
    fn an_unknown_device_is_refused_with_a_sentence_listing_the_choices() {
        let err = "tpu".parse::<Device>().unwrap_err();
        let Error::UnknownDevice { ref given } = err else {
            panic!("expected UnknownDevice, got {err:?}");
        };
        assert_eq!(given, "tpu");
        let message = err.to_string();
        assert!(message.starts_with('"'), "{message}");
        assert!(message.ends_with('.'), "{message}");
        for choice in ["tpu", "cpu", "gpu", "auto"] {
            assert!(message.contains(choice), "{message}");
        }
    }

    #[test]
    fn devices_serialize_in_snake_case() {
        assert_eq!(serde_json::to_string(&Device::Auto).unwrap(), "\"auto\"");
        assert_eq!(
            serde_json::from_str::<Device>("\"gpu\"").unwrap(),
            Device::Gpu
        );
        assert!(serde_json::from_str::<Device>("\"tpu\"").is_err());
        assert_eq!(
            serde_json::to_string(&Provider::Cuda { device_id: 1 }).unwrap(),
            r#"{"cuda":{"device_id":1}}"#
        );
        assert_eq!(
            serde_json::to_string(&Provider::WebGpu).unwrap(),
            "\"webgpu\""
        );
    }

    #[test]
    fn providers_parse_with_an_optional_device_number() {
        assert_eq!(
            "cuda".parse::<Provider>().unwrap(),
            Provider::Cuda { device_id: 0 }
        );
        assert_eq!(
            "CUDA:1".parse::<Provider>().unwrap(),
            Provider::Cuda { device_id: 1 }
        );
        assert_eq!(
            "tensorrt".parse::<Provider>().unwrap(),
            Provider::TensorRt { device_id: 0 }
        );
        assert_eq!("webgpu".parse::<Provider>().unwrap(), Provider::WebGpu);
        assert_eq!("cpu".parse::<Provider>().unwrap(), Provider::Cpu);
        for bad in ["tpu", "cuda:x", "cpu:1", "webgpu:0", ""] {
            let err = bad.parse::<Provider>().unwrap_err();
            assert!(
                matches!(err, Error::UnknownProvider { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains("cuda:N"), "{err}");
        }
    }

    #[test]
    fn only_the_cpu_and_the_enabled_features_are_compiled_in() {
        assert!(Provider::Cpu.is_compiled_in());
        assert_eq!(
            Provider::Cuda { device_id: 0 }.is_compiled_in(),
            cfg!(feature = "cuda")
        );
        assert_eq!(Provider::WebGpu.is_compiled_in(), cfg!(feature = "webgpu"));
        if !cfg!(windows) {
            assert!(!Provider::DirectMl { device_id: 0 }.is_compiled_in());
        }
        if !cfg!(target_vendor = "apple") {
            assert!(!Provider::CoreMl.is_compiled_in());
        }
        for provider in Provider::GPU_ORDER {
            assert_eq!(
                provider.to_ort().map(|p| p.is_some()),
                Ok(provider.is_compiled_in()),
                "{provider}"
            );
        }
    }

    #[test]
    fn failures_say_what_to_do() {
        let cuda = Provider::Cuda { device_id: 0 };
        let not_built = ProviderFailure {
            provider: cuda,
            reason: FailureReason::NotInBuild,
        }
        .to_string();
        assert!(not_built.contains("--features cuda"), "{not_built}");
        let not_in_library = ProviderFailure {
            provider: cuda,
            reason: FailureReason::NotInLibrary {
                library: PathBuf::from("/x/libonnxruntime.so"),
            },
        }
        .to_string();
        assert!(not_in_library.contains("/x/libonnxruntime.so"));
        assert!(not_in_library.contains("onnxruntime-gpu"));
        let no_start = ProviderFailure {
            provider: cuda,
            reason: FailureReason::Registration {
                message: "libcudart.so.13: cannot open shared object file.\n".into(),
            },
        }
        .to_string();
        assert!(
            no_start.contains("file; check that the CUDA 13"),
            "{no_start}"
        );
        assert_eq!(
            ort_message(
                &"/src/provider_bridge_ort.cc:2043 onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library x.so with error: libcublasLt.so.13: cannot open shared object file"
            ),
            "Failed to load library x.so with error: libcublasLt.so.13: cannot open shared object file"
        );
        assert_eq!(ort_message(&"no marker : here"), "no marker : here");
        let message = gpu_unavailable_message(Path::new("g.onnx"), &[]);
        for feature in ["cuda", "directml", "coreml", "webgpu"] {
            assert!(message.contains(feature), "{message}");
        }
    }
}
