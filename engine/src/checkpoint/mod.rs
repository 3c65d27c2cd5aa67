//! Official SAM 2 / SAM 2.1 checkpoints (`sam2.1_hiera_tiny.pt`, …) opened without Python.
//!
//! A checkpoint is PyTorch's zip archive: `<name>/data.pkl` (a pickle of `{"model": state_dict}`)
//! and one file per storage, `<name>/data/<key>`. [`Checkpoint::read`] reads it whole, refusing
//! anything that is not a state dict of float32 tensors with a sentence. [`template`] recognises
//! the architecture from the tensors' names and shapes and fills the exporter's weight-free graph
//! templates with them; [`cache`] keeps the result as an ordinary model directory, so the second
//! load opens it directly.

pub mod cache;
pub mod pickle;
pub mod template;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use pickle::{StorageDtype, TensorRef, Value};

/// One float32 tensor of the state dict, contiguous, little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointTensor {
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// The state dict of a checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    /// SHA-256 of the file, recorded in the manifest built from it.
    pub sha256: String,
    pub tensors: BTreeMap<String, CheckpointTensor>,
}

fn refused(path: &Path, problem: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// True when `path` looks like a checkpoint file rather than a model directory or its manifest:
/// a file whose name ends in `.pt`, `.pth` or `.ckpt`.
pub fn is_checkpoint_path(path: &Path) -> bool {
    path.is_file()
        && path.extension().is_some_and(|e| {
            let e = e.to_string_lossy().to_ascii_lowercase();
            e == "pt" || e == "pth" || e == "ckpt"
        })
}

impl Checkpoint {
    /// Reads the whole checkpoint at `path`.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if !bytes.starts_with(b"PK") {
            return Err(refused(
                path,
                "it is not a PyTorch zip archive (checkpoints from PyTorch 1.6 or later are; an older or non-PyTorch file cannot be read)",
            ));
        }
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..])).map_err(|e| {
            refused(
                path,
                format!("its zip archive is truncated or damaged ({e})"),
            )
        })?;
        let pickle_name = (0..zip.len())
            .filter_map(|i| zip.name_for_index(i).map(str::to_string))
            .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
            .ok_or_else(|| {
                refused(
                    path,
                    "it is a zip archive without data.pkl, so not a PyTorch checkpoint",
                )
            })?;
        let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
        let mut entry = |name: &str| -> Result<Vec<u8>> {
            let mut f = zip.by_name(name).map_err(|e| {
                refused(path, format!("its archive entry {name} cannot be read ({e}); the file is truncated or damaged"))
            })?;
            let mut out = Vec::with_capacity(usize::try_from(f.size()).unwrap_or(0));
            f.read_to_end(&mut out).map_err(|e| {
                refused(path, format!("its archive entry {name} cannot be read ({e}); the file is truncated or damaged"))
            })?;
            Ok(out)
        };
        if entry(&format!("{prefix}byteorder")).is_ok_and(|order| order != b"little") {
            return Err(refused(path, "it was saved on a big-endian machine"));
        }
        let pkl = entry(&pickle_name)?;
        let value = pickle::parse(&pkl).map_err(|r| {
            refused(
                path,
                format!("its data.pkl is not a PyTorch state dict: {}", r.0),
            )
        })?;
        let state = state_dict(value).ok_or_else(|| {
            refused(
                path,
                "it holds no state dict (a dict of tensors, or one under the key \"model\")",
            )
        })?;
        let mut storages: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut tensors = BTreeMap::new();
        for (name, t) in state {
            if t.dtype != StorageDtype::Float32 {
                return Err(refused(
                    path,
                    format!(
                        "its tensor {name} is {}; official SAM 2 checkpoints are float32",
                        t.dtype.name()
                    ),
                ));
            }
            if !storages.contains_key(&t.storage) {
                let data = entry(&format!("{prefix}data/{}", t.storage))?;
                storages.insert(t.storage.clone(), data);
            }
            let storage = storages
                .get(&t.storage)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let bytes = gather_f32(storage, &t).ok_or_else(|| {
                refused(path, format!("its tensor {name} reaches past the end of its storage; the file is truncated or damaged"))
            })?;
            tensors.insert(
                name,
                CheckpointTensor {
                    shape: t.shape,
                    bytes,
                },
            );
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            sha256,
            tensors,
        })
    }
}

/// The (name, tensor) pairs of the state dict: the top-level dict, or the dict under "model".
fn state_dict(value: Value) -> Option<Vec<(String, TensorRef)>> {
    let Value::Dict(items) = value else {
        return None;
    };
    let model = items.iter().find_map(|(k, v)| match (k, v) {
        (Value::Str(k), Value::Dict(d)) if k == "model" => Some(d.clone()),
        _ => None,
    });
    let items = model.unwrap_or(items);
    items
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Some((k, t)),
            _ => None,
        })
        .collect()
}

/// The tensor's elements in row-major order, following its strides through the storage.
fn gather_f32(storage: &[u8], t: &TensorRef) -> Option<Vec<u8>> {
    let numel: usize = t.shape.iter().product();
    let mut out = Vec::with_capacity(numel * 4);
    if numel == 0 {
        return Some(out);
    }
    let contiguous = {
        let mut expect = 1;
        let mut ok = true;
        for (d, s) in t.shape.iter().zip(&t.stride).rev() {
            if *d != 1 && *s != expect {
                ok = false;
            }
            expect *= d;
        }
        ok
    };
    if contiguous {
        let start = t.offset.checked_mul(4)?;
        let end = start.checked_add(numel.checked_mul(4)?)?;
        out.extend_from_slice(storage.get(start..end)?);
        return Some(out);
    }
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let e = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.extend_from_slice(storage.get(e * 4..e * 4 + 4)?);
        for (i, d) in index.iter_mut().zip(&t.shape).rev() {
            *i += 1;
            if *i < *d {
                break;
            }
            *i = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn a_strided_view_is_gathered_in_row_major_order() {
        // A 2×3 storage seen transposed (3×2, strides 1, 3) from offset 0.
        let s = storage(&[1., 2., 3., 4., 5., 6.]);
        let t = TensorRef {
            storage: "0".into(),
            dtype: StorageDtype::Float32,
            offset: 0,
            shape: vec![3, 2],
            stride: vec![1, 3],
        };
        assert_eq!(
            gather_f32(&s, &t).unwrap(),
            storage(&[1., 4., 2., 5., 3., 6.])
        );
    }

    #[test]
    fn a_view_past_its_storage_is_refused() {
        let s = storage(&[1., 2.]);
        let t = TensorRef {
            storage: "0".into(),
            dtype: StorageDtype::Float32,
            offset: 1,
            shape: vec![2],
            stride: vec![1],
        };
        assert_eq!(gather_f32(&s, &t), None);
    }
}
