//! A model directory (docs/formats.md): its manifest, its files checked against their hashes, its
//! small tensors, and — as a separate step — its four ONNX Runtime sessions.
//!
//! Opening and loading sessions are two steps so that a model can be checked (a CLI `check`, a
//! test, a host's "validate model" button) without ONNX Runtime, and so that a broken copy is
//! reported as a broken file rather than as whatever ONNX Runtime makes of truncated protobuf.

mod built_graphs;
pub mod device;
pub mod fast_set;
pub mod graph_tensor;
pub(crate) mod io;
pub mod library;
pub mod manifest;
pub mod precision;
pub mod runtime;
mod shared;
pub mod signature;

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use ndarray::{Array1, Array2, Array3, Array4, ArrayD, Ix1, Ix2, Ix3, Ix4};
use ndarray_npy::ReadNpyExt;
use sha2::{Digest, Sha256};

pub use self::device::{Device, Provider};
pub use self::fast_set::{FastSet, FastTarget};
pub use self::graph_tensor::{GraphTensor, Traffic};
pub use self::io::MAX_OBJECTS_PER_RUN;
pub use self::manifest::{GraphName, Manifest};
pub use self::precision::Precision;
pub use self::runtime::{Graph, Runtime};
pub use self::shared::{Geometry, GraphTime, GraphTimes, Model};
pub use self::signature::ObjectBatching;
use crate::error::{Error, Result};

/// The manifest's file name inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// An opened, verified model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    dir: PathBuf,
    manifest: Manifest,
    manifest_sha256: String,
    tensors: ModelTensors,
    batching: ObjectBatching,
}

/// The small constant tensors the engine applies itself (docs/formats.md, "Tensors").
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTensors {
    /// `[1, 1, C]`: added to `vision_features` on an initial conditioning frame.
    pub no_mem_embed: Array3<f32>,
    /// `[1, C]`: the pointer of an absent object.
    pub no_obj_ptr: Array2<f32>,
    /// `[1, 1, 4, 4]`: the stride-4 convolution that brings a mask prompt to decoder resolution.
    pub mask_downsample_weight: Array4<f32>,
    /// `[1]`.
    pub mask_downsample_bias: Array1<f32>,
}

/// The four sessions of a model, each checked against the manifest.
#[derive(Debug)]
pub struct ModelSessions {
    pub image_encoder: Graph,
    pub memory_attention: Graph,
    pub mask_decoder: Graph,
    pub memory_encoder: Graph,
}

impl ModelSessions {
    /// One graph by name, for code that loops over all four.
    pub fn get_mut(&mut self, name: GraphName) -> &mut Graph {
        match name {
            GraphName::ImageEncoder => &mut self.image_encoder,
            GraphName::MemoryAttention => &mut self.memory_attention,
            GraphName::MaskDecoder => &mut self.mask_decoder,
            GraphName::MemoryEncoder => &mut self.memory_encoder,
        }
    }

    /// The provider each graph prefers ([`Graph::provider`]), to show the user where the model runs.
    pub fn providers(&self) -> Vec<(GraphName, Provider)> {
        [
            &self.image_encoder,
            &self.memory_attention,
            &self.mask_decoder,
            &self.memory_encoder,
        ]
        .into_iter()
        .map(|graph| (graph.name(), graph.provider()))
        .collect()
    }
}

