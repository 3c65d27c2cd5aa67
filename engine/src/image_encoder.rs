//! The Hiera image encoder: one run per frame, giving the features every later step reads.

use std::sync::Arc;

use ndarray::ArrayView4;

use crate::error::Result;
use crate::model::{GraphName, GraphTensor, Model};

/// The encoder's outputs for one frame, kept where the encoder ran ([`GraphTensor`]): only other
/// graphs read them, so on a card they never cross the bus.
///
/// The position encoding depends only on the feature map's shape, so every frame shares one copy
/// (`Arc`): at 1024×1024 that saves 4 MiB per cached frame.
#[derive(Debug)]
pub struct FrameFeatures {
    /// `[1, C, H, W]`, the top FPN level: what memory attention conditions and the memory encoder reads.
    pub vision_features: GraphTensor,
    /// `[1, C, H, W]`.
    pub vision_pos_enc: Arc<GraphTensor>,
    /// `[1, C/8, 4H, 4W]`, already through the decoder's `conv_s0`.
    pub high_res_0: GraphTensor,
    /// `[1, C/4, 2H, 2W]`, already through `conv_s1`.
    pub high_res_1: GraphTensor,
}

impl FrameFeatures {
    /// Bytes held by this frame alone (the shared position encoding is not counted), in the
    /// memory of wherever the encoder ran.
    pub fn bytes(&self) -> usize {
        self.vision_features.bytes() + self.high_res_0.bytes() + self.high_res_1.bytes()
    }
}

/// The encoder's outputs, in the order the graph lists them.
const KEPT: [&str; 4] = [
    "vision_features",
    "vision_pos_enc",
    "high_res_features_0",
    "high_res_features_1",
];

/// Runs the encoder on a preprocessed image `[1, 3, S, S]`. `shared_pos_enc` is reused when given
/// and equal in shape, so that all frames of a session point to one position encoding.
pub fn encode(
    model: &Model,
    image: ArrayView4<'_, f32>,
    shared_pos_enc: Option<&Arc<GraphTensor>>,
) -> Result<FrameFeatures> {
    let g = model.geometry();
    let (c, f) = (g.hidden_dim, g.feat);
    let run = model.graph_run(GraphName::ImageEncoder);
    let feed = ort::inputs! {"image" => run.input(image)?};
    run.run(feed, &KEPT, |out| {
        let vision_features = out.keep("vision_features", &[1, c, f, f])?;
        let high_res_0 = out.keep("high_res_features_0", &[1, c / 8, 4 * f, 4 * f])?;
        let high_res_1 = out.keep("high_res_features_1", &[1, c / 4, 2 * f, 2 * f])?;
        let vision_pos_enc = match shared_pos_enc {
            Some(shared) => Arc::clone(shared),
            None => Arc::new(out.keep("vision_pos_enc", &[1, c, f, f])?),
        };
        Ok(FrameFeatures {
            vision_features,
            vision_pos_enc,
            high_res_0,
            high_res_1,
        })
    })
}
