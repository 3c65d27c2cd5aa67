//! Graph templates (bundle/templates/<family>-<size>/): the exporter's four graphs with their
//! weights moved to external data files, and the map from each of those weights to checkpoint
//! tensors (`bundle/exporter/sam2export/template.py` makes and checks them).
//!
//! Filling a template writes exactly the bytes the exporter would have embedded, so a model
//! directory built here runs the same graph on the same weights as the exporter's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Checkpoint, CheckpointTensor};
use crate::error::{Error, Result};

pub const TEMPLATE_FORMAT: &str = "sam2-rotoscope-template";
pub const TEMPLATE_VERSION: u64 = 1;
pub const TEMPLATE_FILE: &str = "template.json";

/// How a checkpoint tensor is laid into an initializer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    Identity,
    /// A 2-D tensor, transposed (a Linear weight the exporter folded into a MatMul).
    Transpose,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    pub key: String,
    pub transform: Transform,
}

/// One weight of a graph: where it lies in the graph's data file, and what fills it.
#[derive(Debug, Clone, Deserialize)]
pub struct Initializer {
    pub name: String,
    pub offset: u64,
    pub bytes: u64,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GraphTemplate {
    pub file: String,
    pub data_file: String,
    pub data_bytes: u64,
    pub initializers: Vec<Initializer>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeySpec {
    pub dtype: String,
    pub shape: Vec<usize>,
}

/// `template.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct TemplateFile {
    pub format: String,
    pub version: u64,
    pub family: String,
    pub size: String,
    /// Every tensor of the architecture's state dict: a checkpoint fits when it has exactly these.
    pub checkpoint_keys: BTreeMap<String, KeySpec>,
    pub graphs: BTreeMap<String, GraphTemplate>,
    /// Small tensor of the model directory → checkpoint key.
    pub tensors: BTreeMap<String, String>,
    /// The manifest without what depends on the weights (source, hashes, files).
    pub manifest: serde_json::Value,
}

/// A template folder, read.
#[derive(Debug, Clone)]
pub struct Template {
    pub dir: PathBuf,
    pub file: TemplateFile,
    /// SHA-256 of template.json, part of the cache key.
    pub sha256: String,
}

impl Template {
    pub fn read(dir: &Path) -> Result<Template> {
        let path = dir.join(TEMPLATE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let file: TemplateFile = serde_json::from_slice(&bytes).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            problem: format!("this graph template cannot be parsed ({e})"),
        })?;
        if file.format != TEMPLATE_FORMAT || file.version != TEMPLATE_VERSION {
            return Err(Error::Checkpoint {
                path,
                problem: format!(
                    "this graph template is {} version {}, and this build reads {TEMPLATE_FORMAT} version {TEMPLATE_VERSION}",
                    file.format, file.version
                ),
            });
        }
        Ok(Template {
            dir: dir.to_path_buf(),
            file,
            sha256: crate::model::sha256_hex(&bytes),
        })
    }

    /// `family-size`, as the folder is named.
    pub fn label(&self) -> String {
        format!("{}-{}", self.file.family, self.file.size)
    }

    /// Whether the checkpoint's tensors are exactly this architecture's, by name and shape.
    pub fn fits(&self, ckpt: &Checkpoint) -> bool {
        ckpt.tensors.len() == self.file.checkpoint_keys.len()
            && self.file.checkpoint_keys.iter().all(|(k, spec)| {
                spec.dtype == "float32"
                    && ckpt.tensors.get(k).is_some_and(|t| t.shape == spec.shape)
            })
    }
}

/// Every template under `roots` (each a folder of template folders), in name order.
pub fn discover(roots: &[PathBuf]) -> Result<Vec<Template>> {
    let mut found = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(TEMPLATE_FILE).is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            found.push(Template::read(&dir)?);
        }
    }
    Ok(found)
}

/// The template the checkpoint fits, or a sentence saying why none does.
pub fn recognise<'t>(ckpt: &Checkpoint, templates: &'t [Template]) -> Result<&'t Template> {
    if let Some(t) = templates.iter().find(|t| t.fits(ckpt)) {
        return Ok(t);
    }
    let refuse = |problem: String| Error::Checkpoint {
        path: ckpt.path.clone(),
        problem,
    };
    let sam2 = ckpt
        .tensors
        .contains_key("image_encoder.trunk.patch_embed.proj.weight")
        && ckpt
            .tensors
            .contains_key("sam_mask_decoder.iou_token.weight");
    if !sam2 {
        return Err(refuse(
            "it is not a SAM 2 checkpoint (it has no Hiera image encoder and SAM mask decoder weights)".into(),
        ));
    }
    let width = ckpt
        .tensors
        .get("image_encoder.trunk.patch_embed.proj.weight")
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(0);
    let blocks = ckpt
        .tensors
        .keys()
        .filter_map(|k| k.strip_prefix("image_encoder.trunk.blocks."))
        .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |b| b + 1);
    let family = if ckpt.tensors.contains_key("no_obj_embed_spatial") {
        "SAM 2.1"
    } else {
        "SAM 2"
    };
    let known: Vec<String> = templates.iter().map(Template::label).collect();
    Err(refuse(format!(
        "it is a {family} checkpoint of a size no graph template fits (Hiera width {width}, {blocks} blocks); templates found: {}",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )))
}

