"""Time the official `SAM2VideoPredictor` (CPU) on the re-track case of the engine's benchmark.

The case (`engine/examples/bench/retrack.rs` times the same on the engine): a clip of `--frames` frames made from a
fixture clip played forward and then backward (frame i is the clip's frame i for i < n, else 2n − 1 − i, so that
the motion has no cut; a 12-frame clip gives 24), one positive click at the centre of frame 0 (object 1) and a
propagation over the whole clip (untimed: it only makes every frame seen once), then the timed part: a correction
click on the middle frame (`add_new_points_or_box`, a positive click at 60 %/45 % of the frame, replacing the
object's clicks there) and `propagate_in_video` from that frame to the end. The official predictor keeps only the
last frame's encoder features, so it encodes every frame again; the engine reads them back from its frame cache.

Corrections stick here (`add_all_frames_to_correct_as_cond = True`), as they do by default in the engine, so both
do the same work: the corrected frame becomes a conditioning frame and the frames after it are tracked again.
Writes a JSON summary to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from .bench_official import cpu_sample, others_since
from .clip import load_frames
from .errors import UserError, friendly_main
from .official import init_state_on, official_predictor


def ping_pong(count: int, frames: int) -> list[int]:
    """Source frame of each of `frames` frames from a clip of `count`: forward, then backward, repeated."""
    period = 2 * count
    order = []
    for i in range(frames):
        k = i % period
        order.append(k if k < count else period - 1 - k)
    return order


def correction_point(width: int, height: int) -> list[float]:
    """Where the correction click goes (the same as the engine's benchmark)."""
    return [width * 0.6, height * 0.45]


def run(model_dir, clip_dir, frames, threads, checkpoint=None, log=print):
    if frames < 4:
        raise UserError(f"--frames must be at least 4, not {frames}.")
    torch.set_num_threads(threads)
    manifest, predictor = official_predictor(model_dir, checkpoint)
    predictor.add_all_frames_to_correct_as_cond = True
    clip, video_h, video_w = load_frames(clip_dir, predictor.image_size, manifest["image_mean"], manifest["image_std"])
    order = ping_pong(len(clip), frames)
    images = clip[order]
    state = init_state_on(predictor, clip_dir, images, video_h, video_w)

    corrected = frames // 2
    positive = np.array([1], dtype=np.int32)
    log(
        f"official predictor, {manifest['size']} at {manifest['image_size']}, torch {torch.__version__}, {threads} threads: "
        f"re-track on {frames} frames of {os.path.basename(os.path.normpath(clip_dir))} (forward then backward)"
    )
    with torch.inference_mode():
        centre = np.array([[video_w / 2.0, video_h / 2.0]], dtype=np.float32)
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=centre, labels=positive)
        start = time.perf_counter()
        for _ in predictor.propagate_in_video(state, start_frame_idx=0):
            pass
        first_pass_s = time.perf_counter() - start

        cpu_start = cpu_sample()
        start = time.perf_counter()
        point = np.array([correction_point(video_w, video_h)], dtype=np.float32)
        predictor.add_new_points_or_box(
            state, frame_idx=corrected, obj_id=1, points=point, labels=positive, clear_old_points=True
        )
        click_s = time.perf_counter() - start
        yielded = []
        for frame, _, _ in predictor.propagate_in_video(state, start_frame_idx=corrected):
            yielded.append(frame)
        total_s = time.perf_counter() - start
        others, ticks = others_since(cpu_start, cpu_sample())
    if yielded != list(range(corrected, frames)):
        raise UserError(f"The official predictor yielded frames {yielded}, not {corrected}..{frames - 1}.")
    log(
        f"  first pass {first_pass_s:.1f} s; correction click on frame {corrected} {click_s * 1e3:.0f} ms, "
        f"click + Track Forward to frame {frames - 1}: {total_s:.2f} s (other processes used {others / max(1, ticks):.0%} of the CPU)"
    )
    return {
        "format": "sam2-rotoscope-bench-retrack",
        "version": 1,
        "model": os.path.realpath(model_dir),
        "image_size": manifest["image_size"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "clip": os.path.realpath(clip_dir),
        "frames": frames,
        "corrected_frame": corrected,
        "first_pass_s": first_pass_s,
        "click_s": click_s,
        "retrack_s": total_s,
        "others_cpu_share": others / max(1, ticks),
    }


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory (made by export)")
    p.add_argument("--clip", required=True, help="folder of frames, played forward then backward")
    p.add_argument("--frames", type=int, default=24, help="frames of the re-track clip (at least 4)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the engine's benchmark uses the same)")
    p.add_argument("--checkpoint", help="the checkpoint the model directory was exported from (real weights)")
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)
    if a.threads < 1:
        raise UserError(f"--threads must be at least 1, not {a.threads}.")
    result = run(a.model, a.clip, a.frames, a.threads, checkpoint=a.checkpoint)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2, allow_nan=False)
        f.write("\n")
    print(f"click + Track Forward {result['retrack_s']:.2f} s; wrote {a.out}")


if __name__ == "__main__":
    main()
