//! The prompt encoder + mask decoder + object-pointer head: turns (conditioned) frame features and
//! the prompts of one frame into mask logits, an object score and an object pointer.

use ndarray::{Array1, Array2, Array3, Array4, ArrayView4, ArrayViewD, Axis, Ix3, s};

use crate::error::{Error, Result};
use crate::image_encoder::FrameFeatures;
use crate::model::{GraphName, GraphTensor, Model};

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
        return Err(Error::TooManyPoints {
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
    /// The three multimask candidates, when asked for ([`Candidates::Keep`]).
    pub candidates: Option<Multimask>,
}

/// The decoder's three multimask candidates (image mode shows them).
#[derive(Debug, Clone)]
pub struct Multimask {
    /// `[3, S/4, S/4]`.
    pub logits: Array3<f32>,
    /// Predicted IoU of each.
    pub ious: [f32; 3],
}

/// Whether the caller keeps the three candidates: only prompted frames do, so a propagated frame
/// does not copy them out of ONNX Runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidates {
    Keep,
    Discard,
}

/// Runs the decoder for one object. `mask_input` is `[1, 1, S/4, S/4]` (previous logits or a
/// downsampled mask prompt); `None` uses the learned no-mask embedding. `multimask` is the graph's
/// `multimask_output`: pick the best of three candidates rather than the single-mask output.
pub fn decode(
    model: &Model,
    image_features: &GraphTensor,
    frame: &FrameFeatures,
    points: &PointPrompt,
    mask_input: Option<ArrayView4<'_, f32>>,
    multimask: bool,
    candidates: Candidates,
) -> Result<DecoderOutput> {
    decode_objects(
        model,
        std::slice::from_ref(image_features),
        frame,
        points,
        mask_input,
        multimask,
        candidates,
    )?
    .pop()
    .ok_or_else(|| Error::Internal {
        message: "the mask decoder gave no output for its one object".into(),
    })
}

