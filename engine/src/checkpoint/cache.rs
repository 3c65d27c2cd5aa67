//! The model directory built from a checkpoint, kept so that the second load is a plain open.
//!
//! The cache folder is `SAM2_CACHE_DIR`, else `$XDG_CACHE_HOME/sam2-rotoscope/checkpoints`, else
//! `~/.cache/sam2-rotoscope/checkpoints`. An entry is named by a key over the checkpoint's path,
//! size and modification time and the templates' hashes, so finding it reads no weights; its
//! manifest records the checkpoint's SHA-256. Entries are written under a temporary name and
//! renamed when complete: an interrupted build leaves no entry that looks finished.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::template::{self, Template, graph_data, npy_f32, weights_sha256};
use super::{Checkpoint, refused};
use crate::error::{Error, Result};
use crate::model::sha256_hex;

/// Where built models are kept.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SAM2_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sam2-rotoscope").join("checkpoints")
}

/// Template folders registered by the host of the engine (the plug-in registers its bundle's
/// `Contents/Resources/templates`: inside a compositor the running executable is the host's).
static REGISTERED_ROOTS: parking_lot::Mutex<Vec<PathBuf>> = parking_lot::Mutex::new(Vec::new());

/// Adds a folder of graph templates to those [`template_roots`] lists (first, in order added).
pub fn register_template_root(dir: impl Into<PathBuf>) {
    let dir = dir.into();
    let mut roots = REGISTERED_ROOTS.lock();
    if !roots.contains(&dir) {
        roots.push(dir);
    }
}

/// Where graph templates are looked for: folders given to [`register_template_root`], then
/// `SAM2_TEMPLATE_DIR`, then `templates/` and `../Resources/templates/` next to the running
/// executable, then this checkout's `bundle/templates` (development builds and tests).
pub fn template_roots() -> Vec<PathBuf> {
    let mut roots = REGISTERED_ROOTS.lock().clone();
    if let Some(dir) = std::env::var_os("SAM2_TEMPLATE_DIR").filter(|d| !d.is_empty()) {
        roots.push(PathBuf::from(dir));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        roots.push(exe_dir.join("templates"));
        roots.push(exe_dir.join("../Resources/templates"));
    }
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundle/templates"));
    roots
}

fn entry_key(checkpoint: &Path, templates: &[Template]) -> Result<String> {
    let meta = std::fs::metadata(checkpoint).map_err(|e| Error::io(checkpoint, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let canonical = std::fs::canonicalize(checkpoint).unwrap_or_else(|_| checkpoint.to_path_buf());
    let mut h = Sha256::new();
    h.update(canonical.to_string_lossy().as_bytes());
    h.update(meta.len().to_le_bytes());
    h.update(modified.to_le_bytes());
    for t in templates {
        h.update(t.sha256.as_bytes());
    }
    Ok(hex::encode(h.finalize()).chars().take(24).collect())
}

/// The model directory for the checkpoint at `path`: the cached one, or one built now from the
/// templates under `template_roots` in the cache under `cache_root`.
pub fn model_dir_for(
    path: &Path,
    template_roots: &[PathBuf],
    cache_root: &Path,
) -> Result<PathBuf> {
    let templates = template::discover(template_roots)?;
    let stem = path
        .file_stem()
        .map_or_else(|| "checkpoint".into(), |s| s.to_string_lossy().into_owned());
    let entry = cache_root.join(format!("{stem}-{}", entry_key(path, &templates)?));
    if entry.join("manifest.json").is_file() {
        return Ok(entry);
    }
    // Everything that can refuse the checkpoint runs before anything is written.
    let ckpt = Checkpoint::read(path)?;
    let template = template::recognise(&ckpt, &templates)?;
    let mut graphs = Vec::new();
    for (name, graph) in &template.file.graphs {
        graphs.push((
            name.clone(),
            graph.clone(),
            graph_data(&ckpt, graph, template)?,
        ));
    }
    let mut small = Vec::new();
    for (name, key) in &template.file.tensors {
        let t = ckpt.tensors.get(key).ok_or_else(|| {
            refused(
                path,
                format!(
                    "it has no {key}, which the {} template needs",
                    template.label()
                ),
            )
        })?;
        small.push((name.clone(), t.shape.clone(), npy_f32(&t.shape, &t.bytes)));
    }

    std::fs::create_dir_all(cache_root).map_err(|e| Error::io(cache_root, e))?;
    let tmp = cache_root.join(format!(
        ".building-{}-{}",
        entry
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_entry(&tmp, &ckpt, template, &graphs, &small);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match std::fs::rename(&tmp, &entry) {
        Ok(()) => Ok(entry),
        // Another process finished the same entry first: use it.
        Err(_) if entry.join("manifest.json").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(entry)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(Error::io(&entry, e))
        }
    }
}

type GraphFiles = [(String, template::GraphTemplate, Vec<u8>)];

fn write_entry(
    dir: &Path,
    ckpt: &Checkpoint,
    template: &Template,
    graphs: &GraphFiles,
    small: &[(String, Vec<usize>, Vec<u8>)],
) -> Result<()> {
    let write = |rel: &str,
                 bytes: &[u8],
                 files: &mut serde_json::Map<String, serde_json::Value>|
     -> Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
        files.insert(
            rel.to_string(),
            serde_json::json!({"sha256": sha256_hex(bytes), "bytes": bytes.len()}),
        );
        Ok(())
    };
    let mut files = serde_json::Map::new();
    for (_, graph, data) in graphs {
        let src = template.dir.join(&graph.file);
        let onnx = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
        write(&graph.file, &onnx, &mut files)?;
        write(&graph.data_file, data, &mut files)?;
    }
    let mut tensors = serde_json::Map::new();
    for (name, shape, npy) in small {
        let rel = format!("tensors/{name}.npy");
        write(&rel, npy, &mut files)?;
        tensors.insert(
            name.clone(),
            serde_json::json!({"file": rel, "dtype": "float32", "shape": shape}),
        );
    }
    let mut manifest = template.file.manifest.clone();
    let Some(m) = manifest.as_object_mut() else {
        return Err(Error::Checkpoint {
            path: template.dir.join(template::TEMPLATE_FILE),
            problem: "this graph template is damaged: its manifest is not an object".into(),
        });
    };
    let file_name = ckpt
        .path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    m.insert(
        "source".into(),
        serde_json::json!({"kind": "checkpoint", "file": file_name, "sha256": ckpt.sha256}),
    );
    m.insert("weights_sha256".into(), weights_sha256(ckpt).into());
    m.insert("tensors".into(), tensors.into());
    m.insert(
        "verification".into(),
        serde_json::json!({"built_from_template": template.label(), "template_sha256": template.sha256}),
    );
    m.insert("files".into(), files.into());
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal {
        message: format!("the manifest could not be written: {e}"),
    })?;
    let p = dir.join("manifest.json");
    std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
}
