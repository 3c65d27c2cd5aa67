"""The four graphs the engine runs, as thin modules over the official SAM 2 modules.

Each wrapper calls the official sub-modules with the official weights; the only code written here is glue
that the official predictor does in Python between them (layout changes, flag-driven selection turned into
`torch.where`), plus memory attention's RoPE rewritten in real arithmetic because the ONNX exporters cannot
export complex numbers. `verify.py` holds every graph to the official functions.

The three per-object graphs (mask decoder, memory encoder, memory attention) take a batch of objects on one
frame (exporter 0.3.0): what belongs to the frame (its features, the flags) has a batch of 1 and is shared,
what belongs to an object has the leading `objects` dimension. The official modules are batched already; the
engine runs the objects that share a frame's inputs in one call instead of one call each.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from sam2.modeling.backbones.hieradet import do_pool
from sam2.modeling.position_encoding import compute_axial_cis
from sam2.modeling.sam2_base import NO_OBJ_SCORE
from sam2.modeling.sam2_utils import LayerNorm2d, get_1d_sine_pe

GRAPH_NAMES = ("image_encoder", "mask_decoder", "memory_encoder", "memory_attention")


class ImageEncoder(nn.Module):
    """`forward_image` + `_prepare_backbone_features`: one call per frame. The Hiera blocks' attentions run
    fused (`_hiera_attention`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        for block in model.image_encoder.trunk.blocks:
            block.attn.forward = types.MethodType(_hiera_attention, block.attn)

    def forward(self, image):
        out = self.model.forward_image(image)
        fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
        return fpn[-1], pos[-1], fpn[0], fpn[1]


class MaskDecoder(nn.Module):
    """Prompt encoder + mask decoder + pointer head: `_forward_sam_heads` with its choices as inputs. One row
    per object; the high-resolution features and the two flags are the frame's, shared by every row."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        _batch_invariant_layer_norms(model.sam_prompt_encoder)
        _batch_invariant_layer_norms(model.sam_mask_decoder)

    def forward(self, image_features, high_res_features_0, high_res_features_1, point_coords, point_labels,
                mask_input, has_mask_input, multimask_output):
        m = self.model
        pe = m.sam_prompt_encoder
        dec = m.sam_mask_decoder
        b, _, h, w = image_features.shape

        sparse = pe._embed_points(point_coords, point_labels, pad=True)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, h, w)
        dense = torch.where(has_mask_input.reshape(1, 1, 1, 1), pe._embed_masks(mask_input), no_mask)

        masks, iou_pred, mask_tokens_out, object_score_logits = dec.predict_masks(
            image_embeddings=image_features,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=[high_res_features_0, high_res_features_1],
        )
        # MaskDecoder.forward: multimask → tokens 1..3; single → token 0 with the stability fallback.
        multi_masks, multi_ious = masks[:, 1:], iou_pred[:, 1:]
        if dec.dynamic_multimask_via_stability:
            single_masks, single_iou = dec._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            single_masks, single_iou = masks[:, 0:1], iou_pred[:, 0:1]

        # _forward_sam_heads: absent objects get NO_OBJ_SCORE logits; multimask picks the best predicted IoU.
        present = object_score_logits > 0
        if m.pred_obj_scores:
            multi_masks = torch.where(present[:, None, None], multi_masks, NO_OBJ_SCORE)
            single_masks = torch.where(present[:, None, None], single_masks, NO_OBJ_SCORE)
        # Each row's own best candidate (official: `low_res_multimasks[batch_inds, best_iou_inds]`).
        best = torch.argmax(multi_ious, dim=-1, keepdim=True)  # [objects, 1]
        best_mask = torch.gather(multi_masks, 1, best[:, :, None, None].expand(-1, -1, *multi_masks.shape[2:]))
        best_iou = torch.gather(multi_ious, 1, best)
        mm = multimask_output.reshape(1, 1, 1, 1)
        low_res_masks = torch.where(mm, best_mask, single_masks)
        iou = torch.where(multimask_output.reshape(1, 1), best_iou, single_iou)

        token0 = mask_tokens_out[:, 0]
        if dec.use_multimask_token_for_obj_ptr:
            multi_tokens = mask_tokens_out[:, 1:]
            best_token = torch.gather(multi_tokens, 1, best[:, :, None].expand(-1, -1, multi_tokens.shape[2]))[:, 0]
            token = torch.where(multimask_output.reshape(1, 1), best_token, token0)
        else:
            token = token0
        obj_ptr = m.obj_ptr_proj(token)
        if m.pred_obj_scores:
            lam = object_score_logits.sigmoid() if m.soft_no_obj_ptr else present.float()
            if m.fixed_no_obj_ptr:
                obj_ptr = lam * obj_ptr
            obj_ptr = obj_ptr + (1 - lam) * m.no_obj_ptr
        return low_res_masks, iou, obj_ptr, object_score_logits, multi_masks, multi_ious


class MemoryEncoder(nn.Module):
    """`_encode_new_memory` from low-res logits (the predictor always upsamples them to S×S first). One row
    per object over the frame's shared `vision_features`; the position encoding depends on the feature size
    only, so one row of it is returned for all."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        _batch_invariant_layer_norms(model.memory_encoder)

    def forward(self, vision_features, mask_logits, object_score_logits, mask_from_points):
        m = self.model
        high = F.interpolate(mask_logits, size=(m.image_size, m.image_size), mode="bilinear", align_corners=False)
        soft = torch.sigmoid(high)
        if m.binarize_mask_from_pts_for_mem_enc:
            mask = torch.where(mask_from_points.reshape(1, 1, 1, 1), (high > 0).float(), soft)
        else:
            mask = soft
        if m.sigmoid_scale_for_mem_enc != 1.0:
            mask = mask * m.sigmoid_scale_for_mem_enc
        if m.sigmoid_bias_for_mem_enc != 0.0:
            mask = mask + m.sigmoid_bias_for_mem_enc
        out = m.memory_encoder(vision_features, mask, skip_mask_sigmoid=True)
        feats, pos = out["vision_features"], out["vision_pos_enc"][-1][:1]
        if m.no_obj_embed_spatial is not None:
            absent = 1 - (object_score_logits > 0).float()
            feats = feats + absent[..., None, None] * m.no_obj_embed_spatial[..., None, None]
        return feats, pos


def _rope_tables(attn, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    cis = compute_axial_cis(dim=attn.internal_dim // attn.num_heads, end_x=w, end_y=h, theta=attn.rope_theta)
    return cis.real.contiguous(), cis.imag.contiguous()


def _rotate(x, cos, sin):
    """(x0 + i·x1)·(cos + i·sin) on consecutive pairs — the official complex product, in real arithmetic."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class MemoryAttention(nn.Module):
    """`_prepare_memory_conditioned_features` from the concatenation of the memory bank onwards, for a batch
    of objects on one frame. The frame's features, the memory position encoding, the memory slots and the
    pointer positions are shared (the engine batches only objects whose slots and pointer positions agree);
    each object brings its memories and pointers.

    Until the first cross-attention the tokens are the frame's alone, the same for every object: the first
    layer's self-attention runs once, at batch 1, and the batch is taken on where the memory comes in."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        h = w = model.image_size // model.backbone_stride
        ma = model.memory_attention
        for i, layer in enumerate(ma.layers):
            for kind, attn in (("self", layer.self_attn), ("cross", layer.cross_attn_image)):
                attn.rope_theta = _theta_of(attn)
                cos, sin = _rope_tables(attn, h, w)
                self.register_buffer(f"cos_{kind}_{i}", cos, persistent=True)
                self.register_buffer(f"sin_{kind}_{i}", sin, persistent=True)

    def _attend(self, attn, q, k, v, cos, sin, memory_frames=None):
        """RoPEAttention.forward. Self-attention rotates q and k alike; cross-attention repeats the table
        over the `memory_frames` spatial memories and leaves the object-pointer tokens after them unrotated.

        With one head whose values come from narrower tokens (cross-attention: 64-wide memories projected
        to 256), the value projection moves after the attention: softmax(·)·(M·Wᵀ + b) = (softmax(·)·M)·Wᵀ + b,
        since each row of the softmax sums to 1. Exact up to rounding, and the p·v half of the
        cross-attention — half its work — then runs on 64 instead of 256 channels.

        In a cross-attention, queries of batch 1 (the shared frame, in the first layer) are projected and
        rotated once, then expanded to the objects of k and v: the fused attention takes one batch for all
        three."""
        late_values = attn.num_heads == 1 and attn.v_proj.in_features < attn.v_proj.out_features
        q, k = attn.q_proj(q), attn.k_proj(k)
        if not late_values:
            v = attn.v_proj(v)
        q = attn._separate_heads(q, attn.num_heads)
        k = attn._separate_heads(k, attn.num_heads)
        v = attn._separate_heads(v, attn.num_heads)
        q = _rotate(q, cos, sin)
        if memory_frames is None:
            k = _rotate(k, cos, sin)
        else:
            cos_k = cos.unsqueeze(0).expand(memory_frames, -1, -1).reshape(-1, cos.shape[-1])
            sin_k = sin.unsqueeze(0).expand(memory_frames, -1, -1).reshape(-1, sin.shape[-1])
            num_rope_k = cos_k.shape[0]
            k = torch.cat((_rotate(k[:, :, :num_rope_k], cos_k, sin_k), k[:, :, num_rope_k:]), dim=2)
            q = q.expand(k.shape[0], -1, -1, -1)
        out = attn._recombine_heads(_attention(q, k, v))
        if late_values:
            out = attn.v_proj(out)
        return attn.out_proj(out)

    def forward(self, current_features, current_pos_enc, memory, memory_pos_enc, memory_temporal_slot,
                object_pointers, object_pointer_positions):
        m = self.model
        ma = m.memory_attention
        c, mem_dim = m.hidden_dim, m.mem_dim
        objects, num_frames = memory.shape[0], memory.shape[1]
        curr = current_features.flatten(2).permute(0, 2, 1)  # [1, HW, C], batch first
        curr_pos = current_pos_enc.flatten(2).permute(0, 2, 1)

        # Spatial memory: frame-major [objects, F·HW, mem_dim]; the temporal encoding of each frame's slot
        # is the same for every object ([1, F·HW, mem_dim]).
        mem = memory.flatten(3).permute(0, 1, 3, 2).reshape(objects, -1, mem_dim)
        tpos = torch.index_select(m.maskmem_tpos_enc, 0, memory_temporal_slot)  # [F, 1, 1, mem_dim]
        pe = memory_pos_enc.flatten(2).permute(0, 2, 1)  # [1, HW, mem_dim]
        mem_pos = (pe.unsqueeze(0) + tpos.reshape(num_frames, 1, 1, mem_dim)).reshape(1, -1, mem_dim)

        # Object pointers: each split into C/mem_dim consecutive tokens; their positions (shared) sine-encoded
        # from the normalized signed distance, projected, repeated over a pointer's tokens.
        ptrs = object_pointers.reshape(objects, -1, mem_dim)
        tpos_dim = c if m.proj_tpos_enc_in_obj_ptrs else mem_dim
        if m.add_tpos_enc_to_obj_ptrs:
            ptr_pos = m.obj_ptr_tpos_proj(get_1d_sine_pe(object_pointer_positions, dim=tpos_dim))
        else:
            ptr_pos = torch.zeros(object_pointers.shape[1], mem_dim)
        if mem_dim < c:
            ptr_pos = ptr_pos.repeat_interleave(c // mem_dim, dim=0)
        ptr_pos = ptr_pos.reshape(1, -1, mem_dim)
        memory_all = torch.cat((mem, ptrs), dim=1)
        memory_pos_all = torch.cat((mem_pos, ptr_pos), dim=1)

        output = curr
        if ma.pos_enc_at_input:
            output = output + 0.1 * curr_pos
        for i, layer in enumerate(ma.layers):
            cos_s, sin_s = getattr(self, f"cos_self_{i}"), getattr(self, f"sin_self_{i}")
            cos_c, sin_c = getattr(self, f"cos_cross_{i}"), getattr(self, f"sin_cross_{i}")
            tgt2 = layer.norm1(output)
            qk = tgt2 + curr_pos if layer.pos_enc_at_attn else tgt2
            output = output + self._attend(layer.self_attn, qk, qk, tgt2, cos_s, sin_s)
            tgt2 = layer.norm2(output)
            q = tgt2 + curr_pos if layer.pos_enc_at_cross_attn_queries else tgt2
            k = memory_all + memory_pos_all if layer.pos_enc_at_cross_attn_keys else memory_all
            # From here on `output` has one row per object (the first layer broadcasts [1] + [objects]).
            output = output + self._attend(layer.cross_attn_image, q, k, memory_all, cos_c, sin_c, num_frames)
            tgt2 = layer.norm3(output)
            output = output + layer.linear2(layer.activation(layer.linear1(tgt2)))
        output = ma.norm(output)
        _, _, h, w = current_features.shape
        return output.permute(0, 2, 1).reshape(objects, c, h, w)


class _FusedAttention(torch.autograd.Function):
    """softmax(q·kᵀ/√d)·v — PyTorch's scaled_dot_product_attention when run, ONNX Runtime's fused
    `com.microsoft.MultiHeadAttention` when exported. The plain ONNX form (MatMul → Softmax →
    MatMul) builds the whole 4096 × 28736 score matrix of a cross-attention at 1024; the fused
    kernel does not, and runs that cross-attention in 380 instead of 585 ms on 2 cores (measured).
    Inputs are [B, 1, N, C] with one batch B (the objects) for all three: SAM 2's memory attention has one
    head."""

    @staticmethod
    def forward(ctx, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)

    @staticmethod
    def symbolic(g, q, k, v):
        axis = g.op("Constant", value_t=torch.tensor([1], dtype=torch.int64))
        q3, k3, v3 = (g.op("Squeeze", x, axis) for x in (q, k, v))
        out = g.op("com.microsoft::MultiHeadAttention", q3, k3, v3, num_heads_i=1)
        return g.op("Unsqueeze", out, axis)


class _FusedHeads(torch.autograd.Function):
    """softmax(q·kᵀ/√d)·v over `heads` heads of [B, N, heads·d] tokens (head-major channels): PyTorch's
    scaled_dot_product_attention when run, ONNX Runtime's fused `com.microsoft.MultiHeadAttention` when
    exported — which never builds the score matrix (4 × 4096 × 4096 floats in each of Hiera's global
    attentions at 1024) and needs no head transposes around it."""

    @staticmethod
    def forward(ctx, q, k, v, heads):
        def split(x):
            return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)

    @staticmethod
    def symbolic(g, q, k, v, heads):
        return g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=heads)


def _hiera_attention(self, x):
    """hieradet.MultiScaleAttention.forward with its attention fused (`_FusedHeads`); the same arithmetic."""
    b, h, w, _ = x.shape
    qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
    q, k, v = torch.unbind(qkv, 2)
    if self.q_pool:
        q = do_pool(q.reshape(b, h, w, -1), self.q_pool)
        h, w = q.shape[1:3]
    x = _FusedHeads.apply(q.reshape(b, h * w, -1), k.flatten(2), v.flatten(2), self.num_heads)
    return self.proj(x.reshape(b, h, w, -1))


def _batch_invariant_layer_norms(module: nn.Module) -> None:
    """Export every LayerNorm2d under `module` in the form of `_layer_norm_2d`. The instances are patched, as
    the Hiera attentions are; PyTorch still runs the official forward, which verify.py holds the graphs to."""
    for sub in module.modules():
        if isinstance(sub, LayerNorm2d):
            sub.forward = types.MethodType(_layer_norm_2d, sub)


def _layer_norm_2d(self, x):
    """LayerNorm2d.forward; exported with its channel means as ones·x products (`_channel_mean`)."""
    if not torch.onnx.is_in_onnx_export():
        return LayerNorm2d.forward(self, x)
    u = _channel_mean(x)
    s = _channel_mean((x - u).pow(2))
    x = (x - u) / torch.sqrt(s + self.eps)
    return self.weight[:, None, None] * x + self.bias[:, None, None]


def _channel_mean(x):
    """x.mean(1, keepdim=True) of [B, C, H, W] as (1ᵀ·x) / C, so that an object's result does not depend on
    the batch it runs in. ONNX Runtime's ReduceMean over the channel axis adds the C planes one after another
    at batch 1, but takes a ones·x product per object at B > 1, which rounds differently: an object's logits
    then moved by up to 4e-6 between its batch-1 run and a batch (measured). As a MatMul every batch takes the
    product, and the rows of a batch are bit for bit the batch-1 runs. (It is also 5–8× faster than the
    plane-by-plane sum at batch 1: 0.2 instead of 1–1.8 ms per mean at 1024, measured on 2 threads.)"""
    b, c, h, w = x.shape
    return (torch.ones(1, c) @ x.reshape(b, c, h * w)).reshape(b, 1, h, w) / c


def _attention(q, k, v):
    if q.shape[1] != 1:
        return F.scaled_dot_product_attention(q, k, v)
    return _FusedAttention.apply(q, k, v)


def _theta_of(attn) -> float:
    """RoPEAttention keeps theta only inside a functools.partial; read it from there."""
    return float(attn.compute_cis.keywords.get("theta", 10000.0))


def build_graphs(model) -> dict[str, nn.Module]:
    return {
        "image_encoder": ImageEncoder(model).eval(),
        "mask_decoder": MaskDecoder(model).eval(),
        "memory_encoder": MemoryEncoder(model).eval(),
        "memory_attention": MemoryAttention(model).eval(),
    }
