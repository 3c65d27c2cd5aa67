"""Reference data for the engine's resampling (engine/src/resample) and hole filling: what Pillow, PyTorch and
the official SAM 2 preprocessing make of a set of images, written to tests/fixtures/resample/.

    PYTHONPATH=bundle/exporter bundle/exporter/.venv/bin/python -m sam2export.resample_fixtures --out tests/fixtures

The photographs in tests/fixtures/photos/ come from the scikit-image wheel (never installed, only unzipped):

    pip download --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64 scikit-image==0.25.2 -d /tmp/skw
    ... -m sam2export.resample_fixtures --out tests/fixtures --photos-from-wheel /tmp/skw/scikit_image-0.25.2-*.whl

Most sources are not stored: noise images are generated from a seed by `noise_u8` / `noise_f32`, which the Rust
tests implement identically (splitmix64 of seed·2³² + element index). Large outputs are stored as a SHA-256 of
their bytes plus a few rows, small ones whole, so that the committed data stays small. Deterministic: the same
pinned versions on the same kind of CPU write the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import zipfile

import numpy as np

from .errors import UserError, friendly_main

FORMAT = "sam2-rotoscope-resample-fixtures"
VERSION = 1
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# Photographs taken from the scikit-image wheel: (file in the wheel, file we store, crop box or None).
PHOTOS = [
    ("skimage/data/chelsea.png", "chelsea.png", None),
    ("skimage/data/astronaut.png", "astronaut_crop.png", (65, 0, 386, 385)),
]

_M64 = (1 << 64) - 1


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's output function on uint64 (wrapping arithmetic)."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _stream(seed: int, n: int) -> np.ndarray:
    idx = np.arange(n, dtype=np.uint64) + np.uint64((seed << 32) & _M64)
    return splitmix64(idx)


def noise_u8(seed: int, height: int, width: int, channels: int) -> np.ndarray:
    """uint8 noise [H, W, C] (C omitted when 1): the top byte of splitmix64(seed·2³² + i), i in row-major order."""
    v = (_stream(seed, height * width * channels) >> np.uint64(56)).astype(np.uint8)
    return v.reshape((height, width) if channels == 1 else (height, width, channels))


def noise_f32(seed: int, height: int, width: int) -> np.ndarray:
    """float32 noise [H, W] in [-32, 32) in steps of 1/64 (exact in float32): (top 12 bits − 2048) / 64."""
    v = (_stream(seed, height * width) >> np.uint64(52)).astype(np.int64) - 2048
    return (v.astype(np.float32) / np.float32(64.0)).reshape(height, width)


def sha256(a: np.ndarray) -> str:
    """SHA-256 of the array's bytes in C order (little-endian for float32)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _probe_rows(h: int) -> list[int]:
    """A few rows spread over the image, edges included."""
    rows = {0, 1, h // 3, h // 2, (2 * h) // 3, h - 2, h - 1}
    return sorted(r for r in rows if 0 <= r < h)


# ---------------------------------------------------------------------------------------------------------------
# Photographs


def extract_photos(wheel: str, photos_dir: str) -> None:
    """Copy the photographs out of a scikit-image wheel (cropping where PHOTOS says so)."""
    from PIL import Image

    os.makedirs(photos_dir, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for member, name, crop in PHOTOS:
            data = z.read(member)
            out = os.path.join(photos_dir, name)
            if crop is None:
                with open(out, "wb") as f:
                    f.write(data)
            else:
                im = Image.open(io.BytesIO(data)).convert("RGB").crop(crop)
                im.save(out, optimize=True)


# ---------------------------------------------------------------------------------------------------------------
# The cases


def _pil_sources(fixtures: str) -> dict:
    """name → (source description for cases.json, PIL image as the official loader would open it)."""
    from PIL import Image

    def png(rel_to_resample: str):
        path = os.path.normpath(os.path.join(fixtures, "resample", rel_to_resample))
        if not os.path.isfile(path):
            raise UserError(f"The image {path} is missing; the fixtures folder is incomplete.")
        return {"png": rel_to_resample}, Image.open(path)

    def noise(seed, w, h, fmt):
        ch = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[fmt]
        a = noise_u8(seed, h, w, ch)
        return {"noise": {"seed": seed, "width": w, "height": h, "format": fmt}}, Image.fromarray(a, fmt)

    return {
        "frame": png("../clips/shapes/00000.png"),
        "chelsea": png("../photos/chelsea.png"),
        "astronaut": png("../photos/astronaut_crop.png"),
        "noise_320x180": noise(1, 320, 180, "RGB"),
        "noise_100x75": noise(2, 100, 75, "RGB"),
        "noise_1000x700": noise(3, 1000, 700, "RGB"),
        "noise_37x23": noise(4, 37, 23, "RGB"),
        "noise_1x50": noise(5, 1, 50, "RGB"),
        "noise_50x1": noise(6, 50, 1, "RGB"),
        "noise_1x1": noise(7, 1, 1, "RGB"),
        "noise_rgba_64x48": noise(8, 64, 48, "RGBA"),
        "noise_gray_64x48": noise(9, 64, 48, "L"),
        "noise_gray_alpha_33x17": noise(10, 33, 17, "LA"),
    }


# (case name, source, output width, output height, store whole output)
PIL_CASES = [
    ("frame_256", "frame", 256, 256, False),
    ("frame_1024", "frame", 1024, 1024, False),
    ("noise_shrink_w_grow_h", "noise_320x180", 256, 256, False),
    ("noise_upscale", "noise_100x75", 256, 256, False),
    ("noise_large_shrink", "noise_1000x700", 256, 256, False),
    ("noise_large_shrink_odd", "noise_1000x700", 97, 61, True),
    ("noise_odd_mixed", "noise_37x23", 19, 41, True),
    ("noise_odd_up", "noise_37x23", 255, 129, False),
    ("noise_1xN_shrink", "noise_1x50", 1, 7, True),
    ("noise_1xN_grow_w", "noise_1x50", 5, 50, True),
    ("noise_Nx1_shrink", "noise_50x1", 3, 1, True),
    ("noise_Nx1_both", "noise_50x1", 9, 4, True),
    ("noise_1x1_grow", "noise_1x1", 5, 3, True),
    ("noise_only_vertical", "noise_320x180", 320, 256, False),
    ("noise_only_horizontal", "noise_320x180", 200, 180, False),
    ("noise_same_size", "noise_320x180", 320, 180, False),
    ("noise_rgba_drops_alpha", "noise_rgba_64x48", 256, 256, False),
    ("noise_gray_to_rgb", "noise_gray_64x48", 256, 256, False),
    ("noise_gray_alpha_to_rgb", "noise_gray_alpha_33x17", 40, 30, True),
    ("chelsea_256", "chelsea", 256, 256, False),
    ("chelsea_1024", "chelsea", 1024, 1024, False),
    ("chelsea_odd", "chelsea", 333, 177, False),
    ("astronaut_256", "astronaut", 256, 256, False),
    ("astronaut_1024", "astronaut", 1024, 1024, False),
]

# (case name, source, S, store the whole tensor)
SAM2_CASES = [
    ("frame_256", "frame", 256, True),
    ("frame_1024", "frame", 1024, False),
    ("chelsea_1024", "chelsea", 1024, False),
    ("astronaut_256", "astronaut", 256, False),
    ("astronaut_1024", "astronaut", 1024, False),
    ("noise_rgba_512", "noise_rgba_64x48", 512, False),
]


def _official_sam2_input(img_pil, size: int) -> np.ndarray:
    """sam2.utils.misc._load_img_as_tensor, then the normalization of load_video_frames_from_jpg_images
    (float32 tensor −= mean, /= std); returns [3, S, S] float32. The official loader opens a path, so the
    image goes through a lossless PNG in a temporary folder."""
    import tempfile

    import torch
    from sam2.utils.misc import _load_img_as_tensor

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "0.png")
        img_pil.save(path)
        img, _h, _w = _load_img_as_tensor(path, size)
    images = torch.zeros(1, 3, size, size, dtype=torch.float32)
    images[0] = img
    images -= torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    images /= torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return images[0].numpy()


def _binary_mask(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    """A disk plus a thin bar plus a one-pixel speck: edges of every slope, and detail finer than the output."""
    y, x = np.mgrid[0:h, 0:w]
    m = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    m |= (x >= w // 8) & (x < w // 8 + 3) & (y >= h // 4) & (y < (3 * h) // 4)
    m[h - 3, w - 5] = True
    return m.astype(np.uint8)


def make_resample_fixtures(root: str) -> dict:
    """Write root/resample/cases.json and root/resample/reference.npz; return a summary."""
    import PIL
    import sam2  # noqa: F401  (the official package must be importable)
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)  # the kernels' per-element arithmetic does not depend on it, but be plain
    out_dir = os.path.join(root, "resample")
    os.makedirs(out_dir, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    sources = _pil_sources(root)
    cases: dict = {
        "format": FORMAT,
        "version": VERSION,
        "producer": f"Pillow {PIL.__version__}, torch {torch.__version__} CPU ({torch.backends.cpu.get_cpu_capability()} "
        f"kernels), sam2 {_sam2_version()}, numpy {np.__version__}",
        "noise": "splitmix64(seed * 2^32 + i) for element i in row-major order; u8: top 8 bits; "
        "f32: ((top 12 bits) - 2048) / 64",
        "arrays": "reference.npz",
        "sources": {},
        "pil": [],
        "sam2_input": [],
        "antialias": [],
        "bilinear": [],
    }

    # --- sources: what each one decodes to (a check on the test's own PNG decoder)
    for name, (desc, im) in sources.items():
        px = np.asarray(im)
        cases["sources"][name] = dict(desc, mode=im.mode, width=im.size[0], height=im.size[1], pixels_sha256=sha256(px))

    # --- PIL bicubic resizes of 8-bit images, after convert("RGB") as the official loader does
    for name, src, ow, oh, whole in PIL_CASES:
        im = sources[src][1]
        out = np.asarray(im.convert("RGB").resize((ow, oh)))
        assert out.dtype == np.uint8 and out.shape == (oh, ow, 3)
        entry = {"name": name, "source": src, "out": [ow, oh], "sha256": sha256(out)}
        if whole:
            entry["array"] = f"pil_{name}"
            arrays[entry["array"]] = out
        else:
            rows = _probe_rows(oh)
            entry["probe_rows"] = rows
            entry["array"] = f"pil_{name}_rows"
            arrays[entry["array"]] = out[rows]
        cases["pil"].append(entry)

    # --- the official SAM 2 frame tensor
    for name, src, size, whole in SAM2_CASES:
        t = _official_sam2_input(sources[src][1], size)
        entry = {"name": name, "source": src, "size": size, "mean": list(MEAN), "std": list(STD), "sha256": sha256(t)}
        if whole:
            entry["array"] = f"sam2_{name}"
            arrays[entry["array"]] = t
        else:
            rows = _probe_rows(size)
            entry["probe_rows"] = rows
            entry["array"] = f"sam2_{name}_rows"
            arrays[entry["array"]] = t[:, rows]
        cases["sam2_input"].append(entry)

    def interp(x: np.ndarray, ow: int, oh: int, antialias: bool) -> np.ndarray:
        y = F.interpolate(torch.from_numpy(x)[None, None], size=(oh, ow), mode="bilinear", align_corners=False, antialias=antialias)
        return y[0, 0].numpy()

    # --- antialiased bilinear (mask prompts: H×W → S×S then >= 0.5; S×S logits → S/4×S/4)
    mask_320 = _binary_mask(180, 320, 150.5, 80.25, 47.3)
    mask_256 = _binary_mask(256, 256, 120.5, 130.25, 61.7)
    arrays["aa_in_mask_320x180"] = mask_320
    arrays["aa_in_mask_256"] = mask_256
    aa_inputs = {
        "mask_320x180": ({"array": "aa_in_mask_320x180", "transform": "mask"}, mask_320.astype(np.float32)),
        "logits_256": ({"array": "aa_in_mask_256", "transform": "mask * 20 - 10"}, mask_256.astype(np.float32) * 20 - 10),
    }

    def f32_noise(seed, w, h):
        return {"noise": {"seed": seed, "width": w, "height": h}}, noise_f32(seed, h, w)

    aa_cases = [
        ("mask_prompt_320x180_to_256", aa_inputs["mask_320x180"], 256, 256),
        ("mask_as_output_256_to_64", aa_inputs["logits_256"], 64, 64),
        ("noise_256_to_64", f32_noise(21, 256, 256), 64, 64),
        ("noise_non_integer_300x200_to_77x53", f32_noise(22, 300, 200), 77, 53),
        ("noise_up_30x20_to_61x47", f32_noise(23, 30, 20), 61, 47),
        ("noise_many_taps_1000x16_to_37x16", f32_noise(24, 1000, 16), 37, 16),
        ("noise_many_taps_16x1000_to_16x37", f32_noise(25, 16, 1000), 16, 37),
        ("noise_same_size", f32_noise(26, 40, 30), 40, 30),
    ]
    for name, (desc, x), ow, oh in aa_cases:
        y = interp(x, ow, oh, True)
        entry = {"name": name, "input": desc, "in": [x.shape[1], x.shape[0]], "out": [ow, oh], "sha256": sha256(y), "array": f"aa_{name}"}
        arrays[entry["array"]] = y
        if name.startswith("mask_prompt"):
            entry["binarized_sha256"] = sha256((y >= 0.5).astype(np.uint8))
        cases["antialias"].append(entry)

    # --- plain bilinear (low-res logits → video size)
    bl_cases = [
        ("noise_64_to_320x180", f32_noise(31, 64, 64), 320, 180, False),
        ("noise_256_to_1920x1080", f32_noise(32, 256, 256), 1920, 1080, False),
        ("noise_256_to_3840x2160", f32_noise(33, 256, 256), 3840, 2160, False),
        ("noise_64_to_50x40_small_output", f32_noise(34, 64, 64), 50, 40, True),
        ("noise_64_to_30x98_small_output", f32_noise(35, 64, 64), 30, 98, True),
        ("noise_64_to_61x70", f32_noise(36, 64, 64), 61, 70, True),
        ("noise_64_to_64x180_same_width", f32_noise(37, 64, 64), 64, 180, False),
        ("noise_64_to_1x1", f32_noise(38, 64, 64), 1, 1, True),
        ("logits_64_to_320x180", ({"array": "bl_in_logits_64", "transform": "none"}, None), 320, 180, False),
    ]
    logits_64 = interp(mask_256.astype(np.float32) * 20 - 10, 64, 64, True)  # realistic smooth logits
    arrays["bl_in_logits_64"] = logits_64
    for name, (desc, x), ow, oh, whole in bl_cases:
        if x is None:
            x = logits_64
        y = interp(x, ow, oh, False)
        entry = {"name": name, "input": desc, "in": [x.shape[1], x.shape[0]], "out": [ow, oh], "sha256": sha256(y)}
        if whole:
            entry["array"] = f"bl_{name}"
            arrays[entry["array"]] = y
        else:
            rows = _probe_rows(oh)
            entry["probe_rows"] = rows
            entry["array"] = f"bl_{name}_rows"
            arrays[entry["array"]] = y[rows]
        cases["bilinear"].append(entry)

    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    np.savez_compressed(os.path.join(out_dir, "reference.npz"), **arrays)
    sizes = {n: os.path.getsize(os.path.join(out_dir, n)) for n in ("cases.json", "reference.npz")}
    return {"cases": sum(len(cases[k]) for k in ("pil", "sam2_input", "antialias", "bilinear")), "bytes": sizes}


def _sam2_version() -> str:
    try:
        from importlib.metadata import version

        return version("sam2")
    except Exception:  # the version is informative only
        return "unknown"


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the fixtures folder (tests/fixtures)")
    p.add_argument("--photos-from-wheel", help="first (re)extract tests/fixtures/photos from this scikit-image wheel")
    a = p.parse_args(argv)
    if a.photos_from_wheel:
        extract_photos(a.photos_from_wheel, os.path.join(a.out, "photos"))
    print(make_resample_fixtures(a.out))


if __name__ == "__main__":
    main()
