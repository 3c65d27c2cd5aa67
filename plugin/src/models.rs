//! Where the plugin finds ONNX Runtime and its model, and the models loaded in this process.
//!
//! The bundle (bundle/build-bundle.sh) is laid out as
//!
//! ```text
//! SAM2Rotoscope.ofx.bundle/Contents/
//!   Linux-x86-64/SAM2Rotoscope.ofx            the plugin binary
//!   Linux-x86-64/libonnxruntime.so.1.32.0     ONNX Runtime
//!   Resources/com.sam2rotoscope.SAM2Rotoscope.png
//!   Resources/models/<name>/manifest.json …   the default model(s)
//! ```
//!
//! ONNX Runtime: `SAM2_ORT_DYLIB` when it is set (an explicit choice wins: it is how a GPU build
//! of ONNX Runtime is used), else the library in the bundle next to the binary; nothing else.
//!
//! The model: the Model Directory parameter, or, when it is empty, the bundle's `models/` folder
//! (a model right there, or the first sub-folder by name holding one).
//!
//! Loaded models are shared by every effect instance that asks for the same directory and device
//! (four ONNX Runtime sessions, 40–900 MB each set), and freed when the last instance lets go.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use sam2_engine::model::device::{Device, ProviderFailure};
use sam2_engine::model::runtime::ORT_DYLIB_ENV;
use sam2_engine::{Model, ModelDir, Precision, Runtime};

use crate::ffi::messages::Severity;

use crate::error::{PluginError, Result};

/// The ONNX Runtime library a bundle ships next to the binary (build-bundle.sh copies the pinned
/// PyPI wheel's on Linux), and the unversioned name also looked for.
pub const BUNDLED_ORT: &str = if cfg!(target_os = "macos") {
    "libonnxruntime.1.32.0.dylib"
} else if cfg!(target_os = "windows") {
    "onnxruntime.dll"
} else {
    "libonnxruntime.so.1.32.0"
};
const UNVERSIONED_ORT: &str = if cfg!(target_os = "macos") {
    "libonnxruntime.dylib"
} else if cfg!(target_os = "windows") {
    "onnxruntime.dll"
} else {
    "libonnxruntime.so"
};

/// The folder of a bundle's `Contents` holding the binary on this platform.
pub const ARCH_DIR: &str = if cfg!(target_os = "macos") {
    "MacOS"
} else if cfg!(target_os = "windows") {
    "Win64"
} else {
    "Linux-x86-64"
};

/// Where the parts of an installed bundle are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlePaths {
    /// `Contents/<arch>`: the binary and ONNX Runtime.
    pub binary_dir: PathBuf,
    /// `Contents/Resources`: the icon, `models/` and `templates/`.
    pub resources: PathBuf,
}

impl BundlePaths {
    /// From the plugin binary's own path (`…/Contents/<arch>/SAM2Rotoscope.ofx`).
    pub fn from_binary(binary: &Path) -> Option<BundlePaths> {
        let binary_dir = binary.parent()?.to_path_buf();
        let contents = binary_dir.parent()?;
        Some(BundlePaths {
            resources: contents.join("Resources"),
            binary_dir,
        })
    }

    /// From the bundle's root (`…/SAM2Rotoscope.ofx.bundle`, the host's kOfxPluginPropFilePath).
    pub fn from_bundle_root(root: &Path) -> BundlePaths {
        let contents = root.join("Contents");
        BundlePaths {
            binary_dir: contents.join(ARCH_DIR),
            resources: contents.join("Resources"),
        }
    }

    pub fn models_dir(&self) -> PathBuf {
        self.resources.join("models")
    }

    /// The weight-free graph templates that turn an official checkpoint into a model.
    pub fn templates_dir(&self) -> PathBuf {
        self.resources.join("templates")
    }
}

