"""The official predictor in float32 and under bfloat16 autocast, on the same weights, frames and threads.

The engine's fast precision mode is held to what a PyTorch user gets by wrapping the official predictor in
`torch.autocast("cpu", dtype=torch.bfloat16)`: at least as fast, with no more deviation from its own exact mode
than the autocast run shows from float32. This tool measures the official side of that comparison, the same
procedure `bench_official` times (one positive click at the centre of frame 0, `propagate_in_video` over the
first `--frames` frames, frames 2..n−1 timed), once in float32 and once under autocast, and compares the two runs'
low-resolution mask logits (the `pred_masks` the predictor stores per frame, S/4 × S/4) frame by frame:

- the largest |logit difference| over every pixel of every frame;
- the fraction of pixels whose mask flips (logit > 0 in one run and not in the other).

Writes a JSON summary to `--out`, read by `engine/examples/bench` (`--official-precision`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import numpy as np
import torch

from .bench_official import cpu_sample, others_since
from .clip import load_frames
from .errors import UserError, friendly_main
from .official import init_state_on, official_predictor

MODES = ("float32", "bfloat16_autocast")


def autocast(mode: str):
    if mode == "bfloat16_autocast":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def track(predictor, clip_dir, images, video_h, video_w, mode, log):
    """One propagation in `mode`: the timed seconds over frames 2..n−1 and every frame's low-res logits."""
    n = len(images)
    state = init_state_on(predictor, clip_dir, images, video_h, video_w)
    centre = np.array([[video_w / 2.0, video_h / 2.0]], dtype=np.float32)
    positive = np.array([1], dtype=np.int32)
    stamps, cpu = [], {}
    with torch.inference_mode(), autocast(mode):
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=centre, labels=positive)
        for frame, _, _ in predictor.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=n - 1):
            stamps.append((frame, time.perf_counter()))
            if frame in (1, n - 1):
                cpu[frame] = cpu_sample()
    frames = [f for f, _ in stamps]
    if frames != list(range(n)):
        raise UserError(f"The official predictor yielded frames {frames} on {clip_dir}, not 0..{n - 1}.")
    timed_s = stamps[-1][1] - stamps[1][1]
    others, ticks = others_since(cpu[1], cpu[n - 1])
    outputs = state["output_dict_per_obj"][0]
    logits = []
    for t in range(n):
        out = outputs["cond_frame_outputs"].get(t) or outputs["non_cond_frame_outputs"].get(t)
        if out is None:
            raise UserError(f"The official predictor kept no output for frame {t}.")
        logits.append(out["pred_masks"].float().cpu().numpy().reshape(-1))
    log(f"  {mode}: {(n - 2) / timed_s:.3f} fps over frames 2..{n - 1} (other processes used {others / max(1, ticks):.0%} of the CPU)")
    return {"timed_s": timed_s, "fps": (n - 2) / timed_s, "others_ticks": others, "ticks": ticks}, np.stack(logits)


def deviation(reference: np.ndarray, other: np.ndarray) -> dict:
    """Largest |logit difference| and the fraction of pixels whose mask (logit > 0) differs."""
    if reference.shape != other.shape:
        raise UserError(f"The two runs' logits differ in shape ({reference.shape} and {other.shape}).")
    flips = np.count_nonzero((reference > 0) != (other > 0))
    return {
        "max_abs_logit": float(np.max(np.abs(reference - other))),
        "flipped_fraction": flips / reference.size,
        "pixels": int(reference.size),
    }


def run(model_dir, clip, max_frames, threads, checkpoint=None, log=print):
    torch.set_num_threads(threads)
    manifest, predictor = official_predictor(model_dir, checkpoint)
    images, video_h, video_w = load_frames(clip, predictor.image_size, manifest["image_mean"], manifest["image_std"])
    if max_frames:
        images = images[:max_frames]
    if len(images) < 3:
        raise UserError(f"The clip {clip} has {len(images)} frames; the benchmark needs at least 3.")
    log(f"official predictor, float32 and bfloat16 autocast, {manifest['size']} at {manifest['image_size']}, "
        f"torch {torch.__version__}, {threads} threads")
    runs, logits = {}, {}
    for mode in MODES:
        runs[mode], logits[mode] = track(predictor, clip, images, video_h, video_w, mode, log)
    return {
        "format": "sam2-rotoscope-bench-official-precision",
        "version": 1,
        "model": os.path.realpath(model_dir),
        "clip": os.path.realpath(clip),
        "image_size": manifest["image_size"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "frames": len(images),
        "timed_frames": len(images) - 2,
        "runs": runs,
        "deviation": deviation(logits["float32"], logits["bfloat16_autocast"]),
    }


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory (made by export)")
    p.add_argument("--clip", required=True, help="folder of frames")
    p.add_argument("--frames", type=int, default=0, help="use only the first N frames (0: all)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the engine's benchmark uses the same)")
    p.add_argument("--checkpoint", help="the checkpoint the model directory was exported from (real weights)")
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)
    if a.threads < 1:
        raise UserError(f"--threads must be at least 1, not {a.threads}.")
    if a.frames != 0 and a.frames < 3:
        raise UserError(f"--frames must be 0 (all) or at least 3, not {a.frames}.")
    result = run(a.model, a.clip, a.frames, a.threads, checkpoint=a.checkpoint)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2, allow_nan=False)
        f.write("\n")
    d = result["deviation"]
    print(f"bfloat16 autocast vs float32: max |Δlogit| {d['max_abs_logit']:.4g}, "
          f"{d['flipped_fraction']:.4%} of mask pixels flip; wrote {a.out}")


if __name__ == "__main__":
    main()
