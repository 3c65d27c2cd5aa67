//! A mask as a prompt (`add_new_mask`, `_use_mask_as_output`): the artist's mask becomes the
//! frame's output directly, and the decoder only derives the object pointer from it.

use crate::error::{Error, Result};
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
pub fn downsample(mask: &[f32], size: usize, tensors: &ModelTensors) -> Result<Vec<f32>> {
    let internal = |message: String| Error::Internal { message };
    if mask.len() != size * size || !size.is_multiple_of(4) {
        return Err(internal(format!(
            "a mask prompt of {} values cannot be downsampled as {size}×{size}",
            mask.len()
        )));
    }
    let bias = tensors
        .mask_downsample_bias
        .first()
        .copied()
        .ok_or_else(|| internal("mask_downsample_bias is empty".into()))?;
    let weight = &tensors.mask_downsample_weight;
    if weight.shape() != [1, 1, 4, 4] {
        return Err(internal(format!(
            "mask_downsample_weight has shape {:?} instead of [1, 1, 4, 4]",
            weight.shape()
        )));
    }
    let weights: Vec<f32> = weight.iter().copied().collect();
    let out = size / 4;
    let mut result = vec![0.0f32; out * out];
    // Per output pixel the products are summed in the kernel's row-major order, then the bias
    // is added: the convolution's order, to the last bit.
    for (out_row, band) in result
        .chunks_exact_mut(out)
        .zip(mask.chunks_exact(4 * size))
    {
        for (kernel_row, mask_row) in weights.chunks_exact(4).zip(band.chunks_exact(size)) {
            for (sum, patch) in out_row.iter_mut().zip(mask_row.chunks_exact(4)) {
                for (w, x) in kernel_row.iter().zip(patch) {
                    *sum += w * x;
                }
            }
        }
        for sum in out_row.iter_mut() {
            *sum += bias;
        }
    }
    Ok(result)
}
