"""Self-check at the end of every export: each ONNX graph, run in ONNX Runtime, against the official PyTorch
functions on random inputs — including every memory length from one frame to the full bank, every
object-pointer count from none to the maximum, and batches of several objects (the official functions take a
batch of objects on one frame, as the per-object graphs do)."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from .memory_selection import output_of, select_memory
from .official import patch_memory_dtype

FP32_TOLERANCE = 1e-4  # max abs diff relative to max(1, max abs of the reference)
FP16_TOLERANCE = 5e-2
BATCH = 3  # objects in the batched cases


def _session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, os.cpu_count() or 1)
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


class _Stats:
    def __init__(self):
        self.diff = 0.0
        self.ref = 0.0
        self.cases = 0

    def add(self, got, want):
        want = want.detach().float().numpy() if isinstance(want, torch.Tensor) else np.asarray(want, np.float32)
        got = np.asarray(got, np.float32).reshape(want.shape)
        self.diff = max(self.diff, float(np.max(np.abs(got - want))) if got.size else 0.0)
        self.ref = max(self.ref, float(np.max(np.abs(want))) if want.size else 0.0)

    def row(self):
        return {"max_abs_diff": self.diff, "max_abs_ref": self.ref, "cases": self.cases}


@torch.inference_mode()
def verify_model_dir(model, graphs, model_dir: str, io: dict, *, fp16: bool = False, log=print) -> dict:
    patch_memory_dtype(model)
    sess = {g: _session(os.path.join(model_dir, io[g]["file"])) for g in io}
    g = torch.Generator().manual_seed(1234)
    s = model.image_size
    c, m = model.hidden_dim, model.mem_dim
    h = w = s // model.backbone_stride
    stats = {k: _Stats() for k in io}
    extra = {"objects_present": 0, "objects_absent": 0, "multimask_cases": 0, "batched_cases": 0}

    # image encoder
    features = []
    for _ in range(2):
        img = torch.randn(1, 3, s, s, generator=g)
        out = model.forward_image(img)
        want = [out["backbone_fpn"][-1], out["vision_pos_enc"][-1], out["backbone_fpn"][0], out["backbone_fpn"][1]]
        got = sess["image_encoder"].run(None, {"image": img.numpy()})
        for a, b in zip(got, want):
            stats["image_encoder"].add(a, b)
        stats["image_encoder"].cases += 1
        features.append([torch.from_numpy(x) for x in got])

    def decoder_case(feats, hr0, hr1, coords, lab, low_in, use_mask, multimask):
        """One run of the official `_forward_sam_heads` and of the graph on the same rows (one per object),
        added to the decoder's stats; returns the official object scores."""
        r = model._forward_sam_heads(
            backbone_features=feats,
            point_inputs={"point_coords": coords, "point_labels": lab},
            mask_inputs=low_in if use_mask else None,
            high_res_features=[hr0, hr1],
            multimask_output=multimask,
        )
        low_multi, _, ious, low, _, ptr, score = r
        got = sess["mask_decoder"].run(None, {
            "image_features": feats.numpy(), "high_res_features_0": hr0.numpy(),
            "high_res_features_1": hr1.numpy(), "point_coords": coords.numpy(),
            "point_labels": lab.numpy(), "mask_input": low_in.numpy(),
            "has_mask_input": np.array([use_mask]), "multimask_output": np.array([multimask]),
        })
        st = stats["mask_decoder"]
        st.add(got[0], low)
        st.add(got[2], ptr)
        st.add(got[3], score)
        if multimask:
            st.add(got[1], torch.gather(ious, 1, torch.argmax(ious, dim=-1, keepdim=True)))
            st.add(got[4], low_multi)
            st.add(got[5], ious)
        else:
            st.add(got[1], ious)
        st.cases += 1
        return score

    # mask decoder: points, boxes, padding only (mask prompts), previous-mask input, multimask on/off
    prompts = [
        ([[0.3, 0.4]], [1]),
        ([[0.3, 0.4], [0.7, 0.2]], [1, 0]),
        ([[0.1, 0.1], [0.8, 0.9], [0.5, 0.5]], [2, 3, 1]),
        ([[0.2, 0.6], [0.4, 0.3], [0.9, 0.1], [0.6, 0.6], [0.5, 0.2]], [1, 1, 0, 1, 0]),
        ([[0.0, 0.0]], [-1]),
    ]
    for fi, (vf, _, hr0, hr1) in enumerate(features):
        for pts, labels in prompts:
            for use_mask in (False, True):
                for multimask in (False, True):
                    coords = torch.tensor([pts], dtype=torch.float32) * s
                    lab = torch.tensor([labels], dtype=torch.int32)
                    low_in = torch.randn(1, 1, 4 * h, 4 * w, generator=g) * 8
                    feats = vf + torch.randn(vf.shape, generator=g) * 0.5 * fi
                    score = decoder_case(feats, hr0, hr1, coords, lab, low_in, use_mask, multimask)
                    extra["multimask_cases"] += int(multimask)
                    extra["objects_present" if float(score) > 0 else "objects_absent"] += 1

    # mask decoder, a batch of objects on one frame: each row its own features, prompt and previous mask
    vf, _, hr0, hr1 = features[0]
    for use_mask in (False, True):
        for multimask in (False, True):
            coords = torch.rand(BATCH, 2, 2, generator=g) * s
            lab = torch.tensor([[1, 0], [1, 1], [2, 3]], dtype=torch.int32)
            low_in = torch.randn(BATCH, 1, 4 * h, 4 * w, generator=g) * 8
            feats = vf + torch.randn(BATCH, c, h, w, generator=g) * 0.5
            decoder_case(feats, hr0, hr1, coords, lab, low_in, use_mask, multimask)
            extra["batched_cases"] += 1

    def memory_encoder_case(vf, low, score, from_points):
        """The official `_encode_new_memory` and the graph on the same masks (one row per object), added to the
        memory encoder's stats."""
        high = F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
        feats, pos = model._encode_new_memory(
            current_vision_feats=[vf.flatten(2).permute(2, 0, 1)], feat_sizes=[(h, w)],
            pred_masks_high_res=high, object_score_logits=score, is_mask_from_pts=from_points,
        )
        got = sess["memory_encoder"].run(None, {
            "vision_features": vf.numpy(), "mask_logits": low.numpy(),
            "object_score_logits": score.numpy(), "mask_from_points": np.array([from_points]),
        })
        stats["memory_encoder"].add(got[0], feats)
        stats["memory_encoder"].add(got[1], pos[-1][:1])
        stats["memory_encoder"].cases += 1

    # memory encoder (single objects, then a batch of objects with present and absent ones)
    for vf, *_ in features:
        for from_points in (False, True):
            for score_sign in (1.0, -1.0):
                low = torch.randn(1, 1, 4 * h, 4 * w, generator=g) * 4
                memory_encoder_case(vf, low, torch.tensor([[2.5 * score_sign]]), from_points)
    vf = features[0][0]
    for from_points in (False, True):
        low = torch.randn(BATCH, 1, 4 * h, 4 * w, generator=g) * 4
        memory_encoder_case(vf, low, torch.tensor([[2.5], [-2.5], [0.5]]), from_points)
        extra["batched_cases"] += 1

    # memory attention: memory banks of every size, through the official function; a few of them for a batch
    # of objects (their own memories and pointers, the frame and the memory positions shared)
    pe = torch.randn(1, m, h, w, generator=g)

    def out_at(objects):
        return {
            "maskmem_features": torch.randn(objects, m, h, w, generator=g).to(torch.bfloat16),
            "maskmem_pos_enc": [pe.expand(objects, -1, -1, -1)],
            "obj_ptr": torch.randn(objects, c, generator=g),
        }

    scenarios = [  # (num_frames, cond frames, non-cond frames, frame, reverse)
        (10, [5], [], 0, False),  # only a future prompt: one memory, no pointer
        (10, [0], [], 1, False),
        (30, [0], list(range(1, 20)), 20, False),  # full bank: 7 memories, 16 pointers
        (30, [20], list(range(15, 20)) + list(range(21, 26)), 14, True),
        (30, [0, 10], list(range(6, 10)) + [11], 12, False),
        (2, [0], [], 1, False),  # a two-frame clip: pointer distance normalised by 1
    ] + [(12, [0], list(range(1, k)), k, False) for k in range(2, 8)]
    batched = scenarios[:4]
    lengths = set()
    vf, pos_enc = features[0][0], features[0][1]
    for objects, cases in ((1, scenarios), (BATCH, batched)):
        for num_frames, cond_t, non_cond_t, frame, reverse in cases:
            cond = {t: out_at(objects) for t in cond_t}
            non_cond = {t: out_at(objects) for t in non_cond_t}
            want = model._prepare_memory_conditioned_features(
                frame_idx=frame, is_init_cond_frame=False,
                current_vision_feats=[vf.flatten(2).permute(2, 0, 1).expand(-1, objects, -1)],
                current_vision_pos_embeds=[pos_enc.flatten(2).permute(2, 0, 1).expand(-1, objects, -1)],
                feat_sizes=[(h, w)], output_dict={"cond_frame_outputs": cond, "non_cond_frame_outputs": non_cond},
                num_frames=num_frames, track_in_reverse=reverse,
            )
            pick = select_memory(model, frame, cond, non_cond, num_frames, reverse)
            mem = [output_of(t, fc, cond, non_cond)["maskmem_features"].float() for t, _, fc in pick.frames]
            ptrs = [output_of(t, fc, cond, non_cond)["obj_ptr"] for t, _, fc in pick.pointers]
            feeds = {
                "current_features": vf.numpy(), "current_pos_enc": pos_enc.numpy(),
                "memory": torch.stack(mem, dim=1).numpy(), "memory_pos_enc": pe.numpy(),
                "memory_temporal_slot": np.array([slot for _, slot, _ in pick.frames], dtype=np.int64),
                "object_pointers": (torch.stack(ptrs, dim=1) if ptrs else torch.zeros(objects, 0, c)).numpy(),
                "object_pointer_positions": np.array([p for _, p, _ in pick.pointers], dtype=np.float32),
            }
            got = sess["memory_attention"].run(None, feeds)
            stats["memory_attention"].add(got[0], want)
            stats["memory_attention"].cases += 1
            lengths.add((len(pick.frames), len(pick.pointers)))
            extra["batched_cases"] += objects > 1

    tol = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    result = {"graphs": {k: v.row() for k, v in stats.items()}, "tolerance_relative": tol}
    passed = True
    for k, v in stats.items():
        rel = v.diff / max(1.0, v.ref)
        ok = rel <= tol
        passed &= ok
        log(f"verify {k:17s} max|onnx-torch| = {v.diff:.3g} (reference max {v.ref:.3g}, {v.cases} cases) {'ok' if ok else 'FAILED'}")
    log(f"verify memory lengths (frames, pointers) covered: {sorted(lengths)}")
    log(f"verify decoder cases: {extra['objects_present']} with the object present, {extra['objects_absent']} absent")
    log(f"verify batched cases ({BATCH} objects): {extra['batched_cases']}")
    result["memory_lengths_covered"] = sorted([list(x) for x in lengths])
    result.update(extra)
    result["passed"] = bool(passed)
    import onnxruntime

    result["onnxruntime"] = onnxruntime.__version__
    result["torch"] = torch.__version__
    return result
