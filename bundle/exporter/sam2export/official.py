"""Small, value-preserving fixes that let the official predictor run on a CPU-only machine, and its `init_state` on
frames already loaded."""

from __future__ import annotations

import json
import os
import types

import torch

from .build import rebuild_from_manifest
from .errors import UserError


def patch_memory_dtype(predictor) -> None:
    """Upstream issue #308: with no object pointer to concatenate, the bf16-stored memory reaches memory
    attention un-cast and float32 weights reject it ("mat1 and mat2 must have the same dtype"). When pointers
    are present, torch.cat already promotes the memory to float32; casting it here does exactly that in the
    remaining case and changes no value."""
    ma = predictor.memory_attention
    if getattr(ma, "_rotoscope_patched", False):
        return
    original = ma.forward

    def forward(self, curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        return original(curr, memory.float(), curr_pos=curr_pos, memory_pos=memory_pos, num_obj_ptr_tokens=num_obj_ptr_tokens)

    ma.forward = types.MethodType(forward, ma)
    ma._rotoscope_patched = True


def init_state_on(predictor, clip_dir, images, video_h, video_w, device="cpu"):
    """The official `init_state` on frames already loaded (`clip.load_frames`, the loader the reference traces hold the
    engine's to), instead of reading the clip again. On a GPU the official default (offload_video_to_cpu=False) keeps
    every frame on the card, hence `device`."""
    import sam2.sam2_video_predictor as svp

    original_loader = svp.load_video_frames
    svp.load_video_frames = lambda **kw: (images.clone().to(device), video_h, video_w)
    try:
        with torch.inference_mode():
            return predictor.init_state(video_path=clip_dir)
    finally:
        svp.load_video_frames = original_loader


def official_predictor(model_dir, checkpoint=None, device="cpu"):
    """The official predictor a model directory was exported from (`build.rebuild_from_manifest`), on `device`, with
    the fixes above; and the directory's manifest."""
    manifest_path = os.path.join(model_dir, "manifest.json")
    if not os.path.isfile(manifest_path):
        raise UserError(f"The model directory {model_dir} has no manifest.json; export one with bundle/exporter first.")
    with open(manifest_path) as f:
        manifest = json.load(f)
    predictor = rebuild_from_manifest(manifest, checkpoint).predictor.to(device)
    patch_memory_dtype(predictor)
    return manifest, predictor