/// Runs the decoder for objects on one frame: `image_features` holds one `[b, C, H, W]` tensor per
/// run of [`Model::object_runs`] (as memory attention gave them, so they go from graph to graph
/// as they are), `mask_input` is `[objects, …]`, the points and the choices are the same for all
/// (a propagation feeds every object the padding point). One output per object, in order.
pub fn decode_objects(
    model: &Model,
    image_features: &[GraphTensor],
    frame: &FrameFeatures,
    points: &PointPrompt,
    mask_input: Option<ArrayView4<'_, f32>>,
    multimask: bool,
    candidates: Candidates,
) -> Result<Vec<DecoderOutput>> {
    let g = model.geometry();
    let (c, low) = (g.hidden_dim, g.low_res);
    let n = points.len();
    if points.coords.len() != n {
        return Err(Error::Internal {
            message: format!(
                "a point prompt has {} coordinates but {n} labels",
                points.coords.len()
            ),
        });
    }
    let sizes: Vec<usize> = image_features
        .iter()
        .map(|t| t.shape().first().copied().unwrap_or(0))
        .collect();
    let objects: usize = sizes.iter().sum();
    let runs: Vec<_> = model.object_runs(objects).collect();
    if !runs
        .iter()
        .map(|range| range.len())
        .eq(sizes.iter().copied())
    {
        return Err(Error::Internal {
            message: format!(
                "the decoder was given features of {sizes:?} objects, which are not the runs of {objects} objects"
            ),
        });
    }
    if let Some(mask) = mask_input.filter(|m| m.shape().first() != Some(&objects)) {
        return Err(Error::Internal {
            message: format!(
                "the decoder was given {objects} objects' features but {:?} mask inputs",
                mask.shape()
            ),
        });
    }
    let shape_error = |e: ndarray::ShapeError| Error::Internal {
        message: format!("the point prompt could not be shaped for the decoder: {e}"),
    };
    let has_mask = Array1::from_elem(1, mask_input.is_some());
    let multimask = Array1::from_elem(1, multimask);
    let run = model.graph_run(GraphName::MaskDecoder);
    // Candidates nobody reads stay where the graph ran.
    let unread: &[&str] = match candidates {
        Candidates::Keep => &[],
        Candidates::Discard => &["multimask_low_res_masks", "multimask_ious"],
    };
    let mut outputs = Vec::with_capacity(objects);
    for (range, features) in runs.into_iter().zip(image_features) {
        let b = range.len();
        let coords = Array3::from_shape_vec(
            (b, n, 2),
            points
                .coords
                .iter()
                .flatten()
                .copied()
                .cycle()
                .take(b * n * 2)
                .collect(),
        )
        .map_err(shape_error)?;
        let labels = Array2::from_shape_vec(
            (b, n),
            points.labels.iter().copied().cycle().take(b * n).collect(),
        )
        .map_err(shape_error)?;
        // No mask: zeros, made once where the decoder runs on a card, in host memory elsewhere.
        let (zeros_kept, zeros_host);
        let mask: ort::session::SessionInputValue<'_> = match mask_input {
            Some(m) => run
                .input(m.slice_move(s![range.clone(), .., .., ..]))?
                .into(),
            None => match model.zero_masks([b, 1, low, low])? {
                Some(kept) => {
                    zeros_kept = kept;
                    run.tensor(&zeros_kept)
                }
                None => {
                    zeros_host = Array4::<f32>::zeros((b, 1, low, low));
                    run.input(zeros_host.view())?.into()
                }
            },
        };
        let feed = ort::inputs! {
            "image_features" => run.tensor(features),
            "high_res_features_0" => run.tensor(&frame.high_res_0),
            "high_res_features_1" => run.tensor(&frame.high_res_1),
            "point_coords" => run.input(coords.view())?,
            "point_labels" => run.input(labels.view())?,
            "mask_input" => mask,
            "has_mask_input" => run.input(has_mask.view())?,
            "multimask_output" => run.input(multimask.view())?,
        };
        run.run(feed, unread, |out| {
            let logits = out.view::<f32>("low_res_masks", &[b, 1, low, low])?;
            let ious = out.view::<f32>("iou", &[b, 1])?;
            let pointers = out.view::<f32>("object_pointer", &[b, c])?;
            let scores = out.view::<f32>("object_score_logits", &[b, 1])?;
            let multi = match candidates {
                Candidates::Discard => None,
                Candidates::Keep => Some((
                    out.view::<f32>("multimask_low_res_masks", &[b, 3, low, low])?,
                    out.view::<f32>("multimask_ious", &[b, 3])?,
                )),
            };
            for i in 0..b {
                let row = |view: &ArrayViewD<'_, f32>| {
                    view.index_axis(Axis(0), i)
                        .iter()
                        .copied()
                        .collect::<Vec<f32>>()
                };
                let first = |view: &ArrayViewD<'_, f32>, name: &str| -> Result<f32> {
                    view.index_axis(Axis(0), i)
                        .iter()
                        .next()
                        .copied()
                        .ok_or_else(|| out.error(format!("output \"{name}\" is empty")))
                };
                let candidates = match &multi {
                    None => None,
                    Some((logits, ious)) => {
                        let logits = logits
                            .index_axis(Axis(0), i)
                            .to_owned()
                            .into_dimensionality::<Ix3>()
                            .map_err(|e| out.error(e))?;
                        let ious = row(ious);
                        let &[first_iou, second_iou, third_iou] = ious.as_slice() else {
                            return Err(out.error(
                                "output \"multimask_ious\" does not hold 3 values an object",
                            ));
                        };
                        Some(Multimask {
                            logits,
                            ious: [first_iou, second_iou, third_iou],
                        })
                    }
                };
                outputs.push(DecoderOutput {
                    low_res_logits: row(&logits),
                    iou: first(&ious, "iou")?,
                    object_pointer: row(&pointers),
                    object_score: first(&scores, "object_score_logits")?,
                    candidates,
                });
            }
            Ok(())
        })?;
    }
    Ok(outputs)
}
