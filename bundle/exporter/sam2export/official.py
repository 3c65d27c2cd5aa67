"""Small, value-preserving fixes that let the official predictor run on a CPU-only machine."""

from __future__ import annotations

import types


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