fn laid_out(t: &CheckpointTensor, transform: Transform) -> Option<Vec<u8>> {
    match transform {
        Transform::Identity => Some(t.bytes.clone()),
        Transform::Transpose => {
            let [rows, cols] = t.shape.as_slice() else {
                return None;
            };
            let (rows, cols) = (*rows, *cols);
            let mut out = vec![0u8; t.bytes.len()];
            for (r, row) in t.bytes.chunks_exact(cols * 4).enumerate() {
                for (c, value) in row.chunks_exact(4).enumerate() {
                    let at = (c * rows + r) * 4;
                    out.get_mut(at..at + 4)?.copy_from_slice(value);
                }
            }
            Some(out)
        }
    }
}

/// The data file of one graph, filled from the checkpoint.
pub fn graph_data(
    ckpt: &Checkpoint,
    graph: &GraphTemplate,
    template: &Template,
) -> Result<Vec<u8>> {
    let broken = |what: String| Error::Checkpoint {
        path: template.dir.join(TEMPLATE_FILE),
        problem: format!("this graph template is damaged: {what}"),
    };
    let size =
        usize::try_from(graph.data_bytes).map_err(|_| broken("a data file too large".into()))?;
    let mut data = vec![0u8; size];
    for init in &graph.initializers {
        let mut bytes = Vec::with_capacity(usize::try_from(init.bytes).unwrap_or(0));
        for part in &init.parts {
            let t = ckpt.tensors.get(&part.key).ok_or_else(|| {
                broken(format!(
                    "{} needs {}, which is not in the checkpoint",
                    init.name, part.key
                ))
            })?;
            let b = laid_out(t, part.transform).ok_or_else(|| {
                broken(format!(
                    "{} transposes {}, which is not 2-D",
                    init.name, part.key
                ))
            })?;
            bytes.extend_from_slice(&b);
        }
        let start = usize::try_from(init.offset).unwrap_or(usize::MAX);
        let slot = start
            .checked_add(bytes.len())
            .filter(|_| bytes.len() as u64 == init.bytes)
            .and_then(|end| data.get_mut(start..end))
            .ok_or_else(|| {
                broken(format!(
                    "{} does not fit its place in {}",
                    init.name, graph.data_file
                ))
            })?;
        slot.copy_from_slice(&bytes);
    }
    Ok(data)
}

/// `model.state_dict()` hashed as the exporter's `weights_sha256` does: by sorted name, each
/// name, `torch.float32`, the shape as a Python tuple, and the bytes.
pub fn weights_sha256(ckpt: &Checkpoint) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, t) in &ckpt.tensors {
        h.update(name.as_bytes());
        h.update(b"torch.float32");
        h.update(python_tuple(&t.shape).as_bytes());
        h.update(&t.bytes);
    }
    hex::encode(h.finalize())
}

/// `str(tuple(shape))`: `()`, `(3,)`, `(1, 2)`.
pub fn python_tuple(shape: &[usize]) -> String {
    match shape {
        [] => "()".into(),
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A float32 `.npy` file byte for byte as `numpy.save` writes it (format 1.0).
pub fn npy_f32(shape: &[usize], bytes: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}",
        python_tuple(shape)
    );
    // Room for the first axis to grow to 21 digits, as numpy leaves, then padding to 64 bytes.
    if let Some(first) = shape.first() {
        header.push_str(&" ".repeat(21usize.saturating_sub(first.to_string().len())));
    }
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(64 - unpadded % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_print_as_python_tuples() {
        assert_eq!(python_tuple(&[]), "()");
        assert_eq!(python_tuple(&[3]), "(3,)");
        assert_eq!(python_tuple(&[1, 1, 64]), "(1, 1, 64)");
    }

    #[test]
    fn npy_header_is_numpys() {
        let npy = npy_f32(&[1], &1.0f32.to_le_bytes());
        // numpy 2.4: np.save(f, np.ones(1, np.float32)) is 132 bytes.
        assert_eq!(npy.len(), 128 + 4);
        assert!(npy.starts_with(
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }   "
        ));
        assert_eq!(npy[127], b'\n');
    }

    #[test]
    fn transpose_lays_columns_as_rows() {
        let t = CheckpointTensor {
            shape: vec![2, 3],
            bytes: [1f32, 2., 3., 4., 5., 6.]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        };
        let out = laid_out(&t, Transform::Transpose).unwrap();
        let values: Vec<f32> = out
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(values, [1., 4., 2., 5., 3., 6.]);
    }
}
