//! The fast graph sets of a model directory (docs/formats.md "Fast set"): the four graphs the
//! engine runs at [`Precision::Fast`](super::Precision::Fast), each either a lower-precision copy
//! of the exact graph or the exact graph itself. There is one set per kind of place the graphs
//! run ([`FastTarget`]): what is fast on one is slow on the other (int8 on the CPU, float16 on a
//! GPU; ONNX Runtime's CPU provider runs float16 slower than float32).
//!
//! The set has its own small manifest instead of an entry in `manifest.json`, so that adding it
//! (`bundle/exporter/py fast`) leaves the exact model byte for byte as it was: the reference traces
//! and track caches that name the model by its manifest's hash stay valid, and a set can be added
//! to a model directory made elsewhere (a checkpoint's, a shipped one). It names the manifest it
//! was made from by hash, so a set left behind by an earlier export is refused rather than run
//! with other weights. Its graphs must declare exactly the inputs and outputs `manifest.json`
//! gives the exact ones: the engine feeds both alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{FileEntry, GraphName};
use super::{ModelDir, inside, is_sha256_hex, sha256_hex, verify_file};
use crate::error::{Error, FileKind, Result};
use crate::exchange::Envelope;

/// The CPU set's manifest, relative to the model directory.
pub const FAST_SET_MANIFEST: &str = "fast/manifest.json";
/// The GPU set's manifest, relative to the model directory.
pub const GPU_FAST_SET_MANIFEST: &str = "fast-gpu/manifest.json";

/// Where a fast set is meant to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FastTarget {
    /// ONNX Runtime's CPU provider: `fast/`, int8 MatMuls in the image encoder.
    Cpu,
    /// A GPU provider: `fast-gpu/`, float16 graphs (the memory encoder exact).
    Gpu,
}

impl FastTarget {
    /// The set's manifest, relative to the model directory.
    pub fn manifest(self) -> &'static str {
        match self {
            FastTarget::Cpu => FAST_SET_MANIFEST,
            FastTarget::Gpu => GPU_FAST_SET_MANIFEST,
        }
    }

    /// Whether the model directory has this set (its manifest; [`FastSet::open`] checks the rest).
    pub fn is_in(self, model: &ModelDir) -> bool {
        model.path().join(self.manifest()).is_file()
    }
}

impl std::fmt::Display for FastTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FastTarget::Cpu => "CPU",
            FastTarget::Gpu => "GPU",
        })
    }
}
/// Its `format`.
pub const FAST_SET_FORMAT: &str = "sam2-rotoscope-fast-set";
/// The newest version this build reads.
pub const FAST_SET_VERSION: u64 = 1;

const ENVELOPE: Envelope = Envelope {
    kind: FileKind::FastSet,
    format: FAST_SET_FORMAT,
    version: FAST_SET_VERSION,
};

/// `fast/manifest.json`. Field names are the document's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FastManifest {
    pub format: String,
    pub version: u64,
    pub exporter_version: String,
    /// SHA-256 of the `manifest.json` whose graphs the set was made from.
    pub model_manifest_sha256: String,
    pub graphs: FastGraphs,
    /// The set's own files (those not already in `manifest.json`), by path relative to the
    /// model directory.
    pub files: BTreeMap<String, FileEntry>,
    /// How the exporter made the set (tool, versions, options); informative only.
    #[serde(default)]
    pub recipe: serde_json::Value,
}

/// The four graphs of the set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FastGraphs {
    pub image_encoder: FastGraph,
    pub mask_decoder: FastGraph,
    pub memory_encoder: FastGraph,
    pub memory_attention: FastGraph,
}

impl FastGraphs {
    /// One graph by name.
    pub fn get(&self, name: GraphName) -> &FastGraph {
        match name {
            GraphName::ImageEncoder => &self.image_encoder,
            GraphName::MaskDecoder => &self.mask_decoder,
            GraphName::MemoryEncoder => &self.memory_encoder,
            GraphName::MemoryAttention => &self.memory_attention,
        }
    }
}

/// One graph of the set: its file (relative to the model directory) and how it computes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastGraph {
    pub file: String,
    pub precision: GraphPrecision,
}

/// A graph's arithmetic; inputs and outputs are float32 whatever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphPrecision {
    /// The exact graph, unchanged.
    Fp32,
    /// Float16 weights and arithmetic.
    Fp16,
    /// ONNX Runtime dynamic quantization: int8 weights, activations quantized to uint8 per
    /// tensor at run time, int32 accumulation (`MatMulInteger`).
    Int8Dynamic,
}

