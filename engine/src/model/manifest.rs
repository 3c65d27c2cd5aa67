//! `manifest.json` of a model directory, as docs/formats.md defines it.
//!
//! The settings are typed structs rather than a loose map because the predictor branches on them:
//! a misspelt key must fail when the model is opened, not silently take a default mid-shot.
//! Unknown keys are still accepted (an exporter of the same format version may add information),
//! but every key the document names is required.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{FileKind, Result};
use crate::exchange::Envelope;

/// The `format` of a model manifest.
pub const MANIFEST_FORMAT: &str = "sam2-rotoscope-model";
/// The newest manifest version this build reads.
pub const MANIFEST_VERSION: u64 = 1;

pub(crate) const ENVELOPE: Envelope = Envelope {
    kind: FileKind::Manifest,
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
};

/// `manifest.json`. Field names are the document's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u64,
    pub exporter_version: String,
    pub family: Family,
    pub size: ModelSize,
    /// The official Hydra config name, so the reference tool can rebuild the architecture.
    pub config: String,
    pub overrides: Vec<String>,
    pub source: Source,
    pub weights_sha256: String,
    pub precision: Precision,
    /// S, the square model input size.
    pub image_size: u32,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub backbone_stride: u32,
    /// C, the feature channels.
    pub hidden_dim: u32,
    pub mem_dim: u32,
    pub memory: MemorySettings,
    pub decoder: DecoderSettings,
    pub predictor: PredictorSettings,
    pub graphs: Graphs,
    pub tensors: BTreeMap<String, TensorSpec>,
    /// Every file of the directory except the manifest, by path relative to the directory.
    pub files: BTreeMap<String, FileEntry>,
    /// What the exporter measured; informative only, so kept as free JSON.
    #[serde(default)]
    pub verification: serde_json::Value,
}

impl Manifest {
    /// Parses a manifest from the bytes of `path` (used only in messages), checking format and
    /// version first.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Manifest> {
        ENVELOPE.parse(path, bytes)
    }

    /// The side of the feature map, S / backbone_stride.
    pub fn feature_size(&self) -> u32 {
        self.image_size / self.backbone_stride.max(1)
    }

    /// The side of the low-resolution mask logits, four times the feature map (S/4 at stride 16).
    pub fn low_res_size(&self) -> u32 {
        self.feature_size() * 4
    }
}

/// A behaviour flag of the manifest set to a value the engine does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedBehaviour {
    /// The flag, as `section.key`.
    pub setting: &'static str,
    /// Its value in the manifest.
    pub found: String,
    /// Why the engine cannot honour it, as a phrase.
    pub reason: &'static str,
}

impl Manifest {
    /// The first behaviour flag set to a value the engine does not implement, if any.
    ///
    /// Every behaviour flag is honoured somewhere: baked into the graphs by the exporter
    /// (`sigmoid_*_for_mem_enc`, `binarize_mask_from_pts_for_mem_enc`, `no_obj_embed_spatial`,
    /// `soft_no_obj_ptr`, `iou_prediction_use_sigmoid`, `dynamic_multimask_*`,
    /// `use_multimask_token_for_obj_ptr`, `*_tpos_*`), applied by the memory bank's selection
    /// (`num_maskmem`, `max_cond_frames_in_attn`, `memory_temporal_stride_for_eval`, `*obj_ptrs*`),
    /// by the step (`multimask_*`, `pred_obj_scores`, `fixed_no_obj_ptr`,
    /// `use_mask_input_as_output_without_sam`, `mask_as_output_*`, `prev_mask_logits_clamp`), by
    /// the memory encoder (`memory_storage_dtype`, both values) or by the session
    /// (`fill_hole_area`, `add_all_frames_to_correct_as_cond`) — or refused here, so that a model
    /// asking for something else fails when it is opened rather than tracking differently.
    pub fn unsupported_behaviour(&self) -> Option<UnsupportedBehaviour> {
        let flag = |setting, value: bool, implemented: bool, reason| {
            (value != implemented).then(|| UnsupportedBehaviour {
                setting,
                found: value.to_string(),
                reason,
            })
        };
        flag(
            "memory.directly_add_no_mem_embed",
            self.memory.directly_add_no_mem_embed,
            true,
            "the engine adds the no-memory embedding directly on a first prompted frame, as every SAM 2 and SAM 2.1 release does",
        )
        .or_else(|| {
            flag(
                "memory.non_overlap_masks_for_mem_enc",
                self.memory.non_overlap_masks_for_mem_enc,
                false,
                "the engine encodes each object's memory from its own mask, without resolving overlaps between objects first",
            )
        })
        .or_else(|| {
            flag(
                "predictor.non_overlap_masks",
                self.predictor.non_overlap_masks,
                false,
                "the engine returns each object's mask as predicted, without resolving overlaps between objects",
            )
        })
        .or_else(|| {
            flag(
                "predictor.clear_non_cond_mem_around_input",
                self.predictor.clear_non_cond_mem_around_input,
                false,
                "the engine keeps the tracked memories around a new prompt",
            )
        })
    }
}

