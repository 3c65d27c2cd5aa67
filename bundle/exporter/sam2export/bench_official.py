"""Time the official `SAM2VideoPredictor` (CPU) on the same weights, clips and thread count as the engine's benchmark.

What is timed mirrors `engine/examples/bench` exactly, so that the two numbers divide:

- per clip, one positive click at the centre of frame 0 (object 1), then `propagate_in_video` over the first
  `--frames` frames. Frame 0 is re-yielded from storage and frame 1 is the warm-up (the first memory attention
  run), so the intervals between the yields of frames 1→2, …, n−2→n−1 are timed: n − 2 frames per clip;
- then click-to-mask latency: a new object (2) on the last propagated frame, whose features the predictor has
  cached, one warm-up click and `--clicks` timed clicks (the decoder only), as the engine's benchmark does.

The predictor is rebuilt from the model directory's manifest (as `reference` does), so only random-weight model
directories work without `--checkpoint`. Writes a JSON summary to `--out`.

For `bench/gpu.sh`: `--device cuda` runs it on the GPU (frames kept on the card, as `init_state` does by default),
`--precision bf16` under the bf16 autocast of the official demos, `--memory-frames A,B` records the memory torch
holds on the card (or the resident set on the CPU) after A and B frames, and `--objects 1,3,8` times
`--object-frames` frames per object count (objects clicked on frame 0, spread as in the engine's bench).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time

import numpy as np
import torch

from .clip import load_frames
from .errors import UserError, friendly_main
from .official import init_state_on, official_predictor


def cpu_sample():
    """(ticks on all CPUs, idle ticks, this process's ticks): to tell how much other work shared the machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    t = os.times()
    return sum(values), values[3] + values[4], round((t.user + t.system) * os.sysconf("SC_CLK_TCK"))


def others_since(start, end):
    """(ticks other processes kept the CPUs busy, ticks elapsed on all CPUs) between two `cpu_sample`s."""
    total = end[0] - start[0]
    busy = total - (end[1] - start[1])
    return max(0, busy - (end[2] - start[2])), total


def click_points(width: int, height: int, count: int) -> list[list[float]]:
    """The click positions of the latency test: a grid over the middle of the frame, the same as the engine's."""
    points = []
    for i in range(count):
        fx = 0.25 + 0.5 * ((i % 5) / 4.0)
        fy = 0.25 + 0.5 * (((i // 5) % 4) / 3.0)
        points.append([width * fx, height * fy])
    return points


def object_points(width: int, height: int, count: int) -> list[list[float]]:
    """Where `count` objects are clicked: the same formula as `object_points` in engine/examples/bench/gpu.rs."""
    return [[width * (0.2 + 0.6 * ((i % 4) / 3.0)), height * (0.3 + 0.4 * ((i // 4) % 2))] for i in range(count)]


def memory_mib(device: str) -> float:
    """What the predictor holds: torch's allocations on the card, or this process's resident set on the CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() / 2**20
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def precision_context(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)


def bench_objects(predictor, clip_dir, manifest, counts, frames, device, precision, log):
    """Milliseconds per frame over frames 2..`frames`−1 with each object count."""
    images, video_h, video_w = load_frames(clip_dir, predictor.image_size, manifest["image_mean"], manifest["image_std"])
    images = images[:frames]
    out = []
    for count in counts:
        state = init_state_on(predictor, clip_dir, images, video_h, video_w, device)
        stamps = []
        with torch.inference_mode(), precision_context(device, precision):
            for i, p in enumerate(object_points(video_w, video_h, count)):
                predictor.add_new_points_or_box(
                    state, frame_idx=0, obj_id=i + 1, points=np.array([p], dtype=np.float32), labels=np.array([1], dtype=np.int32)
                )
            for frame, _, masks in predictor.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=len(images) - 1):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                stamps.append(time.perf_counter())
        ms = (stamps[-1] - stamps[1]) * 1e3 / max(1, len(stamps) - 2)
        log(f"  {count} objects: {ms:.2f} ms per frame")
        out.append([count, ms])
        del state
    return out


def bench_clip(predictor, clip_dir, manifest, max_frames, clicks, log, device="cpu", precision="fp32", memory_frames=()):
    images, video_h, video_w = load_frames(clip_dir, predictor.image_size, manifest["image_mean"], manifest["image_std"])
    if max_frames:
        images = images[:max_frames]
    n = len(images)
    if n < 3:
        raise UserError(f"The clip {clip_dir} has {n} frames; the benchmark needs at least 3 (one prompted, one warm-up).")
    state = init_state_on(predictor, clip_dir, images, video_h, video_w, device)
    cuda = device.startswith("cuda")
    memory = []

    centre = np.array([[video_w / 2.0, video_h / 2.0]], dtype=np.float32)
    positive = np.array([1], dtype=np.int32)
    stamps = []
    cpu = {}
    with torch.inference_mode(), precision_context(device, precision):
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=centre, labels=positive)
        for frame, _, _ in predictor.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=n - 1):
            if cuda:
                # The masks are ready for the caller only once the card has finished.
                torch.cuda.synchronize()
            stamps.append((frame, time.perf_counter()))
            if frame in (1, n - 1):
                cpu[frame] = cpu_sample()
            if frame + 1 in memory_frames:
                memory.append([frame + 1, memory_mib(device)])
    frames = [f for f, _ in stamps]
    if frames != list(range(n)):
        raise UserError(f"The official predictor yielded frames {frames} on {clip_dir}, not 0..{n - 1}.")
    timed_s = stamps[-1][1] - stamps[1][1]
    others, ticks = others_since(cpu[1], cpu[n - 1])
    log(
        f"  {os.path.basename(os.path.normpath(clip_dir))}: {n} frames, {(n - 2) / timed_s:.3f} fps over frames 2..{n - 1}"
        f" (other processes used {others / max(1, ticks):.0%} of the CPU)"
    )

    click_ms = []
    if clicks > 0:
        last = n - 1
        points = click_points(video_w, video_h, clicks + 1)
        with torch.inference_mode(), precision_context(device, precision):
            for i, p in enumerate(points):
                start = time.perf_counter()
                predictor.add_new_points_or_box(
                    state, frame_idx=last, obj_id=2, points=np.array([p], dtype=np.float32), labels=positive,
                    clear_old_points=True,
                )
                if cuda:
                    torch.cuda.synchronize()
                if i > 0:  # the first click is the warm-up
                    click_ms.append((time.perf_counter() - start) * 1e3)
    return {
        "clip": os.path.realpath(clip_dir),
        "frames": n,
        "timed_frames": n - 2,
        "timed_s": timed_s,
        "click_ms": click_ms,
        "others_ticks": others,
        "ticks": ticks,
        "memory_mib": memory,
    }


def run(
    model_dir, clips, max_frames, threads, clicks, checkpoint=None, log=print,
    device="cpu", precision="fp32", memory_frames=(), objects=(), object_frames=10,
):
    torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked for, but this torch ({torch.__version__}) sees no CUDA device.")
    manifest, predictor = official_predictor(model_dir, checkpoint, device)
    log(
        f"official predictor, {manifest['size']} at {manifest['image_size']}, torch {torch.__version__}, {threads} threads,"
        f" {device} {precision}"
    )
    per_clip = []
    for i, clip in enumerate(clips):
        # Clicks are timed on the first clip only, as in the engine's benchmark.
        per_clip.append(
            bench_clip(
                predictor, clip, manifest, max_frames, clicks if i == 0 else 0, log,
                device=device, precision=precision, memory_frames=memory_frames if i == 0 else (),
            )
        )
    objects_ms = bench_objects(predictor, clips[0], manifest, objects, object_frames, device, precision, log) if objects else []
    timed_frames = sum(c["timed_frames"] for c in per_clip)
    timed_s = sum(c["timed_s"] for c in per_clip)
    click_ms = [ms for c in per_clip for ms in c["click_ms"]]
    return {
        "format": "sam2-rotoscope-bench-official",
        "version": 1,
        "model": os.path.realpath(model_dir),
        "image_size": manifest["image_size"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": device,
        "precision": precision,
        "memory_mib": per_clip[0]["memory_mib"],
        "objects_ms": objects_ms,
        "clips": per_clip,
        "timed_frames": timed_frames,
        "timed_s": timed_s,
        "fps": timed_frames / timed_s,
        "click_median_ms": statistics.median(click_ms) if click_ms else None,
        # Share of all CPUs that other processes used while frames were timed.
        "others_cpu_share": sum(c["others_ticks"] for c in per_clip) / max(1, sum(c["ticks"] for c in per_clip)),
    }


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory (made by export)")
    p.add_argument("--clip", required=True, action="append", help="folder of frames (repeat for several clips)")
    p.add_argument("--frames", type=int, default=0, help="use only the first N frames of each clip (0: all)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the engine's benchmark uses the same)")
    p.add_argument("--clicks", type=int, default=20, help="timed clicks for the click-to-mask latency (0: none)")
    p.add_argument("--checkpoint", help="the checkpoint the model directory was exported from (real weights)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda[:N]")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: under torch.autocast, as the official demos")
    p.add_argument("--memory-frames", default="", help="A,B: record the memory held after A and B frames of the first clip")
    p.add_argument("--objects", default="", help="object counts to time, e.g. 1,3,8 (on the first clip)")
    p.add_argument("--object-frames", type=int, default=10, help="frames tracked per object count")
    p.add_argument("--out", required=True, help="JSON file to write")
    a = p.parse_args(argv)

    def counts(flag, text):
        try:
            return tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise UserError(f"{flag} takes whole numbers separated by commas, not {text!r}.") from None

    if a.threads < 1:
        raise UserError(f"--threads must be at least 1, not {a.threads}.")
    if a.frames != 0 and a.frames < 3:
        raise UserError(f"--frames must be 0 (all) or at least 3, not {a.frames}.")
    if a.object_frames < 3:
        raise UserError(f"--object-frames must be at least 3, not {a.object_frames}.")
    result = run(
        a.model, a.clip, a.frames, a.threads, a.clicks, checkpoint=a.checkpoint, device=a.device, precision=a.precision,
        memory_frames=counts("--memory-frames", a.memory_frames), objects=counts("--objects", a.objects),
        object_frames=a.object_frames,
    )
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2, allow_nan=False)
        f.write("\n")
    print(f"{result['fps']:.3f} fps over {result['timed_frames']} frames; wrote {a.out}")


if __name__ == "__main__":
    main()
