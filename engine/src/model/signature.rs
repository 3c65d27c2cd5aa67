//! The interface of the four graphs as docs/formats.md fixes it, in terms of S, C and mem_dim.
//!
//! The engine's graph wrappers are written against these names and shapes. Checking a manifest
//! against them when a model is opened turns an exporter that drifted from the document into one
//! clear message at load time, instead of an ONNX Runtime shape error on the first tracked frame.

use super::manifest::{DType, Dim, GraphName, Manifest, ValueSpec, shape_string};

/// A dimension as the document states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocDim {
    /// A number fixed by the model (1, S, C, …); the manifest must give that number.
    Is(u64),
    /// A count that varies between runs (F, P, N); the manifest must give a symbolic name.
    Varies(&'static str),
}

/// One documented input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocValue {
    pub name: &'static str,
    pub dtype: DType,
    pub shape: Vec<DocDim>,
}

/// The documented inputs and outputs of one graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSignature {
    pub inputs: Vec<DocValue>,
    pub outputs: Vec<DocValue>,
}

fn value(name: &'static str, dtype: DType, shape: &[DocDim]) -> DocValue {
    DocValue {
        name,
        dtype,
        shape: shape.to_vec(),
    }
}

/// The documented signature of `graph` for a model with the manifest's S, C and mem_dim.
pub fn documented(graph: GraphName, manifest: &Manifest) -> DocSignature {
    use DType::{Bool, Float32, Int32, Int64};
    use DocDim::{Is, Varies};
    let s = u64::from(manifest.image_size);
    let c = u64::from(manifest.hidden_dim);
    let m = u64::from(manifest.mem_dim);
    let h = u64::from(manifest.feature_size());
    let feat = [Is(1), Is(c), Is(h), Is(h)];
    let mem = [Is(1), Is(m), Is(h), Is(h)];
    let low_res = [Is(1), Is(1), Is(4 * h), Is(4 * h)];
    let hr0 = [Is(1), Is(c / 8), Is(4 * h), Is(4 * h)];
    let hr1 = [Is(1), Is(c / 4), Is(2 * h), Is(2 * h)];
    match graph {
        GraphName::ImageEncoder => DocSignature {
            inputs: vec![value("image", Float32, &[Is(1), Is(3), Is(s), Is(s)])],
            outputs: vec![
                value("vision_features", Float32, &feat),
                value("vision_pos_enc", Float32, &feat),
                value("high_res_features_0", Float32, &hr0),
                value("high_res_features_1", Float32, &hr1),
            ],
        },
        GraphName::MemoryAttention => DocSignature {
            inputs: vec![
                value("current_features", Float32, &feat),
                value("current_pos_enc", Float32, &feat),
                value("memory", Float32, &[Varies("F"), Is(m), Is(h), Is(h)]),
                value("memory_pos_enc", Float32, &mem),
                value("memory_temporal_slot", Int64, &[Varies("F")]),
                value("object_pointers", Float32, &[Varies("P"), Is(c)]),
                value("object_pointer_positions", Float32, &[Varies("P")]),
            ],
            outputs: vec![value("conditioned_features", Float32, &feat)],
        },
        GraphName::MaskDecoder => DocSignature {
            inputs: vec![
                value("image_features", Float32, &feat),
                value("high_res_features_0", Float32, &hr0),
                value("high_res_features_1", Float32, &hr1),
                value("point_coords", Float32, &[Is(1), Varies("N"), Is(2)]),
                value("point_labels", Int32, &[Is(1), Varies("N")]),
                value("mask_input", Float32, &low_res),
                value("has_mask_input", Bool, &[Is(1)]),
                value("multimask_output", Bool, &[Is(1)]),
            ],
            outputs: vec![
                value("low_res_masks", Float32, &low_res),
                value("iou", Float32, &[Is(1), Is(1)]),
                value("object_pointer", Float32, &[Is(1), Is(c)]),
                value("object_score_logits", Float32, &[Is(1), Is(1)]),
                value(
                    "multimask_low_res_masks",
                    Float32,
                    &[Is(1), Is(3), Is(4 * h), Is(4 * h)],
                ),
                value("multimask_ious", Float32, &[Is(1), Is(3)]),
            ],
        },
        GraphName::MemoryEncoder => DocSignature {
            inputs: vec![
                value("vision_features", Float32, &feat),
                value("mask_logits", Float32, &low_res),
                value("object_score_logits", Float32, &[Is(1), Is(1)]),
                value("mask_from_points", Bool, &[Is(1)]),
            ],
            outputs: vec![
                value("memory_features", Float32, &mem),
                value("memory_pos_enc", Float32, &mem),
            ],
        },
    }
}

fn doc_shape_string(shape: &[DocDim]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| match d {
            DocDim::Is(n) => n.to_string(),
            DocDim::Varies(s) => format!("{s} (symbolic)"),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Compares one side (inputs or outputs) of a manifest graph with the document; returns the first
/// difference as a phrase for a message.
fn compare_side(side: &str, listed: &[ValueSpec], documented: &[DocValue]) -> Option<String> {
    for doc in documented {
        let Some(spec) = listed.iter().find(|v| v.name == doc.name) else {
            return Some(format!("it lists no {side} named \"{}\"", doc.name));
        };
        if spec.dtype != doc.dtype {
            return Some(format!(
                "its {side} \"{}\" is {} but must be {}",
                doc.name, spec.dtype, doc.dtype
            ));
        }
        let same_rank = spec.shape.len() == doc.shape.len();
        let dims_agree = spec
            .shape
            .iter()
            .zip(&doc.shape)
            .all(|(d, e)| match (d, e) {
                (Dim::Fixed(n), DocDim::Is(m)) => n == m,
                (Dim::Symbolic(_), DocDim::Varies(_)) => true,
                _ => false,
            });
        if !same_rank || !dims_agree {
            return Some(format!(
                "its {side} \"{}\" has shape {} but must have shape {}",
                doc.name,
                shape_string(&spec.shape),
                doc_shape_string(&doc.shape)
            ));
        }
    }
    listed
        .iter()
        .find(|v| !documented.iter().any(|d| d.name == v.name))
        .map(|extra| {
            format!(
                "it lists an {side} \"{}\" that the format does not define",
                extra.name
            )
        })
}

/// Checks the manifest's description of `graph` against the document; `Err` holds the difference
/// as a phrase ("graph mask_decoder: its input \"point_labels\" is int64 but must be int32").
pub fn check(graph: GraphName, manifest: &Manifest) -> Result<(), String> {
    let doc = documented(graph, manifest);
    let spec = manifest.graphs.get(graph);
    let problem = compare_side("input", &spec.inputs, &doc.inputs)
        .or_else(|| compare_side("output", &spec.outputs, &doc.outputs));
    match problem {
        None => Ok(()),
        Some(p) => Err(format!("graph {graph} ({}): {p}", spec.file)),
    }
}

/// The documented shape of each small tensor the engine applies itself, by name.
pub fn documented_tensors(manifest: &Manifest) -> [(&'static str, Vec<usize>); 4] {
    let c = manifest.hidden_dim as usize;
    [
        ("no_mem_embed", vec![1, 1, c]),
        ("no_obj_ptr", vec![1, c]),
        ("mask_downsample_weight", vec![1, 1, 4, 4]),
        ("mask_downsample_bias", vec![1]),
    ]
}
