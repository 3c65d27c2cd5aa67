"""Synthetic clips for the fixtures: textured shapes on a textured background, each with its exact masks.

Not square (320×180: the model input resize shrinks the width and enlarges the height, so both of PIL's
bicubic paths are exercised), deterministic (seeded), and lossless (PNG).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 320, 180


def _texture(rng, h, w, base, amp=40.0, scale=6):
    """Smooth colour noise around `base`: upsampled random grid + fine grain."""
    gh, gw = h // scale + 2, w // scale + 2
    grid = rng.normal(0, 1, (gh, gw, 3)).astype(np.float32)
    img = np.array(Image.fromarray(((grid * 0.25 + 0.5).clip(0, 1) * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
    img = (img / 255.0 - 0.5) * 2 * amp + np.asarray(base, np.float32)
    img += rng.normal(0, 2, (h, w, 3))
    return img


def _disk(h, w, cx, cy, r):
    y, x = np.mgrid[0:h, 0:w]
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _ellipse(h, w, cx, cy, rx, ry):
    y, x = np.mgrid[0:h, 0:w]
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def _rect(h, w, x0, y0, x1, y1):
    y, x = np.mgrid[0:h, 0:w]
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def _triangle(h, w, cx, cy, r):
    y, x = np.mgrid[0:h, 0:w]
    return (y <= cy + r * 0.6) & (np.abs(x - cx) <= (y - (cy - r)) * 0.65)


def _compose(background, layers):
    """Paint (mask, texture) layers in order; each object's visible mask is what later layers leave of it."""
    img = background.copy()
    visible = []
    for mask, tex in layers:
        img[mask] = tex[mask]
        visible = [v & ~mask for v in visible]
        visible.append(mask.copy())
    return img.clip(0, 255).astype(np.uint8), visible


def make_clips(root: str) -> dict:
    """Write the three fixture clips under root/<name>/ and return their per-frame object masks."""
    rng = np.random.RandomState(20261127)
    h, w = HEIGHT, WIDTH
    out = {}

    # 1. Moving textured shapes: a disk moving right, a square moving down-left, over a textured background.
    bg = _texture(rng, h, w, (90, 110, 80), amp=30)
    tex_a = _texture(rng, h, w, (200, 60, 50), amp=50, scale=4)
    tex_b = _texture(rng, h, w, (60, 80, 200), amp=50, scale=3)
    frames = []
    for t in range(10):
        a = _disk(h, w, 70 + 12 * t, 90 + 4 * np.sin(t / 2), 30)
        b = _rect(h, w, 230 - 8 * t, 20 + 6 * t, 280 - 8 * t, 70 + 6 * t)
        frames.append(_compose(bg, [(a, tex_a), (b, tex_b)]))
    out["shapes"] = frames

    # 2. Occlusion: an ellipse passes behind a wall (fully hidden on frames 5-7) and reappears.
    bg = _texture(rng, h, w, (120, 120, 140), amp=25)
    tex_o = _texture(rng, h, w, (230, 200, 40), amp=40, scale=4)
    tex_wall = _texture(rng, h, w, (100, 70, 50), amp=35, scale=8)
    frames = []
    for t in range(12):
        o = _ellipse(h, w, 40 + 22 * t, 95, 26, 20)
        wall = _rect(h, w, 135, 0, 230, h)
        img, vis = _compose(bg, [(o, tex_o), (wall, tex_wall)])
        frames.append((img, vis[:1]))
    out["occlusion"] = frames

    # 3. Crossing: a disk moving right and a triangle moving left cross in the middle; a square stays put.
    bg = _texture(rng, h, w, (70, 90, 110), amp=30)
    tex_1 = _texture(rng, h, w, (220, 90, 90), amp=45, scale=4)
    tex_2 = _texture(rng, h, w, (80, 210, 90), amp=45, scale=3)
    tex_3 = _texture(rng, h, w, (210, 210, 210), amp=30, scale=5)
    frames = []
    for t in range(12):
        sq = _rect(h, w, 20, 120, 70, 165)
        d = _disk(h, w, 60 + 20 * t, 80, 28)
        tr = _triangle(h, w, 270 - 20 * t, 85, 34)
        frames.append(_compose(bg, [(sq, tex_3), (d, tex_1), (tr, tex_2)]))
    out["crossing"] = frames

    masks = {}
    for name, fr in out.items():
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        for old in os.listdir(d):
            os.remove(os.path.join(d, old))
        for i, (img, _) in enumerate(fr):
            Image.fromarray(img).save(os.path.join(d, f"{i:05d}.png"), optimize=True)
        masks[name] = [vis for _, vis in fr]
    return masks


def save_mask(path: str, mask: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray((mask.astype(np.uint8) * 255)).save(path, optimize=True)


def make_photo_clip(root: str, photo: str, name: str = "photo", jpeg_quality: int | None = None) -> None:
    """A clip cut from a real photograph (a slow pan), so preprocessing parity is held on photographic
    content, not only on synthetic shapes: six 280×200 crops moving right by 24 pixels a frame. PNG frames, or
    with `jpeg_quality` JPEG frames (Pillow's default 4:2:0 baseline), the official tools' clip format."""
    img = Image.open(photo).convert("RGB")
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.remove(os.path.join(d, old))
    for i in range(6):
        x = 24 * i
        crop = img.crop((x, 50, x + 280, 250))
        if jpeg_quality is None:
            crop.save(os.path.join(d, f"{i:05d}.png"), optimize=True)
        else:
            crop.save(os.path.join(d, f"{i:05d}.jpg"), quality=jpeg_quality)
