"""A plain-Python video predictor over the exported ONNX graphs — the blueprint of the Rust engine.

It re-implements `SAM2VideoPredictor`'s bookkeeping (prompts, conditioning and recent outputs, temporary
outputs merged at propagation time, bf16 memory, consolidation of outputs) around the four graphs and the
small tensors of a model directory, using nothing of the official package at run time except the image
loader. `replay` runs a script and compares every output with a reference trace; the fixture generator does
this for every trace, which proves the graph split and docs/formats.md before the Rust port relies on them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .clip import load_frames, load_mask
from .memory_selection import output_of, select_memory_from_settings
from .script import load_script

NO_OBJ_SCORE = -1024.0


def _bf16_round(x: np.ndarray) -> np.ndarray:
    return torch.from_numpy(x).to(torch.bfloat16).float().numpy()


@dataclass
class Out:
    pred_masks: np.ndarray  # [1, 1, S/4, S/4]
    obj_ptr: np.ndarray  # [1, C]
    object_score_logits: np.ndarray  # [1, 1]
    maskmem_features: np.ndarray | None = None  # [1, mem_dim, H, W], bf16-rounded


@dataclass
class ObjState:
    points: dict = field(default_factory=dict)  # frame → (coords [1,N,2], labels [1,N])
    masks: dict = field(default_factory=dict)  # frame → [1,1,S,S] float
    cond: dict = field(default_factory=dict)
    non_cond: dict = field(default_factory=dict)
    temp_cond: dict = field(default_factory=dict)
    temp_non_cond: dict = field(default_factory=dict)
    tracked: dict = field(default_factory=dict)  # frame → reverse


class OnnxPredictor:
    def __init__(self, model_dir: str, images: np.ndarray, video_h: int, video_w: int, settings: dict | None = None):
        import onnxruntime as ort

        with open(os.path.join(model_dir, "manifest.json")) as f:
            self.m = json.load(f)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.sess = {g: ort.InferenceSession(os.path.join(model_dir, spec["file"]), so) for g, spec in self.m["graphs"].items()}
        self.t = {k: np.load(os.path.join(model_dir, v["file"])) for k, v in self.m["tensors"].items()}
        self.settings = dict(self.m["predictor"])
        self.settings.update(settings or {})
        self.images, self.h, self.w = images, video_h, video_w
        self.num_frames = len(images)
        self.s = self.m["image_size"]
        self.feats = {}
        self.pos_enc = None
        self.objs: dict[int, ObjState] = {}  # insertion order = object index

    # -- graphs -------------------------------------------------------------------------------------------
    def features(self, frame):
        if frame not in self.feats:
            self.feats[frame] = self.sess["image_encoder"].run(None, {"image": self.images[frame : frame + 1]})
        return self.feats[frame]

    def decode(self, image_features, hr0, hr1, coords, labels, mask_input, multimask):
        has = mask_input is not None
        low = mask_input if has else np.zeros((1, 1, self.s // 4, self.s // 4), np.float32)
        r = self.sess["mask_decoder"].run(None, {
            "image_features": image_features, "high_res_features_0": hr0, "high_res_features_1": hr1,
            "point_coords": coords, "point_labels": labels, "mask_input": low,
            "has_mask_input": np.array([has]), "multimask_output": np.array([multimask]),
        })
        return r[0], r[2], r[3]

    def encode_memory(self, frame, low, score, from_points):
        vf = self.features(frame)[0]
        feats, pos = self.sess["memory_encoder"].run(None, {
            "vision_features": vf, "mask_logits": low, "object_score_logits": score,
            "mask_from_points": np.array([from_points]),
        })
        if self.pos_enc is None:
            self.pos_enc = pos
        return _bf16_round(feats)

    # -- one frame of one object (track_step) --------------------------------------------------------------
    def run_frame(self, o: ObjState, frame, is_init_cond, points, mask, reverse, run_mem_encoder, prev_logits=None):
        m, dec = self.m, self.m["decoder"]
        vf, vpos, hr0, hr1 = self.features(frame)
        if mask is not None:
            high = mask * dec["mask_as_output_scale"] + dec["mask_as_output_bias"]
            low = F.interpolate(torch.from_numpy(high), size=(self.s // 4, self.s // 4), mode="bilinear",
                                align_corners=False, antialias=True).numpy()
            down = F.conv2d(torch.from_numpy(mask), torch.from_numpy(self.t["mask_downsample_weight"]),
                            torch.from_numpy(self.t["mask_downsample_bias"]), stride=4).numpy()
            _, ptr, _ = self.decode(vf, hr0, hr1, np.zeros((1, 1, 2), np.float32), -np.ones((1, 1), np.int32), down, False)
            lam = np.float32(mask.any())
            score = np.array([[20.0 * lam - 10.0]], np.float32)
            ptr = lam * ptr + (1 - lam) * self.t["no_obj_ptr"]
            out = Out(low.astype(np.float32), ptr.astype(np.float32), score)
        else:
            if is_init_cond:
                pix = vf + self.t["no_mem_embed"].reshape(1, -1, 1, 1)
            else:
                pix = self.condition(o, frame, vf, vpos, reverse)
            n = 0 if points is None else points[1].shape[1]
            multimask = bool(dec["multimask_output_in_sam"] and (is_init_cond or dec["multimask_output_for_tracking"])
                             and dec["multimask_min_pt_num"] <= n <= dec["multimask_max_pt_num"])
            coords, labels = points if points is not None else (np.zeros((1, 1, 2), np.float32), -np.ones((1, 1), np.int32))
            low, ptr, score = self.decode(pix, hr0, hr1, coords, labels, prev_logits, multimask)
            out = Out(low, ptr, score)
        if run_mem_encoder:
            out.maskmem_features = self.encode_memory(frame, out.pred_masks, out.object_score_logits, points is not None)
        return out

    def condition(self, o: ObjState, frame, vf, vpos, reverse):
        """Memory attention for one object: a batch of one, `memory` [1, F, mem_dim, H, W] and `object_pointers`
        [1, P, C]; graphs exported before 0.3.0 take them without the objects dimension."""
        pick = select_memory_from_settings(self.m, frame, o.cond, o.non_cond, self.num_frames, reverse)
        mem = np.concatenate([output_of(t, c, o.cond, o.non_cond).maskmem_features for t, _, c in pick.frames])
        ptrs = [output_of(t, c, o.cond, o.non_cond).obj_ptr for t, _, c in pick.pointers]
        ptrs = np.concatenate(ptrs) if ptrs else np.zeros((0, self.m["hidden_dim"]), np.float32)
        memory_spec = next(i for i in self.m["graphs"]["memory_attention"]["inputs"] if i["name"] == "memory")
        if len(memory_spec["shape"]) == 5:
            mem, ptrs = mem[None], ptrs[None]
        return self.sess["memory_attention"].run(None, {
            "current_features": vf, "current_pos_enc": vpos, "memory": mem, "memory_pos_enc": self.pos_enc,
            "memory_temporal_slot": np.array([s for _, s, _ in pick.frames], np.int64),
            "object_pointers": ptrs, "object_pointer_positions": np.array([p for _, p, _ in pick.pointers], np.float32),
        })[0]

    # -- the official API ----------------------------------------------------------------------------------
    def _obj(self, obj_id) -> ObjState:
        return self.objs.setdefault(obj_id, ObjState())

    def _prompt_frame(self, o: ObjState, frame):
        is_init = frame not in o.tracked
        reverse = False if is_init else o.tracked[frame]
        is_cond = is_init or self.settings["add_all_frames_to_correct_as_cond"]
        return is_init, reverse, is_cond

    def add_points(self, frame, obj_id, points, labels, clear_old=True, box=None):
        o = self._obj(obj_id)
        pts = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32)
        lab = np.zeros((0,), np.int32) if labels is None else np.asarray(labels, np.int32)
        if box is not None:
            pts = np.concatenate([np.asarray(box, np.float32).reshape(2, 2), pts])
            lab = np.concatenate([np.array([2, 3], np.int32), lab])
        pts = (pts / np.array([self.w, self.h], np.float32)).astype(np.float32) * np.float32(self.s)
        pts, lab = pts[None].astype(np.float32), lab[None]
        if not clear_old and frame in o.points:
            pts = np.concatenate([o.points[frame][0], pts], axis=1)
            lab = np.concatenate([o.points[frame][1], lab], axis=1)
        o.points[frame] = (pts, lab)
        o.masks.pop(frame, None)
        is_init, reverse, is_cond = self._prompt_frame(o, frame)
        temp = o.temp_cond if is_cond else o.temp_non_cond
        prev = temp.get(frame) or o.cond.get(frame) or o.non_cond.get(frame)
        prev_logits = None if prev is None else np.clip(prev.pred_masks, -32.0, 32.0)
        temp[frame] = self.run_frame(o, frame, is_init, o.points[frame], None, reverse, False, prev_logits)
        return self.consolidate(frame, is_cond)

    def add_mask(self, frame, obj_id, mask: np.ndarray):
        o = self._obj(obj_id)
        t = torch.from_numpy(mask.astype(np.float32))[None, None]
        if mask.shape != (self.s, self.s):
            t = (F.interpolate(t, size=(self.s, self.s), mode="bilinear", align_corners=False, antialias=True) >= 0.5).float()
        o.masks[frame] = t.numpy()
        o.points.pop(frame, None)
        is_init, reverse, is_cond = self._prompt_frame(o, frame)
        temp = o.temp_cond if is_cond else o.temp_non_cond
        temp[frame] = self.run_frame(o, frame, is_init, None, o.masks[frame], reverse, False)
        return self.consolidate(frame, is_cond)

    def consolidate(self, frame, is_cond):
        res = []
        for obj_id, o in self.objs.items():
            temp = o.temp_cond if is_cond else o.temp_non_cond
            out = temp.get(frame) or o.cond.get(frame) or o.non_cond.get(frame)
            res.append((frame, obj_id, out))
        return res

    def preflight(self):
        if not self.objs:
            raise RuntimeError("No input points or masks are provided for any object; please add inputs first.")
        for obj_id, o in self.objs.items():
            for temp, store in ((o.temp_non_cond, o.non_cond), (o.temp_cond, o.cond)):
                for frame, out in temp.items():
                    if out.maskmem_features is None:
                        out.maskmem_features = self.encode_memory(frame, out.pred_masks, out.object_score_logits, True)
                    store[frame] = out
                temp.clear()
            if not o.cond:
                raise RuntimeError(f"No input points or masks are provided for object id {obj_id}; please add inputs first.")
            for frame in o.cond:
                o.non_cond.pop(frame, None)

    def propagate(self, start=None, max_frames=None, reverse=False):
        self.preflight()
        if start is None:
            start = min(t for o in self.objs.values() for t in o.cond)
        if max_frames is None:
            max_frames = self.num_frames
        if reverse:
            end = max(start - max_frames, 0)
            order = range(start, end - 1, -1) if start > 0 else []
        else:
            end = min(start + max_frames, self.num_frames - 1)
            order = range(start, end + 1)
        for frame in order:
            res = []
            for obj_id, o in self.objs.items():
                if frame in o.cond:
                    out = o.cond[frame]
                else:
                    out = self.run_frame(o, frame, False, None, None, reverse, True)
                    o.non_cond[frame] = out
                o.tracked[frame] = reverse
                res.append((frame, obj_id, out))
            yield res

    def remove_object(self, obj_id):
        if obj_id not in self.objs:
            return []
        if len(self.objs) == 1:
            self.objs.clear()
            return []
        o = self.objs[obj_id]
        frames = set(o.points) | set(o.masks)
        for frame in frames:
            o.points.pop(frame, None)
            o.masks.pop(frame, None)
            o.temp_cond.pop(frame, None)
            o.temp_non_cond.pop(frame, None)
            out = o.cond.pop(frame, None)
            if out is not None:
                o.non_cond[frame] = out
                o.tracked.pop(frame, None)
        del self.objs[obj_id]
        res = []
        for frame in frames:
            is_cond = any(frame in r.temp_cond for r in self.objs.values())
            res += self.consolidate(frame, is_cond)
        return res

    def reset(self):
        self.objs.clear()


def replay(model_dir: str, clip_dir: str, script_path: str, trace_dir: str) -> dict:
    """Run the script through OnnxPredictor and compare each output with the trace, matched by (frame, object)."""
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    images, h, w = load_frames(clip_dir, manifest["image_size"], manifest["image_mean"], manifest["image_std"])
    script = load_script(script_path, len(images))
    with open(os.path.join(trace_dir, "trace.json")) as f:
        trace = json.load(f)
    settings = {k: v for k, v in trace["predictor"].items() if k == "add_all_frames_to_correct_as_cond"}
    p = OnnxPredictor(model_dir, images.numpy(), h, w, settings)
    script_dir = os.path.dirname(os.path.abspath(script_path))
    worst = {"logits": 0.0, "sign_mismatches": 0, "mask_mismatches": 0, "outputs": 0}
    for i, it in enumerate(script["interactions"]):
        op = it["op"]
        if op in ("add_points", "add_box"):
            got = p.add_points(it["frame"], it["object"], it.get("points"), it.get("labels"),
                               True if op == "add_box" else it.get("clear_old_points", True), it.get("box"))
        elif op == "add_mask":
            got = p.add_mask(it["frame"], it["object"], load_mask(os.path.join(script_dir, it["mask"]), w, h))
        elif op == "propagate":
            got = [r for frame_res in p.propagate(it.get("start_frame"), it.get("max_frames"), it.get("reverse", False)) for r in frame_res]
        elif op == "remove_object":
            got = p.remove_object(it["object"])
        else:
            p.reset()
            got = []
        step = trace["steps"][i]
        if step["file"] is None:
            assert not got, f"step {i}: the driver output {len(got)} entries, the trace none"
            continue
        z = np.load(os.path.join(trace_dir, step["file"]))
        want = {(int(f), int(o)): k for k, (f, o) in enumerate(zip(z["frame"], z["object"]))}
        assert len(want) == len(got), f"step {i}: {len(got)} outputs vs {len(want)} in the trace"
        for frame, obj_id, out in got:
            k = want[(frame, obj_id)]
            ref_low = z["low_res_logits"][k]
            low = np.full_like(ref_low, NO_OBJ_SCORE) if out is None else out.pred_masks[0, 0]
            worst["logits"] = max(worst["logits"], float(np.abs(low - ref_low).max()))
            ref_score = z["object_score_logits"][k]
            score = np.nan if out is None else float(out.object_score_logits.reshape(-1)[0])
            if not (np.isnan(score) and np.isnan(ref_score)) and (np.sign(score) != np.sign(ref_score)):
                worst["sign_mismatches"] += 1
            up = F.interpolate(torch.from_numpy(low)[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            decided = up.abs() >= 1e-3
            worst["mask_mismatches"] += int(((up > 0) != torch.from_numpy(z["mask"][k]))[decided].sum())
            worst["outputs"] += 1
    return worst