impl GraphPrecision {
    /// The manifest's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphPrecision::Fp32 => "fp32",
            GraphPrecision::Fp16 => "fp16",
            GraphPrecision::Int8Dynamic => "int8_dynamic",
        }
    }
}

/// An opened, verified fast set.
#[derive(Debug, Clone, PartialEq)]
pub struct FastSet {
    target: FastTarget,
    manifest: FastManifest,
    sha256: String,
}

impl FastSet {
    /// Opens the `target` fast set of `model`: reads its manifest, checks that it was made from
    /// this very `manifest.json` and that its paths stay inside the directory, and verifies the
    /// size and SHA-256 of each of its files.
    pub fn open(model: &ModelDir, target: FastTarget) -> Result<FastSet> {
        let dir = model.path();
        let path = dir.join(target.manifest());
        if !path.is_file() {
            return Err(Error::FastSetMissing {
                dir: dir.to_path_buf(),
                set: target.manifest(),
            });
        }
        let (manifest, bytes) = ENVELOPE.read::<FastManifest>(&path)?;
        if !manifest
            .model_manifest_sha256
            .eq_ignore_ascii_case(model.manifest_sha256())
        {
            return Err(Error::FastSetStale {
                path,
                dir: dir.to_path_buf(),
            });
        }
        check(&manifest, model).map_err(|problem| Error::InvalidFastSet {
            path: path.clone(),
            dir: dir.to_path_buf(),
            problem,
        })?;
        for (name, entry) in &manifest.files {
            verify_file(&dir.join(name), entry)?;
        }
        Ok(FastSet {
            target,
            manifest,
            sha256: sha256_hex(&bytes),
        })
    }

    /// Where the set is meant to run.
    pub fn target(&self) -> FastTarget {
        self.target
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &FastManifest {
        &self.manifest
    }

    /// SHA-256 of `fast/manifest.json` as written, which lists the SHA-256 of each of its files:
    /// what a track cache records of the set.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The file of one graph, relative to the model directory.
    pub fn file(&self, name: GraphName) -> &str {
        &self.manifest.graphs.get(name).file
    }

    /// The graphs that differ from the exact ones, with their precision, for messages
    /// (`image_encoder int8_dynamic, memory_attention int8_dynamic`).
    pub fn summary(&self) -> String {
        let changed: Vec<String> = GraphName::ALL
            .into_iter()
            .filter_map(|name| {
                let graph = self.manifest.graphs.get(name);
                (graph.precision != GraphPrecision::Fp32)
                    .then(|| format!("{name} {}", graph.precision.as_str()))
            })
            .collect();
        if changed.is_empty() {
            "no graph changed".into()
        } else {
            changed.join(", ")
        }
    }
}

/// Everything about the set's manifest that can be checked without reading its graphs; the first
/// problem as a phrase.
fn check(manifest: &FastManifest, model: &ModelDir) -> std::result::Result<(), String> {
    let dir = model.path();
    for (name, entry) in &manifest.files {
        if inside(dir, name).is_none() {
            return Err(format!(
                "files lists \"{name}\", which is not a plain relative path inside the model directory"
            ));
        }
        if name == super::MANIFEST_FILE || name == FAST_SET_MANIFEST {
            return Err(format!("files lists \"{name}\", a manifest"));
        }
        if !is_sha256_hex(&entry.sha256) {
            return Err(format!(
                "files gives \"{}\" as the SHA-256 of \"{name}\", which is not 64 hexadecimal digits",
                entry.sha256
            ));
        }
    }
    for name in GraphName::ALL {
        let graph = manifest.graphs.get(name);
        let listed = manifest.files.contains_key(&graph.file)
            || model.manifest().files.contains_key(&graph.file);
        if !listed {
            return Err(format!(
                "graph {name} is in \"{}\", but neither this manifest nor manifest.json has a size and hash for it",
                graph.file
            ));
        }
        let exact = &model.manifest().graphs.get(name).file;
        if (graph.file == *exact) != (graph.precision == GraphPrecision::Fp32) {
            return Err(format!(
                "graph {name} is in \"{}\" with precision {}, but only the exact graph \"{exact}\" is fp32",
                graph.file,
                graph.precision.as_str()
            ));
        }
    }
    Ok(())
}

/// The path of one fast graph inside `dir` (checked by [`FastSet::open`]).
pub(crate) fn graph_path(dir: &Path, set: &FastSet, name: GraphName) -> PathBuf {
    dir.join(set.file(name))
}
