"""Regenerate the committed test fixtures (tests/fixtures): the shrunk model, three synthetic clips and a
photographic one (as PNG and as JPEG frames), their mask prompts, the interaction scripts and the official
predictor's reference traces for each script, and the resampling and JPEG decoding reference data.

    bundle/exporter/make-fixtures.sh            (runs `python -m sam2export.fixtures --out tests/fixtures`)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil

import numpy as np
import torch

from .build import build
from .errors import UserError, friendly_main
from .export import export_model_dir
from .fast import add_sets
from .jpeg_fixtures import make_jpeg_fixtures
from .onnx_driver import replay
from .reference import run_reference
from .resample_fixtures import make_resample_fixtures
from .template import save_checkpoint
from .synthetic import HEIGHT, WIDTH, make_clips, make_photo_clip, save_mask

# The fixture model: shrunk architecture, seed and noise chosen so that objects are present on most frames
# and absent on some, with no object score within 1e-3 of zero (a sign that tiny float differences could flip).
MODEL = dict(size="test", seed=3, noise_std=0.1, object_score_bias=0.0)
MIN_SCORE_MARGIN = 1e-3
# The original SAM 2 (2.0) family: the same shrunk architecture with 2.0's settings (no `no_obj_embed_spatial`,
# pointer positions unsigned and not encoded), traced on a few scripts that reach those paths (an absent object,
# pointers of a reverse propagation, several objects).
MODEL_SAM2 = dict(family="sam2", size="test", seed=3, noise_std=0.1, object_score_bias=1.25)
SAM2_SCRIPTS = ("one_click", "two_objects", "correction_kept", "mid_clip", "occlusion", "photo")


def _pts(*xy):
    return [[float(x), float(y)] for x, y in xy]


def scripts() -> dict[str, dict]:
    """name → (clip, script). Coordinates follow the shapes drawn in synthetic.py."""
    disk_y = lambda t: 90 + 4 * math.sin(t / 2)  # noqa: E731 — the shapes clip's disk centre
    s = {
        "one_click": ("shapes", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((70, 90)), "labels": [1]},
            {"op": "propagate"},
        ]),
        "clicks": ("shapes", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((70, 90), (150, 120), (60, 80)), "labels": [1, 0, 1]},
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((255, 45)), "labels": [0], "clear_old_points": False},
            {"op": "propagate"},
        ]),
        "box": ("shapes", [
            {"op": "add_box", "frame": 0, "object": 1, "box": [228.0, 18.0, 282.0, 72.0]},
            {"op": "add_box", "frame": 0, "object": 2, "box": [38.0, 58.0, 102.0, 122.0], "points": _pts((70, 90)), "labels": [1]},
            {"op": "propagate"},
        ]),
        "mask_prompt": ("shapes", [
            {"op": "add_mask", "frame": 0, "object": 1, "mask": "../masks/shapes_disk_f0.png"},
            {"op": "propagate"},
        ]),
        "correction_kept": ("crossing", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((60, 80)), "labels": [1]},
            {"op": "propagate"},
            {"op": "add_points", "frame": 6, "object": 1, "points": _pts((180, 80), (150, 95)), "labels": [1, 0]},
            {"op": "propagate"},
        ], {"add_all_frames_to_correct_as_cond": True}),
        "correction_dropped": ("crossing", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((60, 80)), "labels": [1]},
            {"op": "propagate"},
            {"op": "add_points", "frame": 6, "object": 1, "points": _pts((180, 80), (150, 95)), "labels": [1, 0]},
            {"op": "propagate"},
        ], {"add_all_frames_to_correct_as_cond": False}),
        "mid_clip": ("shapes", [
            {"op": "add_points", "frame": 5, "object": 1, "points": _pts((130, disk_y(5))), "labels": [1]},
            {"op": "propagate", "start_frame": 5},
            {"op": "propagate", "start_frame": 5, "reverse": True},
            {"op": "propagate", "start_frame": 7, "reverse": True, "max_frames": 3},
        ]),
        "future_prompt": ("shapes", [
            {"op": "add_points", "frame": 4, "object": 1, "points": _pts((118, disk_y(4))), "labels": [1]},
            {"op": "propagate", "start_frame": 0, "max_frames": 6},
        ]),
        "two_objects": ("crossing", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((60, 80)), "labels": [1]},
            {"op": "add_points", "frame": 0, "object": 2, "points": _pts((270, 90)), "labels": [1]},
            {"op": "propagate"},
        ]),
        "three_objects": ("crossing", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((60, 80)), "labels": [1]},
            {"op": "add_box", "frame": 0, "object": 2, "box": [234.0, 50.0, 306.0, 106.0]},
            {"op": "add_mask", "frame": 0, "object": 3, "mask": "../masks/crossing_square_f0.png"},
            {"op": "propagate"},
            {"op": "remove_object", "object": 2},
            {"op": "propagate", "max_frames": 4},
        ]),
        "added_later": ("crossing", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((60, 80)), "labels": [1]},
            {"op": "propagate"},
            {"op": "add_points", "frame": 4, "object": 7, "points": _pts((190, 90)), "labels": [1]},
            {"op": "propagate"},
        ]),
        "occlusion": ("occlusion", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((40, 95)), "labels": [1]},
            {"op": "add_mask", "frame": 6, "object": 1, "mask": "../masks/empty.png"},
            {"op": "propagate"},
        ]),
        "occlusion_track": ("occlusion", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((40, 95), (160, 40)), "labels": [1, 0]},
            {"op": "propagate"},
        ]),
        "photo": ("photo", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((172, 63)), "labels": [1]},
            {"op": "add_points", "frame": 0, "object": 2, "points": _pts((262, 190), (120, 180)), "labels": [1, 0]},
            {"op": "propagate"},
        ]),
        # The photo clip as JPEG frames, the official tools' clip format: JPEG decoding must be at parity too.
        "photo_jpeg": ("photo_jpeg", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((172, 63)), "labels": [1]},
            {"op": "add_points", "frame": 0, "object": 2, "points": _pts((262, 190), (120, 180)), "labels": [1, 0]},
            {"op": "propagate"},
        ]),
        "photo_jpeg_box": ("photo_jpeg", [
            {"op": "add_box", "frame": 3, "object": 1, "box": [90.0, 10.0, 250.0, 170.0]},
            {"op": "propagate", "start_frame": 3},
            {"op": "propagate", "start_frame": 3, "reverse": True},
        ]),
        "reset": ("shapes", [
            {"op": "add_points", "frame": 0, "object": 1, "points": _pts((70, 90)), "labels": [1]},
            {"op": "propagate", "max_frames": 3},
            {"op": "reset"},
            {"op": "add_box", "frame": 2, "object": 5, "box": [200.0, 25.0, 272.0, 90.0]},
            {"op": "propagate", "start_frame": 2, "reverse": True},
        ]),
    }
    out = {}
    for name, v in s.items():
        clip, interactions = v[0], v[1]
        script = {"format": "sam2-rotoscope-script", "version": 1, "clip": f"../clips/{clip}"}
        if len(v) > 2:
            script["predictor"] = v[2]
        script["interactions"] = interactions
        out[name] = script
    return out


def make_fixtures(root: str, log=print) -> dict:
    torch.set_num_threads(1)
    root = os.path.abspath(root)
    for sub in ("clips", "masks", "scripts", "traces", "models"):
        shutil.rmtree(os.path.join(root, sub), ignore_errors=True)

    masks = make_clips(os.path.join(root, "clips"))
    # tests/fixtures/photos is committed (public-domain / CC0 photographs, see its README).
    make_photo_clip(os.path.join(root, "clips"), os.path.join(root, "photos", "chelsea.png"))
    make_photo_clip(os.path.join(root, "clips"), os.path.join(root, "photos", "chelsea.png"), name="photo_jpeg",
                    jpeg_quality=90)
    save_mask(os.path.join(root, "masks", "shapes_disk_f0.png"), masks["shapes"][0][0])
    save_mask(os.path.join(root, "masks", "crossing_square_f0.png"), masks["crossing"][0][0])
    save_mask(os.path.join(root, "masks", "empty.png"), np.zeros((HEIGHT, WIDTH), bool))

    built = build(**MODEL)
    # The same weights as a PyTorch checkpoint in the official layout, for the engine's checkpoint loading
    # (tests/checkpoint.rs: it must give this model directory bit for bit), and a checkpoint that is not SAM 2.
    os.makedirs(os.path.join(root, "checkpoints"), exist_ok=True)
    save_checkpoint(built, os.path.join(root, "checkpoints", "sam2.1_hiera_test.pt"))
    torch.save({"model": {"encoder.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}},
               os.path.join(root, "checkpoints", "not_sam2.pt"))
    model_dir = os.path.join(root, "models", "test")
    manifest = export_model_dir(built, model_dir, log=log)
    if not manifest["verification"]["passed"]:
        raise UserError("The fixture model failed its self-check; see the lines above.")
    # Its fast sets (tests/precision.rs): beside the exact graphs, which they leave as they are.
    add_sets(model_dir, log=log)

    summary = {}
    os.makedirs(os.path.join(root, "scripts"))
    for name, script in scripts().items():
        path = os.path.join(root, "scripts", f"{name}.json")
        with open(path, "w") as f:
            json.dump(script, f, indent=2, allow_nan=False)
            f.write("\n")
        summary[name] = _trace(root, model_dir, name, name, log)
    summary.update(make_sam2_fixtures(root, log=log))
    # Reference data for the engine's image resampling (Pillow / PyTorch), read by engine/tests/resample.rs.
    make_resample_fixtures(root)
    # Reference data for the engine's JPEG decoding (Pillow's bytes), read by engine/tests/jpeg.rs.
    make_jpeg_fixtures(root)
    return summary


def _trace(root: str, model_dir: str, script_name: str, trace_name: str, log) -> dict:
    """Record the official predictor's trace of one committed script and hold the exported graphs to it."""
    path = os.path.join(root, "scripts", f"{script_name}.json")
    with open(path) as f:
        script = json.load(f)
    clip = os.path.normpath(os.path.join(root, "scripts", script["clip"]))
    trace_dir = os.path.join(root, "traces", trace_name)
    trace = run_reference(model_dir, clip, path, trace_dir, log=lambda *a: None)
    scores = []
    for st in trace["steps"]:
        if st["file"]:
            z = np.load(os.path.join(trace_dir, st["file"]))
            scores.append(z["object_score_logits"])
    s = np.concatenate(scores)
    s = s[~np.isnan(s)]
    margin = float(np.min(np.abs(s)))
    outputs = sum(st["outputs"] for st in trace["steps"])
    # The exported graphs, driven by the plain-Python predictor, must reproduce the official one.
    r = replay(model_dir, clip, path, trace_dir)
    row = {"outputs": outputs, "present": int((s > 0).sum()), "absent": int((s <= 0).sum()),
           "min_score_margin": margin, "onnx_replay_max_logit_diff": r["logits"]}
    log(f"trace {trace_name:18s} {outputs:4d} outputs, {row['present']:3d} present, {row['absent']:3d} absent, "
        f"min |score| {margin:.4f}; ONNX replay max |Δlogit| {r['logits']:.2e}, "
        f"{r['sign_mismatches']} sign / {r['mask_mismatches']} mask mismatches")
    if margin < MIN_SCORE_MARGIN:
        raise UserError(f"The trace {trace_name} has an object score within {MIN_SCORE_MARGIN} of zero; pick another fixture seed.")
    if r["logits"] > 1e-4 or r["sign_mismatches"] or r["mask_mismatches"]:
        raise UserError(f"The ONNX graphs do not reproduce the official predictor on the trace {trace_name}: {r}.")
    return row


def make_sam2_fixtures(root: str, log=print) -> dict:
    """The SAM 2.0 fixture model (models/test-sam2) and its traces (traces/sam2_<script>), on the committed
    clips and scripts."""
    torch.set_num_threads(1)
    root = os.path.abspath(root)
    model_dir = os.path.join(root, "models", "test-sam2")
    manifest = export_model_dir(build(**MODEL_SAM2), model_dir, log=log)
    if not manifest["verification"]["passed"]:
        raise UserError("The SAM 2.0 fixture model failed its self-check; see the lines above.")
    summary = {}
    for name in SAM2_SCRIPTS:
        shutil.rmtree(os.path.join(root, "traces", f"sam2_{name}"), ignore_errors=True)
        summary[f"sam2_{name}"] = _trace(root, model_dir, name, f"sam2_{name}", log)
    return summary


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the fixtures folder (tests/fixtures)")
    p.add_argument("--only-sam2", action="store_true",
                   help="regenerate only the SAM 2.0 fixture model and its traces (the rest must be there)")
    a = p.parse_args(argv)
    if a.only_sam2:
        make_sam2_fixtures(a.out)
    else:
        make_fixtures(a.out)


if __name__ == "__main__":
    main()
