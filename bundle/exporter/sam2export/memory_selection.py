"""Which memories and object pointers the official predictor attends to on a frame — as one pure function.

This mirrors `SAM2Base._prepare_memory_conditioned_features` up to the concatenation, and produces exactly the
inputs of the `memory_attention` graph. It is the specification the Rust engine's memory bank ports, and
`verify.py` checks it together with the graph against the official function.
"""

from __future__ import annotations

from dataclasses import dataclass

from sam2.modeling.sam2_utils import select_closest_cond_frames


@dataclass
class MemoryPick:
    """Memory frames as (frame index, temporal slot, from_cond) and pointers as (frame index, normalized signed
    distance, from_cond). `from_cond` says where the output is looked up: a selected conditioning frame, or the
    recent (non-conditioning) outputs first and the unselected conditioning frames second."""

    frames: list[tuple[int, int, bool]]
    pointers: list[tuple[int, float, bool]]


class _Settings:
    """The model attributes `select_memory` reads, from a manifest instead of a live model."""

    def __init__(self, manifest: dict):
        mem = manifest["memory"]
        for k in ("num_maskmem", "max_cond_frames_in_attn", "memory_temporal_stride_for_eval", "use_obj_ptrs_in_encoder",
                  "max_obj_ptrs_in_encoder", "only_obj_ptrs_in_the_past_for_eval", "use_signed_tpos_enc_to_obj_ptrs"):
            setattr(self, k, mem[k])


def select_memory_from_settings(manifest: dict, frame_idx, cond, non_cond, num_frames, reverse) -> MemoryPick:
    return select_memory(_Settings(manifest), frame_idx, cond, non_cond, num_frames, reverse)


def select_memory(model, frame_idx: int, cond: dict, non_cond: dict, num_frames: int, reverse: bool) -> MemoryPick:
    """`cond` / `non_cond` map frame index → output, in the predictor's insertion order (order matters only to
    the last float bit: attention sums over memory tokens)."""
    num_maskmem = model.num_maskmem
    selected, unselected = select_closest_cond_frames(frame_idx, cond, model.max_cond_frames_in_attn)
    frames = [(t, num_maskmem - 1, True) for t in selected]

    stride = model.memory_temporal_stride_for_eval
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos
        if t_rel == 1:
            prev = frame_idx + t_rel if reverse else frame_idx - t_rel
        elif not reverse:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        if prev in non_cond or prev in unselected:
            frames.append((prev, num_maskmem - t_pos - 1, False))

    pointers: list[tuple[int, float, bool]] = []
    if model.use_obj_ptrs_in_encoder:
        max_ptrs = min(num_frames, model.max_obj_ptrs_in_encoder)
        if model.only_obj_ptrs_in_the_past_for_eval:
            ptr_cond = [t for t in selected if (t >= frame_idx if reverse else t <= frame_idx)]
        else:
            ptr_cond = list(selected)
        sign = -1 if reverse else 1
        raw = [((frame_idx - t) * sign if model.use_signed_tpos_enc_to_obj_ptrs else abs(frame_idx - t), t, True) for t in ptr_cond]
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or t >= num_frames:
                break
            if t in non_cond or t in unselected:
                raw.append((t_diff, t, False))
        t_diff_max = max_ptrs - 1
        # The official code divides an int64 tensor by a Python int: float32 true division.
        pointers = [(t, _f32_div(d, t_diff_max), c) for d, t, c in raw]
    return MemoryPick(frames, pointers)


def output_of(t: int, from_cond: bool, cond: dict, non_cond: dict):
    """The stored output a picked entry refers to, looked up as the official code does."""
    if from_cond:
        return cond[t]
    return non_cond[t] if t in non_cond else cond[t]


def _f32_div(a: int, b: int) -> float:
    import numpy as np

    return float(np.float32(a) / np.float32(b))