/// Which release of the official model the weights belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Family {
    #[serde(rename = "sam2")]
    Sam2,
    #[serde(rename = "sam2.1")]
    Sam2_1,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Sam2 => "sam2",
            Family::Sam2_1 => "sam2.1",
        })
    }
}

/// Model size; `Test` is the shrunk config used by fixtures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSize {
    Tiny,
    Small,
    BasePlus,
    Large,
    Test,
}

impl std::fmt::Display for ModelSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelSize::Tiny => "tiny",
            ModelSize::Small => "small",
            ModelSize::BasePlus => "base_plus",
            ModelSize::Large => "large",
            ModelSize::Test => "test",
        })
    }
}

/// Where the weights came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Checkpoint {
        file: String,
        sha256: String,
    },
    /// Seeded random weights with noise, for fixtures (random init alone hides bugs).
    Random {
        seed: u64,
        noise_std: f64,
        object_score_bias: f64,
    },
}

/// The graphs' internal precision; their inputs and outputs are float32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    Fp16,
}

/// Memory-bank settings (`memory`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySettings {
    pub num_maskmem: u32,
    /// −1 means all conditioning frames.
    pub max_cond_frames_in_attn: i64,
    pub memory_temporal_stride_for_eval: u32,
    pub use_obj_ptrs_in_encoder: bool,
    pub max_obj_ptrs_in_encoder: u32,
    pub only_obj_ptrs_in_the_past_for_eval: bool,
    pub add_tpos_enc_to_obj_ptrs: bool,
    pub proj_tpos_enc_in_obj_ptrs: bool,
    pub use_signed_tpos_enc_to_obj_ptrs: bool,
    pub directly_add_no_mem_embed: bool,
    pub sigmoid_scale_for_mem_enc: f32,
    pub sigmoid_bias_for_mem_enc: f32,
    pub binarize_mask_from_pts_for_mem_enc: bool,
    pub non_overlap_masks_for_mem_enc: bool,
    pub memory_storage_dtype: StorageDtype,
    pub no_obj_embed_spatial: bool,
    /// The graph file that holds these weights.
    pub maskmem_tpos_enc: String,
    /// The graph file that holds these weights.
    pub obj_ptr_tpos_proj: String,
}

/// How memory features are stored between frames; the official predictor rounds to bf16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageDtype {
    Bfloat16,
    Float32,
}

