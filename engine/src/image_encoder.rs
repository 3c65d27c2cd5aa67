//! The Hiera image encoder: one run per frame, giving the features every later step reads.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{GraphName, GraphTensor, Model};
use crate::resample;

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

/// A packed 8-bit RGB frame (`width × height × 3` bytes) as the encoder's input `[1, 3, S, S]`,
/// exactly as the official loader makes it ([`sam2_input`](crate::resample::sam2_input)). The
/// resize runs on the host; where the encoder keeps its outputs on a card, the resized bytes go
/// there and are normalized by a built graph, so that 3 bytes a pixel cross instead of 12.
pub fn input(model: &Model, rgb: &[u8], width: u32, height: u32) -> Result<GraphTensor> {
    let m = model.manifest();
    let size = m.image_size;
    let resized = resample::resize_rgb8_like_pil(rgb, width, height, size, size);
    let side = if resized.is_empty() { 0 } else { size as usize };
    if let Some(image) = model.normalize_frame(&resized, side)? {
        return Ok(image);
    }
    let table = resample::sam2_normalization(m.image_mean, m.image_std);
    GraphTensor::from_host(resample::sam2_normalize(&resized, side, &table)).map_err(|source| {
        Error::TensorTransfer {
            what: "frame",
            source,
        }
    })
}

/// Runs the encoder on a preprocessed image `[1, 3, S, S]`. `shared_pos_enc` is reused when given
/// and equal in shape, so that all frames of a session point to one position encoding.
pub fn encode(
    model: &Model,
    image: &GraphTensor,
    shared_pos_enc: Option<&Arc<GraphTensor>>,
) -> Result<FrameFeatures> {
    let g = model.geometry();
    let (c, f) = (g.hidden_dim, g.feat);
    let run = model.graph_run(GraphName::ImageEncoder);
    let feed = ort::inputs! {"image" => run.tensor(image)};
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