/// The ONNX Runtime library to load: `env` (the value of `SAM2_ORT_DYLIB`) when set, else the
/// bundle's; an error listing where it looked otherwise.
pub fn ort_library(bundle: Option<&BundlePaths>, env: Option<OsString>) -> Result<PathBuf> {
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        // An explicit choice is used as it is; a wrong path is reported by the engine by name.
        return Ok(PathBuf::from(value));
    }
    let mut looked = Vec::new();
    if let Some(bundle) = bundle {
        for name in [BUNDLED_ORT, UNVERSIONED_ORT] {
            let path = bundle.binary_dir.join(name);
            if path.is_file() {
                return Ok(path);
            }
            looked.push(path.display().to_string());
        }
    }
    looked.push(format!(
        "the environment variable {ORT_DYLIB_ENV}, which is not set"
    ));
    Err(PluginError::RuntimeNotFound {
        looked: looked.join(", "),
    })
}

/// The model directory to open: `chosen` (the parameter) when not empty, else the default model
/// in `models_dir`.
pub fn model_dir(chosen: &str, models_dir: &Path) -> Result<PathBuf> {
    let chosen = chosen.trim();
    if !chosen.is_empty() {
        let dir = PathBuf::from(chosen);
        if dir.is_dir() && !dir.join(sam2_engine::model::MANIFEST_FILE).is_file() {
            return Err(PluginError::NotAModel { dir });
        }
        // A missing directory is reported by the engine, naming the file it looked for.
        return Ok(dir);
    }
    if models_dir.join(sam2_engine::model::MANIFEST_FILE).is_file() {
        return Ok(models_dir.to_path_buf());
    }
    // A folder that cannot be read holds no model for us: the "no model" message names it.
    let mut found: Vec<PathBuf> = std::fs::read_dir(models_dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(sam2_engine::model::MANIFEST_FILE).is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .into_iter()
        .next()
        .ok_or_else(|| PluginError::NoModel {
            models_dir: models_dir.to_path_buf(),
        })
}

/// Which model: a directory on a device, with its exact graphs or its fast set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    pub dir: PathBuf,
    pub device: Device,
    pub precision: Precision,
}

static MODELS: Lazy<Mutex<HashMap<ModelKey, Weak<Model>>>> = Lazy::new(Mutex::default);

/// The model for `key`, shared with every other instance that uses it; loads it (seconds) when
/// no instance holds it. `library` is the ONNX Runtime to load it with.
pub fn load_model(key: &ModelKey, library: &Path) -> Result<Arc<Model>> {
    // Held while loading so two instances never load the same model twice; loading calls no
    // host function, so this cannot block a host callback.
    let mut models = MODELS.lock();
    models.retain(|_, weak| weak.strong_count() > 0);
    if let Some(model) = models.get(key).and_then(Weak::upgrade) {
        return Ok(model);
    }
    let runtime = Runtime::load(library)?.with_device(key.device);
    let model = Model::load_at(ModelDir::open(&key.dir)?, &runtime, key.precision)?;
    models.insert(key.clone(), Arc::downgrade(&model));
    Ok(model)
}

/// The warning a host shows while a model that was to run on the GPU (device Auto) runs on the
/// CPU because its GPU providers failed: a missing or wrong ONNX Runtime library, missing CUDA
/// libraries. `None` when nothing fell back — including a build without GPU support, where the
/// CPU is the only choice and nothing is broken.
pub fn fallback_notice(model: &Model) -> Option<String> {
    model
        .fell_back_to_cpu()
        .then(|| fallback_text(model.skipped_providers()))
}

/// `notice` with the fallback warning added: after a warning, or alone; an error is shown alone,
/// since it is what stops the work.
pub fn with_fallback(
    notice: Option<(Severity, String)>,
    fallback: Option<&str>,
) -> Option<(Severity, String)> {
    let Some(fallback) = fallback else {
        return notice;
    };
    match notice {
        Some((Severity::Error, text)) => Some((Severity::Error, text)),
        Some((Severity::Warning, text)) => Some((Severity::Warning, format!("{text} {fallback}"))),
        None => Some((Severity::Warning, fallback.to_string())),
    }
}

