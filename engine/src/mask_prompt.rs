//! A mask as a prompt (`add_new_mask`, `_use_mask_as_output`): the artist's mask becomes the
//! frame's output directly, and the decoder only derives the object pointer from it.

use crate::model::ModelTensors;
use crate::resample::resize_bilinear_antialias;

/// The video-size mask → S×S, as `add_new_mask` does: antialiased bilinear resize, then ≥ 0.5.
pub fn to_model_size(mask: &[bool], width: usize, height: usize, size: usize) -> Vec<f32> {
    let values: Vec<f32> = mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
    if width == size && height == size {
        return values;
    }
    resize_bilinear_antialias(&values, width, height, size, size)
        .into_iter()
        .map(|v| if v >= 0.5 { 1.0 } else { 0.0 })
        .collect()
}

/// The S×S mask as low-res logits: ±10 per pixel (`mask · 20 − 10`), downscaled 4× with the
/// antialiased bilinear filter.
pub fn mask_as_logits(mask: &[f32], size: usize, scale: f32, bias: f32) -> Vec<f32> {
    let high: Vec<f32> = mask.iter().map(|&m| m * scale + bias).collect();
    resize_bilinear_antialias(&high, size, size, size / 4, size / 4)
}

/// `mask_downsample`: the learned 4×4, stride-4 convolution that brings the S×S mask to the
/// decoder's mask-input size.
pub fn downsample(mask: &[f32], size: usize, tensors: &ModelTensors) -> Vec<f32> {
    let out = size / 4;
    let bias = tensors.mask_downsample_bias.first().copied().unwrap_or(0.0);
    let weight = &tensors.mask_downsample_weight;
    let mut result = vec![0.0f32; out * out];
    for (i, row) in result.chunks_mut(out).enumerate() {
        for (j, value) in row.iter_mut().enumerate() {
            let mut sum = 0.0f32;
            for u in 0..4 {
                for v in 0..4 {
                    let w = weight.get((0, 0, u, v)).copied().unwrap_or(0.0);
                    let x = mask
                        .get((4 * i + u) * size + 4 * j + v)
                        .copied()
                        .unwrap_or(0.0);
                    sum += w * x;
                }
            }
            *value = sum + bias;
        }
    }
    result
}
