//! The prompt encoder + mask decoder + object-pointer head: turns (conditioned) frame features and
//! the prompts of one frame into mask logits, an object score and an object pointer.

use std::time::Instant;

use ndarray::{Array1, Array2, Array3, Array4, ArrayView4, Ix1, Ix3};

use crate::error::Result;
use crate::image_encoder::FrameFeatures;
use crate::model::Model;
use crate::model::io::{inference_error, input, output};

/// The most prompt points (clicks, and a box's two corners) one object may have on one frame.
///
/// The official predictor has no limit, but the decoder's two-way transformer attends from every
/// point to every other, so memory grows with the square of their number (1000 points took
/// 194 MB, 5000 took 1.84 GB) and time with it. SAM 2 was trained with a box or a few clicks and
/// up to 7 corrections; 256 is far beyond what refines a mask and still costs little.
pub const MAX_PROMPT_POINTS: usize = 256;

/// Clicks in model pixels (x, y scaled to S) with the official labels: 1 positive, 0 negative,
/// 2/3 box corners, −1 padding.
#[derive(Debug, Clone, PartialEq)]
pub struct PointPrompt {
    pub coords: Vec<[f32; 2]>,
    pub labels: Vec<i32>,
}

impl PointPrompt {
    /// The one padding point the official predictor feeds when a frame has no click.
    pub fn padding() -> PointPrompt {
        PointPrompt {
            coords: vec![[0.0, 0.0]],
            labels: vec![-1],
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Refuses a prompt of more than [`MAX_PROMPT_POINTS`] points (counted after merging with the
/// frame's earlier clicks), before anything is stored or run.
pub(crate) fn check_point_count(
    frame: usize,
    object: crate::script::ObjectId,
    count: usize,
) -> Result<()> {
    if count > MAX_PROMPT_POINTS {
        return Err(crate::error::Error::TooManyPoints {
            frame,
            object,
            count,
            max: MAX_PROMPT_POINTS,
        });
    }
    Ok(())
}

/// What the decoder returns for one object on one frame.
#[derive(Debug, Clone)]
pub struct DecoderOutput {
    /// `[S/4 · S/4]` logits of the chosen mask (−1024 everywhere when the object is absent).
    pub low_res_logits: Vec<f32>,
    pub iou: f32,
    /// `[C]`, with the no-object pointer already applied.
    pub object_pointer: Vec<f32>,
    pub object_score: f32,
    /// The three multimask candidates `[3, S/4, S/4]` and their predicted IoUs (image mode).
    pub multimask_logits: Array3<f32>,
    pub multimask_ious: Array1<f32>,
}

/// Runs the decoder. `mask_input` is `[1, 1, S/4, S/4]` (previous logits or a downsampled mask
/// prompt); `None` uses the learned no-mask embedding.
pub fn decode(
    model: &Model,
    image_features: ArrayView4<'_, f32>,
    frame: &FrameFeatures,
    points: &PointPrompt,
    mask_input: Option<ArrayView4<'_, f32>>,
    multimask: bool,
) -> Result<DecoderOutput> {
    let g = model.geometry();
    let (c, low) = (g.hidden_dim, g.low_res);
    let n = points.len();
    let coords = Array3::from_shape_fn((1, n, 2), |(_, i, k)| {
        points
            .coords
            .get(i)
            .and_then(|p| p.get(k))
            .copied()
            .unwrap_or(0.0)
    });
    let labels =
        Array2::from_shape_fn((1, n), |(_, i)| points.labels.get(i).copied().unwrap_or(-1));
    let zeros;
    let (mask, has_mask) = match mask_input {
        Some(m) => (m, true),
        None => {
            zeros = Array4::<f32>::zeros((1, 1, low, low));
            (zeros.view(), false)
        }
    };
    let has_mask = Array1::from_elem(1, has_mask);
    let multimask = Array1::from_elem(1, multimask);

    let mut session = model.mask_decoder.lock();
    let path = session.path().to_path_buf();
    let graph = path.as_path();
    let feed = ort::inputs! {
        "image_features" => input(graph, image_features)?,
        "high_res_features_0" => input(graph, frame.high_res_0.view())?,
        "high_res_features_1" => input(graph, frame.high_res_1.view())?,
        "point_coords" => input(graph, coords.view())?,
        "point_labels" => input(graph, labels.view())?,
        "mask_input" => input(graph, mask)?,
        "has_mask_input" => input(graph, has_mask.view())?,
        "multimask_output" => input(graph, multimask.view())?,
    };
    let started = Instant::now();
    let outputs = session.session_mut().run(feed);
    model.clocks.mask_decoder.record(started);
    let outputs = outputs.map_err(|e| inference_error(graph, e))?;
    let low_res_logits = output::<f32>(graph, &outputs, "low_res_masks", &[1, 1, low, low])?
        .into_raw_vec_and_offset()
        .0;
    let iou = output::<f32>(graph, &outputs, "iou", &[1, 1])?
        .into_raw_vec_and_offset()
        .0;
    let object_pointer = output::<f32>(graph, &outputs, "object_pointer", &[1, c])?
        .into_raw_vec_and_offset()
        .0;
    let score = output::<f32>(graph, &outputs, "object_score_logits", &[1, 1])?
        .into_raw_vec_and_offset()
        .0;
    let multimask_logits = output::<f32>(
        graph,
        &outputs,
        "multimask_low_res_masks",
        &[1, 3, low, low],
    )?
    .into_shape_with_order((3, low, low))
    .map_err(|e| inference_error(graph, e))?
    .into_dimensionality::<Ix3>()
    .map_err(|e| inference_error(graph, e))?;
    let multimask_ious = output::<f32>(graph, &outputs, "multimask_ious", &[1, 3])?
        .into_shape_with_order(3)
        .map_err(|e| inference_error(graph, e))?
        .into_dimensionality::<Ix1>()
        .map_err(|e| inference_error(graph, e))?;
    Ok(DecoderOutput {
        low_res_logits,
        iou: iou.first().copied().unwrap_or(0.0),
        object_pointer,
        object_score: score.first().copied().unwrap_or(0.0),
        multimask_logits,
        multimask_ious,
    })
}
