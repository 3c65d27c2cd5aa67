"""Ground truth for Refine Edges (engine/src/matte/refine.rs), written to tests/fixtures/edges/.

    PYTHONPATH=bundle/exporter bundle/exporter/.venv/bin/python -m sam2export.edges_fixtures --out tests/fixtures/edges

Each clip is a textured silhouette composited over a photograph: the foreground is one real photograph
(tests/fixtures/photos), the background the other, and the silhouette's outline is a smooth random blob whose
edge is roughened by the high-passed luminance of a real photograph (tiled at 3 4K pixels per photo pixel), so
that it has detail finer than SAM 2's logit cells (7 pixels at 1080p, 15 at 4K) at both resolutions. The third
clip puts the cat over its own mirror image: foreground and background alike, the hard case for a guide.

What is stored is the silhouette's coverage at 3840×2160 and at 1920×1080 (8-bit PNGs, antialiased: 2×2
samples per 4K pixel, so 4×4 per 1080p pixel, the 1080p image being the 2×2 block mean of the 4K samples).
The bench (engine/examples/bench/edges.rs) composites the frame as coverage·foreground + (1 − coverage)·background
with the photographs resized to the frame, and the ground-truth mask is coverage ≥ ½. Deterministic.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from PIL import Image

FORMAT = "sam2-rotoscope-edges-fixtures"
VERSION = 1
SIZES = [(1920, 1080), (3840, 2160)]

# 4K pixels per pixel of the roughness photograph, which is tiled (mirrored) over the frame: the outline's
# detail is then 2 to 10 pixels at 1080p, finer than a logit cell, as the edges of fur, hair or foliage are.
GRAIN = 3.0
# Radius (in pixels of the roughness photograph) of the box blur whose residue roughens the outline.
HIGH_PASS = 2

# name, foreground photo, background photo, background mirrored, roughness photo, seed,
# centre (x / height, y / height), radius (/ height), roughness amplitude (in radii).
CLIPS = [
    ("cat-over-astronaut", "chelsea.png", "astronaut_crop.png", False, "chelsea.png", 1, (0.85, 0.52), 0.34, 0.2),
    ("astronaut-over-cat", "astronaut_crop.png", "chelsea.png", False, "chelsea.png", 2, (0.95, 0.48), 0.30, 0.25),
    ("cat-over-mirrored-cat", "chelsea.png", "chelsea.png", True, "astronaut_crop.png", 3, (0.80, 0.55), 0.36, 0.2),
]


def luminance(path: str) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)² window, cut at the borders."""
    def along(x: np.ndarray, axis: int) -> np.ndarray:
        n = x.shape[axis]
        c = np.cumsum(x, axis=axis)
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
        idx = np.arange(n)
        lo, hi = np.clip(idx - r, 0, n), np.clip(idx + r + 1, 0, n)
        s = np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)
        shape = [1] * x.ndim
        shape[axis] = n
        return s / (hi - lo).reshape(shape)
    return along(along(a, 0), 1)


def bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """img sampled at (u, v) in [0, 1]² (pixel centres at (i + ½) / n)."""
    h, w = img.shape
    x = np.clip(u * w - 0.5, 0, w - 1)
    y = np.clip(v * h - 0.5, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def tiled(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """img (mirrored at its borders, so tiled without seams) sampled bilinearly at pixel coordinates."""
    h, w = img.shape
    mirrored = np.concatenate([img, img[:, ::-1]], axis=1)
    mirrored = np.concatenate([mirrored, mirrored[::-1]], axis=0)
    return bilinear(mirrored, np.mod(x / (2 * w), 1.0), np.mod(y / (2 * h), 1.0))


def coverage_4k(rough: np.ndarray, seed: int, centre, radius: float, amplitude: float) -> np.ndarray:
    """Coverage of the silhouette at 3840×2160, 2×2 samples per pixel, as float in [0, 1]."""
    rng = np.random.default_rng(seed)
    harmonics = [(k, rng.uniform(0.02, 0.12) / k ** 0.5, rng.uniform(0, 2 * np.pi)) for k in range(2, 9)]
    w, h = 3840, 2160
    ss = 2
    out = np.zeros((h, w), dtype=np.float64)
    xs = (np.arange(w * ss) + 0.5) / (w * ss)  # u in [0, 1]
    for y0 in range(0, h, 120):
        ys = (np.arange(y0 * ss, (y0 + 120) * ss) + 0.5) / (h * ss)
        u, v = np.meshgrid(xs, ys)
        px, py = u * w / h - centre[0], v - centre[1]
        theta, d = np.arctan2(py, px), np.hypot(px, py)
        r = np.full_like(theta, radius)
        for k, a, phi in harmonics:
            r += radius * a * np.cos(k * theta + phi)
        field = (r - d) / radius + amplitude * tiled(rough, u * w / GRAIN, v * h / GRAIN)
        inside = (field > 0).astype(np.float64)
        out[y0:y0 + 120] = inside.reshape(120, ss, w, ss).mean(axis=(1, 3))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="tests/fixtures/edges")
    a = p.parse_args()
    photos = os.path.join(a.out, "..", "photos")
    os.makedirs(a.out, exist_ok=True)
    clips = []
    for name, fg, bg, mirrored, rough_photo, seed, centre, radius, amplitude in CLIPS:
        lum = luminance(os.path.join(photos, rough_photo))
        rough = lum - box_blur(lum, HIGH_PASS)
        rough /= np.abs(rough).max()
        cov = coverage_4k(rough, seed, centre, radius, amplitude)
        files = {}
        for w, h in SIZES:
            f = 3840 // w
            c = cov.reshape(h, f, w, f).mean(axis=(1, 3))
            file = f"{name}-{h}.png"
            Image.fromarray(np.round(c * 255).astype(np.uint8), mode="L").save(
                os.path.join(a.out, file), optimize=True)
            files[f"{w}x{h}"] = file
        clips.append({"name": name, "foreground": fg, "background": bg, "background_mirrored": mirrored, "coverage": files})
        print(name, "foreground share", round(float((cov >= 0.5).mean()), 3))
    with open(os.path.join(a.out, "clips.json"), "w") as fh:
        json.dump({"format": FORMAT, "version": VERSION, "photos": "../photos", "clips": clips}, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    main()