fn fallback_text(failures: &[ProviderFailure]) -> String {
    let reasons: Vec<String> = failures.iter().map(ToString::to_string).collect();
    format!(
        "The model runs on the CPU, not the GPU (device Auto): {}. Set Device to CPU to run there without this message.",
        reasons.join("; and ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sam2_engine::model::device::{FailureReason, Provider};

    #[test]
    fn a_fallback_says_why_for_each_provider() {
        let failures = [
            ProviderFailure {
                provider: Provider::Cuda { device_id: 0 },
                reason: FailureReason::NotInLibrary {
                    library: PathBuf::from("/opt/ort/libonnxruntime.so.1.32.0"),
                },
            },
            ProviderFailure {
                provider: Provider::WebGpu,
                reason: FailureReason::Session {
                    message: "no adapter found.".into(),
                },
            },
        ];
        let text = fallback_text(&failures);
        assert!(text.starts_with("The model runs on the CPU"), "{text}");
        assert!(text.contains("/opt/ort/libonnxruntime.so.1.32.0"), "{text}");
        assert!(text.contains("onnxruntime-gpu"), "{text}");
        assert!(
            text.contains("no adapter found; check that a Vulkan"),
            "{text}"
        );
        assert!(text.ends_with("without this message."), "{text}");
    }

    #[test]
    fn the_fallback_joins_a_warning_and_yields_to_an_error() {
        let warning = Some((Severity::Warning, "Object 2 has no prompt.".to_string()));
        let error = Some((Severity::Error, "No model.".to_string()));
        assert_eq!(with_fallback(warning.clone(), None), warning);
        assert_eq!(
            with_fallback(None, Some("On the CPU.")),
            Some((Severity::Warning, "On the CPU.".into()))
        );
        assert_eq!(
            with_fallback(warning, Some("On the CPU.")),
            Some((
                Severity::Warning,
                "Object 2 has no prompt. On the CPU.".into()
            ))
        );
        assert_eq!(with_fallback(error.clone(), Some("On the CPU.")), error);
    }

    #[test]
    fn bundle_paths_agree_from_the_binary_and_from_the_root() {
        let root = Path::new("/usr/OFX/Plugins/SAM2Rotoscope.ofx.bundle");
        let from_root = BundlePaths::from_bundle_root(root);
        let binary = from_root.binary_dir.join("SAM2Rotoscope.ofx");
        assert_eq!(BundlePaths::from_binary(&binary), Some(from_root.clone()));
        assert_eq!(
            from_root.models_dir(),
            root.join("Contents/Resources/models")
        );
    }

    #[test]
    fn onnx_runtime_comes_from_the_variable_then_the_bundle_then_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = BundlePaths::from_bundle_root(dir.path());
        let err = ort_library(Some(&bundle), None).unwrap_err().to_string();
        assert!(
            err.contains(BUNDLED_ORT) && err.contains("SAM2_ORT_DYLIB"),
            "{err}"
        );
        std::fs::create_dir_all(&bundle.binary_dir).unwrap();
        let lib = bundle.binary_dir.join(BUNDLED_ORT);
        std::fs::write(&lib, b"").unwrap();
        assert_eq!(ort_library(Some(&bundle), None).unwrap(), lib);
        assert_eq!(
            ort_library(Some(&bundle), Some(OsString::new())).unwrap(),
            lib
        );
        let env = OsString::from("/opt/ort-gpu/libonnxruntime.so.1.31.1");
        assert_eq!(
            ort_library(Some(&bundle), Some(env.clone())).unwrap(),
            PathBuf::from(env)
        );
        assert!(ort_library(None, None).is_err());
    }

    #[test]
    fn the_default_model_is_the_first_one_in_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        let err = model_dir("", &models).unwrap_err().to_string();
        assert!(
            err.contains("Model Directory") && err.contains("models"),
            "{err}"
        );
        for name in ["zeta", "alpha", "not-a-model"] {
            std::fs::create_dir_all(models.join(name)).unwrap();
        }
        for name in ["zeta", "alpha"] {
            std::fs::write(models.join(name).join("manifest.json"), b"{}").unwrap();
        }
        assert_eq!(model_dir("", &models).unwrap(), models.join("alpha"));
        assert_eq!(model_dir("  ", &models).unwrap(), models.join("alpha"));
        // A chosen directory wins; one without a manifest is refused with a sentence.
        assert_eq!(
            model_dir(&models.join("zeta").display().to_string(), &models).unwrap(),
            models.join("zeta")
        );
        let err = model_dir(&models.join("not-a-model").display().to_string(), &models)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no manifest.json"), "{err}");
    }
}
