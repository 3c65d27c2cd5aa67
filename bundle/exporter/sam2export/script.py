"""Interaction scripts (docs/formats.md): read and checked before anything runs."""

from __future__ import annotations

import json
import math
import os

from .errors import UserError

OPS = {"add_points", "add_box", "add_mask", "propagate", "remove_object", "reset"}
PREDICTOR_KEYS = {"add_all_frames_to_correct_as_cond", "fill_hole_area", "non_overlap_masks"}


def load_script(path: str, num_frames: int | None = None) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"The script {path} does not exist.")
    try:
        with open(path) as f:
            s = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"The script {path} is not valid JSON: {e}.") from None
    if s.get("format") != "sam2-rotoscope-script":
        raise UserError(f"The file {path} is not an interaction script (its format is {s.get('format')!r}).")
    if s.get("version", 0) > 1:
        raise UserError(f"The script {path} has version {s['version']}, newer than this tool reads (1).")
    for k in s.get("predictor", {}):
        if k not in PREDICTOR_KEYS:
            raise UserError(f"The script {path} sets the unknown predictor setting {k!r}.")
    for i, it in enumerate(s.get("interactions", [])):
        _check(path, i, it, num_frames)
    return s


def _check(path, i, it, num_frames):
    def bad(msg):
        raise UserError(f"Interaction {i} ({it.get('op', '?')}) in {path}: {msg}.")

    op = it.get("op")
    if op not in OPS:
        bad(f"unknown op {op!r}; use one of {', '.join(sorted(OPS))}")
    frames = [it[k] for k in ("frame", "start_frame") if it.get(k) is not None]
    for f in frames:
        if not isinstance(f, int) or f < 0 or (num_frames is not None and f >= num_frames):
            bad(f"frame {f} is outside the clip (0–{num_frames - 1 if num_frames else '?'})")
    if op in ("add_points", "add_box", "add_mask", "remove_object"):
        if not isinstance(it.get("object"), int) or it["object"] < 0:
            bad("needs an 'object' id, a non-negative integer")
    if op in ("add_points", "add_box", "add_mask") and "frame" not in it:
        bad("needs a 'frame'")
    pts = it.get("points")
    if op == "add_points" and not pts:
        bad("needs at least one point")
    if pts is not None:
        labels = it.get("labels")
        if labels is None or len(labels) != len(pts):
            bad("needs one label per point")
        if any(lab not in (0, 1) for lab in labels):
            bad("labels must be 1 (positive) or 0 (negative)")
        if any(len(p) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in p) for p in pts):
            bad("points must be [x, y] pairs of finite numbers")
    if op == "add_box":
        b = it.get("box")
        if not b or len(b) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in b):
            bad("needs a 'box' [x0, y0, x1, y1]")
        if b[0] > b[2] or b[1] > b[3]:
            bad("the box's first corner must be the top-left one (x0 ≤ x1, y0 ≤ y1)")
    if op == "add_mask" and not isinstance(it.get("mask"), str):
        bad("needs a 'mask' PNG path")
    if op == "propagate" and it.get("max_frames") is not None and (not isinstance(it["max_frames"], int) or it["max_frames"] < 0):
        bad("max_frames must be a non-negative integer")
