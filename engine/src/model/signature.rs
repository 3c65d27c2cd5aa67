//! The interface of the four graphs as docs/formats.md fixes it, in terms of S, C and mem_dim.
//!
//! The engine's graph wrappers are written against these names and shapes. Checking a manifest
//! against them when a model is opened turns an exporter that drifted from the document into one
//! clear message at load time, instead of an ONNX Runtime shape error on the first tracked frame.

use super::manifest::{DType, Dim, GraphName, Manifest, ValueSpec, shape_string};

/// How the per-object graphs (memory attention, mask decoder, memory encoder) take objects.
///
/// Exporter 0.3.0 added a symbolic `objects` dimension so that every object tracked on a frame
/// goes through each graph in one run (on a GPU, one launch of every kernel instead of one per
/// object). Model directories exported before keep working, one object per run: their outputs
/// are the same, only slower with many objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectBatching {
    /// The `objects` dimension: any number of objects per run.
    Batched,
    /// Exported before 0.3.0: a batch of exactly one object.
    OneAtATime,
}

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

/// The documented signature of `graph` in the `batching` form for a model with the manifest's S, C
/// and mem_dim.
pub fn documented(graph: GraphName, manifest: &Manifest, batching: ObjectBatching) -> DocSignature {
    use DType::{Bool, Float32, Int32, Int64};
    use DocDim::{Is, Varies};
    let s = u64::from(manifest.image_size);
    let c = u64::from(manifest.hidden_dim);
    let m = u64::from(manifest.mem_dim);
    let h = u64::from(manifest.feature_size());
    let feat = [Is(1), Is(c), Is(h), Is(h)];
    let mem = [Is(1), Is(m), Is(h), Is(h)];
    let hr0 = [Is(1), Is(c / 8), Is(4 * h), Is(4 * h)];
    let hr1 = [Is(1), Is(c / 4), Is(2 * h), Is(2 * h)];
    // The leading dimension of every per-object value.
    let b = match batching {
        ObjectBatching::Batched => Varies("objects"),
        ObjectBatching::OneAtATime => Is(1),
    };
    let object_feat = [b, Is(c), Is(h), Is(h)];
    let object_low_res = [b, Is(1), Is(4 * h), Is(4 * h)];
    let (memory, pointers) = match batching {
        ObjectBatching::Batched => (
            vec![b, Varies("F"), Is(m), Is(h), Is(h)],
            vec![b, Varies("P"), Is(c)],
        ),
        ObjectBatching::OneAtATime => (
            vec![Varies("F"), Is(m), Is(h), Is(h)],
            vec![Varies("P"), Is(c)],
        ),
    };
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
                value("memory", Float32, &memory),
                value("memory_pos_enc", Float32, &mem),
                value("memory_temporal_slot", Int64, &[Varies("F")]),
                value("object_pointers", Float32, &pointers),
                value("object_pointer_positions", Float32, &[Varies("P")]),
            ],
            outputs: vec![value("conditioned_features", Float32, &object_feat)],
        },
        GraphName::MaskDecoder => DocSignature {
            inputs: vec![
                value("image_features", Float32, &object_feat),
                value("high_res_features_0", Float32, &hr0),
                value("high_res_features_1", Float32, &hr1),
                value("point_coords", Float32, &[b, Varies("N"), Is(2)]),
                value("point_labels", Int32, &[b, Varies("N")]),
                value("mask_input", Float32, &object_low_res),
                value("has_mask_input", Bool, &[Is(1)]),
                value("multimask_output", Bool, &[Is(1)]),
            ],
            outputs: vec![
                value("low_res_masks", Float32, &object_low_res),
                value("iou", Float32, &[b, Is(1)]),
                value("object_pointer", Float32, &[b, Is(c)]),
                value("object_score_logits", Float32, &[b, Is(1)]),
                value(
                    "multimask_low_res_masks",
                    Float32,
                    &[b, Is(3), Is(4 * h), Is(4 * h)],
                ),
                value("multimask_ious", Float32, &[b, Is(3)]),
            ],
        },
        GraphName::MemoryEncoder => DocSignature {
            inputs: vec![
                value("vision_features", Float32, &feat),
                value("mask_logits", Float32, &object_low_res),
                value("object_score_logits", Float32, &[b, Is(1)]),
                value("mask_from_points", Bool, &[Is(1)]),
            ],
            outputs: vec![
                value("memory_features", Float32, &[b, Is(m), Is(h), Is(h)]),
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

/// Checks the manifest's description of `graph` against the document in the `batching` form;
/// `Err` holds the difference as a phrase ("graph mask_decoder: its input \"point_labels\" is
/// int64 but must be int32").
fn check_form(
    graph: GraphName,
    manifest: &Manifest,
    batching: ObjectBatching,
) -> Result<(), String> {
    let doc = documented(graph, manifest, batching);
    let spec = manifest.graphs.get(graph);
    let problem = compare_side("input", &spec.inputs, &doc.inputs)
        .or_else(|| compare_side("output", &spec.outputs, &doc.outputs));
    match problem {
        None => Ok(()),
        Some(p) => Err(format!("graph {graph} ({}): {p}", spec.file)),
    }
}

/// Checks the manifest's four graphs against the document and returns the form the per-object
/// graphs share. Each is checked against the form it was exported in ([`exported_form`]);
/// per-object graphs of different forms are refused, since the engine runs a frame's objects
/// through all three alike.
pub fn check(manifest: &Manifest) -> Result<ObjectBatching, String> {
    check_form(GraphName::ImageEncoder, manifest, ObjectBatching::Batched)?;
    let mut first: Option<(GraphName, ObjectBatching)> = None;
    for graph in [
        GraphName::MemoryAttention,
        GraphName::MaskDecoder,
        GraphName::MemoryEncoder,
    ] {
        let form = exported_form(&manifest.graphs.get(graph).outputs);
        check_form(graph, manifest, form)?;
        match first {
            None => first = Some((graph, form)),
            Some((first_graph, first_form)) if first_form != form => {
                return Err(format!(
                    "graph {graph} takes objects {} but graph {first_graph} {}; export the model again",
                    describe(form),
                    describe(first_form)
                ));
            }
            Some(_) => {}
        }
    }
    Ok(first.map_or(ObjectBatching::Batched, |(_, form)| form))
}

/// The form a per-object graph was exported in, told by its first output (the per-object result
/// in both forms): a symbolic leading dimension is the objects dimension. The graph is then
/// checked against that form, so that a problem is reported against what the exporter meant.
fn exported_form(outputs: &[ValueSpec]) -> ObjectBatching {
    match outputs.first().and_then(|v| v.shape.first()) {
        Some(Dim::Symbolic(_)) => ObjectBatching::Batched,
        _ => ObjectBatching::OneAtATime,
    }
}

fn describe(form: ObjectBatching) -> &'static str {
    match form {
        ObjectBatching::Batched => "in batches",
        ObjectBatching::OneAtATime => "one at a time",
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::manifest::{ENVELOPE, GraphSpec};

    fn fixture_manifest() -> Manifest {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models/test/manifest.json");
        ENVELOPE
            .read::<Manifest>(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    }

    /// `spec` as an exporter before 0.3.0 wrote it: the objects dimension fixed at 1, or absent
    /// from memory attention's memories and pointers.
    fn one_at_a_time(spec: &mut GraphSpec) {
        for value in spec.inputs.iter_mut().chain(spec.outputs.iter_mut()) {
            if value.shape.first() == Some(&Dim::Symbolic("objects".into())) {
                if ["memory", "object_pointers"].contains(&value.name.as_str()) {
                    value.shape.remove(0);
                } else if let Some(first) = value.shape.first_mut() {
                    *first = Dim::Fixed(1);
                }
            }
        }
    }

    fn all_one_at_a_time(manifest: &mut Manifest) {
        let graphs = &mut manifest.graphs;
        for spec in [
            &mut graphs.memory_attention,
            &mut graphs.mask_decoder,
            &mut graphs.memory_encoder,
        ] {
            one_at_a_time(spec);
        }
    }

    #[test]
    fn batched_and_one_at_a_time_exports_are_told_apart() {
        let mut manifest = fixture_manifest();
        assert_eq!(check(&manifest), Ok(ObjectBatching::Batched));
        all_one_at_a_time(&mut manifest);
        assert_eq!(check(&manifest), Ok(ObjectBatching::OneAtATime));
    }

    #[test]
    fn per_object_graphs_of_both_forms_are_refused_together() {
        let mut mixed = fixture_manifest();
        one_at_a_time(&mut mixed.graphs.memory_encoder);
        let problem = check(&mixed).unwrap_err();
        assert!(problem.contains("memory_encoder"), "{problem}");
        assert!(problem.contains("one at a time"), "{problem}");
        assert!(problem.contains("in batches"), "{problem}");
    }

    #[test]
    fn a_broken_graph_is_reported_against_the_form_it_was_exported_in() {
        for old in [false, true] {
            let mut manifest = fixture_manifest();
            if old {
                all_one_at_a_time(&mut manifest);
            }
            for value in &mut manifest.graphs.mask_decoder.inputs {
                if value.name == "point_labels" {
                    value.dtype = DType::Int64;
                }
            }
            let problem = check(&manifest).unwrap_err();
            assert!(
                problem.contains("\"point_labels\" is int64 but must be int32"),
                "one at a time: {old}: {problem}"
            );
        }
    }
}