/// Prompt and decoder settings (`decoder`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderSettings {
    pub multimask_output_in_sam: bool,
    pub multimask_min_pt_num: u32,
    pub multimask_max_pt_num: u32,
    pub multimask_output_for_tracking: bool,
    pub use_multimask_token_for_obj_ptr: bool,
    pub dynamic_multimask_via_stability: bool,
    pub dynamic_multimask_stability_delta: f32,
    pub dynamic_multimask_stability_thresh: f32,
    pub pred_obj_scores: bool,
    pub fixed_no_obj_ptr: bool,
    pub soft_no_obj_ptr: bool,
    /// The logits of an absent object (−1024).
    pub no_obj_score: f32,
    pub iou_prediction_use_sigmoid: bool,
    pub use_mask_input_as_output_without_sam: bool,
    pub mask_as_output_scale: f32,
    pub mask_as_output_bias: f32,
    /// Previous logits fed back with new clicks are clamped to ± this.
    pub prev_mask_logits_clamp: f32,
}

/// The official video predictor's defaults (`predictor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorSettings {
    pub fill_hole_area: u32,
    pub non_overlap_masks: bool,
    pub add_all_frames_to_correct_as_cond: bool,
    pub clear_non_cond_mem_around_input: bool,
}

/// The four graphs. A struct rather than a map: the engine needs exactly these four.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graphs {
    pub image_encoder: GraphSpec,
    pub mask_decoder: GraphSpec,
    pub memory_encoder: GraphSpec,
    pub memory_attention: GraphSpec,
}

impl Graphs {
    /// The spec of one graph.
    pub fn get(&self, name: GraphName) -> &GraphSpec {
        match name {
            GraphName::ImageEncoder => &self.image_encoder,
            GraphName::MaskDecoder => &self.mask_decoder,
            GraphName::MemoryEncoder => &self.memory_encoder,
            GraphName::MemoryAttention => &self.memory_attention,
        }
    }
}

/// Names the four graphs, so code can loop over them and messages can name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GraphName {
    ImageEncoder,
    MaskDecoder,
    MemoryEncoder,
    MemoryAttention,
}

impl GraphName {
    /// All four, in the order a frame uses them.
    pub const ALL: [GraphName; 4] = [
        GraphName::ImageEncoder,
        GraphName::MemoryAttention,
        GraphName::MaskDecoder,
        GraphName::MemoryEncoder,
    ];

    /// The key in `graphs`.
    pub fn as_str(self) -> &'static str {
        match self {
            GraphName::ImageEncoder => "image_encoder",
            GraphName::MaskDecoder => "mask_decoder",
            GraphName::MemoryEncoder => "memory_encoder",
            GraphName::MemoryAttention => "memory_attention",
        }
    }
}

impl std::fmt::Display for GraphName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One graph: its file and exact interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphSpec {
    pub file: String,
    pub inputs: Vec<ValueSpec>,
    pub outputs: Vec<ValueSpec>,
}

impl GraphSpec {
    /// The input called `name`.
    pub fn input(&self, name: &str) -> Option<&ValueSpec> {
        self.inputs.iter().find(|v| v.name == name)
    }

    /// The output called `name`.
    pub fn output(&self, name: &str) -> Option<&ValueSpec> {
        self.outputs.iter().find(|v| v.name == name)
    }
}

/// One input or output of a graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

/// A dimension: a number, or a symbolic name for one that varies between runs (F, P, N).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(u64),
    Symbolic(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

/// Formats a shape as `[1, 3, 256, 256]` / `[F, 16, 16, 16]` for messages.
pub fn shape_string(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// Element types, spelt as NumPy spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    Float32,
    Float16,
    Bfloat16,
    Float64,
    Int64,
    Int32,
    Int8,
    Uint8,
    Bool,
}

impl DType {
    /// The NumPy spelling, as in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::Float32 => "float32",
            DType::Float16 => "float16",
            DType::Bfloat16 => "bfloat16",
            DType::Float64 => "float64",
            DType::Int64 => "int64",
            DType::Int32 => "int32",
            DType::Int8 => "int8",
            DType::Uint8 => "uint8",
            DType::Bool => "bool",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One small constant tensor (`tensors/*.npy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub file: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// Size and hash of one file, to catch truncated copies and edited files before ONNX Runtime sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}