/// Resolves a path from the manifest against the directory, refusing anything that would leave
/// it: a model directory is copied and shipped as a unit, so every file must be inside it.
fn inside(dir: &Path, relative: &str) -> Option<PathBuf> {
    let rel = Path::new(relative);
    let plain = !relative.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then(|| dir.join(rel))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Everything about the manifest that can be checked without reading other files; the first
/// problem as a phrase. On success, the form in which the graphs take objects.
fn check_manifest(manifest: &Manifest, dir: &Path) -> std::result::Result<ObjectBatching, String> {
    let m = manifest;
    if m.backbone_stride == 0
        || m.image_size == 0
        || !m.image_size.is_multiple_of(m.backbone_stride)
    {
        return Err(format!(
            "image_size {} is not a positive multiple of backbone_stride {}",
            m.image_size, m.backbone_stride
        ));
    }
    // Far above any SAM 2 config (1024 and 256); bounds every size derived from them.
    if m.image_size > 8192 || m.hidden_dim > 8192 {
        return Err(format!(
            "image_size {} or hidden_dim {} is larger than 8192, which no SAM 2 model uses",
            m.image_size, m.hidden_dim
        ));
    }
    if m.hidden_dim == 0 || !m.hidden_dim.is_multiple_of(8) {
        return Err(format!(
            "hidden_dim {} is not a positive multiple of 8 (the high-resolution features have C/8 channels)",
            m.hidden_dim
        ));
    }
    if m.mem_dim == 0 || !m.hidden_dim.is_multiple_of(m.mem_dim) {
        return Err(format!(
            "hidden_dim {} is not a multiple of mem_dim {} (each object pointer is split into C/mem_dim tokens)",
            m.hidden_dim, m.mem_dim
        ));
    }
    if let Some(std) = m.image_std.iter().find(|s| !s.is_finite() || **s <= 0.0) {
        return Err(format!(
            "image_std holds {std}, which is not a positive number"
        ));
    }
    for (name, entry) in &m.files {
        if inside(dir, name).is_none() {
            return Err(format!(
                "files lists \"{name}\", which is not a plain relative path inside the model directory"
            ));
        }
        if !is_sha256_hex(&entry.sha256) {
            return Err(format!(
                "files gives \"{}\" as the SHA-256 of \"{name}\", which is not 64 hexadecimal digits",
                entry.sha256
            ));
        }
    }
    for graph in GraphName::ALL {
        let file = &m.graphs.get(graph).file;
        if !m.files.contains_key(file) {
            return Err(format!(
                "graph {graph} is in \"{file}\", but files has no size and hash for it"
            ));
        }
    }
    let batching = signature::check(m)?;
    for (name, shape) in signature::documented_tensors(m) {
        let Some(spec) = m.tensors.get(name) else {
            return Err(format!("tensors has no entry \"{name}\""));
        };
        if spec.dtype != manifest::DType::Float32 {
            return Err(format!(
                "tensor {name} is {} but must be float32",
                spec.dtype
            ));
        }
        if spec.shape != shape {
            return Err(format!(
                "tensor {name} has shape {:?} but must have shape {shape:?}",
                spec.shape
            ));
        }
    }
    for (name, spec) in &m.tensors {
        if !m.files.contains_key(&spec.file) {
            return Err(format!(
                "tensor {name} is in \"{}\", but files has no size and hash for it",
                spec.file
            ));
        }
    }
    Ok(batching)
}

/// Checks one file's size and SHA-256 against its manifest entry.
fn verify_file(path: &Path, entry: &manifest::FileEntry) -> Result<()> {
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::ModelFileMissing {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let found = metadata.len();
    if found < entry.bytes {
        return Err(Error::ModelFileTruncated {
            path: path.to_path_buf(),
            expected: entry.bytes,
            found,
        });
    }
    if found != entry.bytes {
        return Err(Error::ModelFileSize {
            path: path.to_path_buf(),
            expected: entry.bytes,
            found,
        });
    }
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        let chunk = buffer.get(..n).ok_or_else(|| Error::Internal {
            message: format!(
                "a read of {} returned more bytes than asked for",
                path.display()
            ),
        })?;
        hasher.update(chunk);
    }
    let actual = hex::encode(hasher.finalize());
    if !actual.eq_ignore_ascii_case(&entry.sha256) {
        return Err(Error::ModelFileHash {
            path: path.to_path_buf(),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// SHA-256 of a byte string as lowercase hex; traces name their model by the manifest's hash.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ModelDir {
    /// Opens the model directory at `path` (or the directory of `path` if it names the manifest):
    /// reads and checks the manifest, verifies the size and SHA-256 of every listed file, and
    /// loads the small tensors.
    ///
    /// `path` may also be an official checkpoint file (`sam2.1_hiera_tiny.pt`): the model
    /// directory built from it with the bundled graph templates is opened instead, built first
    /// when the cache has none (see [`crate::checkpoint`]).
    pub fn open(path: impl AsRef<Path>) -> Result<ModelDir> {
        let path = path.as_ref();
        if crate::checkpoint::is_checkpoint_path(path) {
            return ModelDir::open_in(
                path,
                &crate::checkpoint::cache::template_roots(),
                &crate::checkpoint::cache::cache_root(),
            );
        }
        ModelDir::open_dir(path)
    }

    /// [`ModelDir::open`] with the graph templates looked for under `template_roots` and a
    /// checkpoint's model directory kept under `cache_root` (for a host that ships templates
    /// elsewhere, and for tests).
    pub fn open_in(
        path: impl AsRef<Path>,
        template_roots: &[PathBuf],
        cache_root: &Path,
    ) -> Result<ModelDir> {
        let path = path.as_ref();
        if crate::checkpoint::is_checkpoint_path(path) {
            let dir = crate::checkpoint::cache::model_dir_for(path, template_roots, cache_root)?;
            return ModelDir::open_dir(&dir);
        }
        ModelDir::open_dir(path)
    }

    fn open_dir(path: &Path) -> Result<ModelDir> {
        let dir = if path.file_name().is_some_and(|n| n == MANIFEST_FILE) && path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            path.to_path_buf()
        };
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.is_file() {
            return Err(Error::ManifestMissing { dir });
        }
        let (manifest, bytes) = manifest::ENVELOPE.read::<Manifest>(&manifest_path)?;
        let batching =
            check_manifest(&manifest, &dir).map_err(|problem| Error::InvalidManifest {
                path: manifest_path.clone(),
                problem,
            })?;
        if let Some(unsupported) = manifest.unsupported_behaviour() {
            return Err(Error::UnsupportedBehaviour {
                path: manifest_path,
                setting: unsupported.setting,
                found: unsupported.found,
                reason: unsupported.reason,
            });
        }
        for (name, entry) in &manifest.files {
            // `check_manifest` refused paths that leave the directory.
            let file = dir.join(name);
            verify_file(&file, entry)?;
        }
        let tensors = load_tensors(&manifest, &dir)?;
        Ok(ModelDir {
            dir,
            manifest,
            manifest_sha256: sha256_hex(&bytes),
            tensors,
            batching,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// How the per-object graphs take objects (all of a frame's in one run, or one at a time).
    pub fn object_batching(&self) -> ObjectBatching {
        self.batching
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of `manifest.json` as written; a reference trace names its model by it.
    pub fn manifest_sha256(&self) -> &str {
        &self.manifest_sha256
    }

    /// The small tensors.
    pub fn tensors(&self) -> &ModelTensors {
        &self.tensors
    }

    /// The file of one graph.
    pub fn graph_path(&self, name: GraphName) -> PathBuf {
        self.dir.join(&self.manifest.graphs.get(name).file)
    }

    /// Creates the four sessions and checks each graph's inputs and outputs against the manifest.
    pub fn load_sessions(&self, runtime: &Runtime) -> Result<ModelSessions> {
        self.load_sessions_of(runtime, &GraphSet::Exact)
    }

    /// [`ModelDir::load_sessions`] for the graphs of `set`, which declare the same inputs and
    /// outputs as the exact ones.
    pub fn load_sessions_of(&self, runtime: &Runtime, set: &GraphSet) -> Result<ModelSessions> {
        let load = |name: GraphName| {
            let path = match set {
                GraphSet::Exact => self.graph_path(name),
                GraphSet::Fast(fast) => fast_set::graph_path(&self.dir, fast, name),
            };
            runtime.session(name, &path, self.manifest.graphs.get(name))
        };
        Ok(ModelSessions {
            image_encoder: load(GraphName::ImageEncoder)?,
            memory_attention: load(GraphName::MemoryAttention)?,
            mask_decoder: load(GraphName::MaskDecoder)?,
            memory_encoder: load(GraphName::MemoryEncoder)?,
        })
    }
}

/// The graph files a model is loaded from ([`ModelDir::graph_set`]).
#[derive(Debug, Clone, PartialEq)]
pub enum GraphSet {
    /// The graphs `manifest.json` lists.
    Exact,
    /// The fast set beside them.
    Fast(Box<FastSet>),
}

impl GraphSet {
    /// The precision this set is loaded for.
    pub fn precision(&self) -> Precision {
        match self {
            GraphSet::Exact => Precision::Exact,
            GraphSet::Fast(_) => Precision::Fast,
        }
    }

    /// The fast set, when this is one.
    pub fn fast(&self) -> Option<&FastSet> {
        match self {
            GraphSet::Exact => None,
            GraphSet::Fast(set) => Some(set.as_ref()),
        }
    }
}

fn read_tensor(dir: &Path, manifest: &Manifest, name: &str) -> Result<(PathBuf, ArrayD<f32>)> {
    let manifest_path = dir.join(MANIFEST_FILE);
    // `check_manifest` made sure the entry exists and its path stays inside the directory.
    let spec = manifest
        .tensors
        .get(name)
        .ok_or_else(|| Error::InvalidManifest {
            path: manifest_path.clone(),
            problem: format!("tensors has no entry \"{name}\""),
        })?;
    let path = dir.join(&spec.file);
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let array =
        ArrayD::<f32>::read_npy(std::io::BufReader::new(file)).map_err(|e| Error::TensorRead {
            path: path.clone(),
            message: e.to_string(),
        })?;
    if array.shape() != spec.shape.as_slice() {
        return Err(Error::TensorShape {
            path,
            name: name.to_string(),
            expected: spec.shape.clone(),
            found: array.shape().to_vec(),
        });
    }
    Ok((path, array))
}

fn load_tensors(manifest: &Manifest, dir: &Path) -> Result<ModelTensors> {
    // The shapes were compared with the manifest, and the manifest's with the document, so the
    // conversions below cannot fail; they still return errors rather than panic.
    fn fixed<D: ndarray::Dimension>(
        (path, array): (PathBuf, ArrayD<f32>),
    ) -> Result<ndarray::Array<f32, D>> {
        array
            .into_dimensionality::<D>()
            .map_err(|e| Error::TensorRead {
                path,
                message: e.to_string(),
            })
    }
    Ok(ModelTensors {
        no_mem_embed: fixed::<Ix3>(read_tensor(dir, manifest, "no_mem_embed")?)?,
        no_obj_ptr: fixed::<Ix2>(read_tensor(dir, manifest, "no_obj_ptr")?)?,
        mask_downsample_weight: fixed::<Ix4>(read_tensor(
            dir,
            manifest,
            "mask_downsample_weight",
        )?)?,
        mask_downsample_bias: fixed::<Ix1>(read_tensor(dir, manifest, "mask_downsample_bias")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_stay_inside_the_directory() {
        let dir = Path::new("/m");
        assert_eq!(
            inside(dir, "tensors/a.npy"),
            Some(PathBuf::from("/m/tensors/a.npy"))
        );
        for bad in [
            "",
            "../a.onnx",
            "/etc/passwd",
            "tensors/../../a",
            "./a.onnx",
        ] {
            assert_eq!(inside(dir, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sha256_is_64_hex_digits() {
        assert!(is_sha256_hex(&sha256_hex(b"")));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!is_sha256_hex("abc"));
        assert!(!is_sha256_hex(&"g".repeat(64)));
    }

    #[test]
    fn missing_directory_says_where_the_manifest_was_expected() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ModelDir::open(tmp.path()).map(|_| ());
        let Err(err @ Error::ManifestMissing { .. }) = err else {
            panic!("expected ManifestMissing, got {err:?}");
        };
        assert!(
            err.to_string().contains(&tmp.path().display().to_string()),
            "{err}"
        );
    }
}
