"""Run the official `SAM2VideoPredictor` (CPU) over a clip and an interaction script; write a reference trace.

The trace records, for every output of every step, what the predictor holds (low-res logits, object score)
and what it returns (the video-resolution mask) — see docs/formats.md. Only two things are touched in the
official code: frames may be PNG as well as JPEG (loaded by the official per-image loader), and upstream
issue #308's dtype crash is worked around without changing a value (`official.patch_memory_dtype`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import types

import numpy as np
import torch

from .build import rebuild_from_manifest
from .clip import load_frames, load_mask
from .errors import UserError, friendly_main
from .official import init_state_on, patch_memory_dtype
from .script import load_script

NO_OBJ_SCORE = -1024.0


class _Recorder:
    """Hooks two predictor methods to see the low-res logits behind each returned video-resolution mask."""

    def __init__(self, predictor):
        self.consolidations = []  # (frame, low-res [O,1,h,w], scores [O]) for each video-res consolidation
        self.last_low_res = None
        cons = predictor._consolidate_temp_output_across_obj
        orig_res = predictor._get_orig_video_res_output
        rec = self

        def consolidate(self_, state, frame_idx, is_cond, consolidate_at_video_res=False):
            out = cons(state, frame_idx, is_cond=is_cond, consolidate_at_video_res=consolidate_at_video_res)
            if consolidate_at_video_res:
                low = cons(state, frame_idx, is_cond=is_cond, consolidate_at_video_res=False)["pred_masks"]
                rec.consolidations.append((frame_idx, low.clone(), _scores_at(state, frame_idx, is_cond)))
            return out

        def get_orig(self_, state, any_res_masks):
            rec.last_low_res = any_res_masks.clone()
            return orig_res(state, any_res_masks)

        predictor._consolidate_temp_output_across_obj = types.MethodType(consolidate, predictor)
        predictor._get_orig_video_res_output = types.MethodType(get_orig, predictor)


def _scores_at(state, frame_idx, is_cond):
    """Object scores with the same lookup order as `_consolidate_temp_output_across_obj`; NaN = no output."""
    key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
    scores = []
    for obj_idx in range(len(state["obj_idx_to_id"])):
        temp = state["temp_output_dict_per_obj"][obj_idx]
        out_d = state["output_dict_per_obj"][obj_idx]
        out = temp[key].get(frame_idx)
        if out is None:
            out = out_d["cond_frame_outputs"].get(frame_idx)
        if out is None:
            out = out_d["non_cond_frame_outputs"].get(frame_idx)
        scores.append(float("nan") if out is None else float(out["object_score_logits"].reshape(-1)[0]))
    return scores


class _Step:
    def __init__(self):
        self.frame, self.object, self.low, self.score, self.mask = [], [], [], [], []

    def add(self, frame, obj_ids, low, scores, video_masks):
        for i, oid in enumerate(obj_ids):
            self.frame.append(frame)
            self.object.append(oid)
            self.low.append(low[i, 0].float().numpy())
            self.score.append(scores[i])
            self.mask.append((video_masks[i, 0] > 0.0).numpy())

    def save(self, path, s4, h, w):
        np.savez_compressed(
            path,
            frame=np.array(self.frame, dtype=np.int64),
            object=np.array(self.object, dtype=np.int64),
            low_res_logits=np.array(self.low, dtype=np.float32).reshape(-1, s4, s4),
            object_score_logits=np.array(self.score, dtype=np.float32),
            mask=np.array(self.mask, dtype=np.bool_).reshape(-1, h, w),
        )


def run_reference(model_dir, clip_dir, script_path, out_dir, *, checkpoint=None, predictor_settings=None, log=print):
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    built = rebuild_from_manifest(manifest, checkpoint)
    predictor = built.predictor
    images, video_h, video_w = load_frames(clip_dir, predictor.image_size, manifest["image_mean"], manifest["image_std"])
    num_frames = len(images)
    script = load_script(script_path, num_frames)
    settings = dict(script.get("predictor", {}))
    settings.update(predictor_settings or {})
    for k, v in settings.items():
        setattr(predictor, k, v)
    patch_memory_dtype(predictor)
    rec = _Recorder(predictor)

    state = init_state_on(predictor, clip_dir, images, video_h, video_w)

    script_dir = os.path.dirname(os.path.abspath(script_path))
    s4 = predictor.image_size // 4
    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".trace-", dir=parent)
    steps_meta = []
    try:
        for i, it in enumerate(script["interactions"]):
            op = it["op"]
            step = _Step()
            rec.consolidations.clear()
            try:
                if op in ("add_points", "add_box"):
                    pts = it.get("points")
                    labels = it.get("labels")
                    frame, obj_ids, masks = predictor.add_new_points_or_box(
                        state, frame_idx=it["frame"], obj_id=it["object"],
                        points=np.array(pts, dtype=np.float32) if pts else None,
                        labels=np.array(labels, dtype=np.int32) if pts else None,
                        clear_old_points=True if op == "add_box" else it.get("clear_old_points", True),
                        box=np.array(it["box"], dtype=np.float32) if op == "add_box" else None,
                    )
                    f, low, scores = rec.consolidations[-1]
                    step.add(frame, obj_ids, low, scores, masks)
                elif op == "add_mask":
                    mask = load_mask(os.path.join(script_dir, it["mask"]), video_w, video_h)
                    frame, obj_ids, masks = predictor.add_new_mask(state, frame_idx=it["frame"], obj_id=it["object"], mask=mask)
                    f, low, scores = rec.consolidations[-1]
                    step.add(frame, obj_ids, low, scores, masks)
                elif op == "propagate":
                    for frame, obj_ids, masks in predictor.propagate_in_video(
                        state, start_frame_idx=it.get("start_frame"), max_frame_num_to_track=it.get("max_frames"),
                        reverse=it.get("reverse", False),
                    ):
                        scores = []
                        for obj_idx in range(len(obj_ids)):
                            d = state["output_dict_per_obj"][obj_idx]
                            out = d["cond_frame_outputs"].get(frame) or d["non_cond_frame_outputs"][frame]
                            scores.append(float(out["object_score_logits"].reshape(-1)[0]))
                        step.add(frame, obj_ids, rec.last_low_res, scores, masks)
                elif op == "remove_object":
                    obj_ids, updated = predictor.remove_object(state, it["object"])
                    for (frame, masks), (f, low, scores) in zip(updated, rec.consolidations):
                        step.add(frame, obj_ids, low, scores, masks)
                elif op == "reset":
                    predictor.reset_state(state)
            except RuntimeError as e:
                raise UserError(f"Interaction {i} ({op}) in {script_path}: the official predictor refused it: {e}") from None
            name = None
            if step.frame:
                name = f"step_{i:03d}.npz"
                step.save(os.path.join(tmp, name), s4, video_h, video_w)
            steps_meta.append({"step": i, "op": op, "file": name, "outputs": len(step.frame)})
            log(f"step {i:3d} {op:14s} {len(step.frame):4d} outputs")

        with open(os.path.join(model_dir, "manifest.json"), "rb") as f:
            manifest_sha = hashlib.sha256(f.read()).hexdigest()
        trace = {
            "format": "sam2-rotoscope-trace",
            "version": 1,
            "producer": f"sam2 SAM2VideoPredictor on cpu, torch {torch.__version__}",
            "model_manifest_sha256": manifest_sha,
            "clip": os.path.relpath(os.path.abspath(clip_dir), os.path.abspath(out_dir)),
            "script": os.path.relpath(os.path.abspath(script_path), os.path.abspath(out_dir)),
            "video_size": [video_w, video_h],
            "num_frames": num_frames,
            "image_size": predictor.image_size,
            "predictor": {
                "add_all_frames_to_correct_as_cond": bool(predictor.add_all_frames_to_correct_as_cond),
                "fill_hole_area": int(predictor.fill_hole_area),
                "fill_hole_applied": False,
                "non_overlap_masks": bool(predictor.non_overlap_masks),
                "clear_non_cond_mem_around_input": bool(predictor.clear_non_cond_mem_around_input),
            },
            "steps": steps_meta,
        }
        with open(os.path.join(tmp, "trace.json"), "w") as f:
            json.dump(trace, f, indent=2, allow_nan=False)
            f.write("\n")
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return trace


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes"):
        return True
    if s.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {s!r}")


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory (made by export)")
    p.add_argument("--clip", required=True, help="folder of frames")
    p.add_argument("--script", required=True, help="interaction script (JSON)")
    p.add_argument("--out", required=True, help="trace folder to write")
    p.add_argument("--checkpoint", help="the checkpoint the model directory was exported from (real weights)")
    p.add_argument("--add-all-frames-to-correct-as-cond", type=_bool, metavar="BOOL",
                   help="keep correction clicks as conditioning frames (overrides the script)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it by ~1e-7)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    settings = {}
    if a.add_all_frames_to_correct_as_cond is not None:
        settings["add_all_frames_to_correct_as_cond"] = a.add_all_frames_to_correct_as_cond
    if not os.path.isfile(os.path.join(a.model, "manifest.json")):
        raise UserError(f"The model directory {a.model} has no manifest.json; export one with bundle/exporter first.")
    run_reference(a.model, a.clip, a.script, a.out, checkpoint=a.checkpoint, predictor_settings=settings)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
