"""Reference data for the engine's JPEG decoding (engine/src/jpeg.rs): JPEG files and what Pillow makes of
them, written to tests/fixtures/jpeg/ and read by engine/tests/jpeg.rs.

    PYTHONPATH=bundle/exporter bundle/exporter/.venv/bin/python -m sam2export.jpeg_fixtures --out tests/fixtures

The official predictor reads frames with `Image.open(p).convert("RGB")`; the engine must produce the same bytes.
Each case is a JPEG encoded by Pillow from a crop of a committed photograph (tests/fixtures/photos), in the
variants a clip may come in: qualities, chroma subsampling 4:2:0 / 4:2:2 / 4:4:4, progressive, grayscale,
optimized Huffman tables, restart markers, and corrupt but complete data (which Pillow decodes silently).

- `<name>.jpg` with `<name>.png` beside it: Pillow decodes the JPEG to exactly the RGB pixels of the PNG.
- `<name>.jpg` without a PNG: Pillow refuses it ("image file is truncated"); `refused.json` lists them with
  Pillow's message.

Deterministic: the same pinned Pillow (and so libjpeg-turbo) writes the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil

from PIL import Image

from .errors import UserError, friendly_main

# (name, photo, crop box, convert mode, save options). Crops have odd sizes so that the chroma upsampling's
# edge handling is exercised; PIL's default JPEG settings are quality 75, 4:2:0, baseline.
CASES = [
    ("cat_q75_420", "chelsea.png", (100, 40, 303, 191), "RGB", dict(quality=75)),
    ("cat_q95_444", "chelsea.png", (100, 40, 303, 191), "RGB", dict(quality=95, subsampling=0)),
    ("cat_q75_422", "chelsea.png", (100, 40, 303, 191), "RGB", dict(quality=75, subsampling=1)),
    ("cat_q30_420", "chelsea.png", (100, 40, 303, 191), "RGB", dict(quality=30, subsampling=2)),
    ("cat_q90_420_progressive", "chelsea.png", (100, 40, 303, 191), "RGB",
     dict(quality=90, subsampling=2, progressive=True)),
    ("cat_q85_444_progressive_optimized", "chelsea.png", (100, 40, 303, 191), "RGB",
     dict(quality=85, subsampling=0, progressive=True, optimize=True)),
    ("cat_q80_420_restarts", "chelsea.png", (100, 40, 303, 191), "RGB",
     dict(quality=80, subsampling=2, restart_marker_rows=1)),
    ("cat_gray_q85", "chelsea.png", (100, 40, 303, 191), "L", dict(quality=85)),
    ("astronaut_q75_420", "astronaut_crop.png", (40, 60, 241, 213), "RGB", dict(quality=75)),
    ("astronaut_q95_422", "astronaut_crop.png", (40, 60, 241, 213), "RGB", dict(quality=95, subsampling=1)),
]


def _encode(photo_dir: str, photo: str, box, mode: str, options: dict) -> bytes:
    img = Image.open(os.path.join(photo_dir, photo)).convert("RGB").crop(box).convert(mode)
    out = io.BytesIO()
    img.save(out, "JPEG", **options)
    return out.getvalue()


def _pil_decode(data: bytes) -> Image.Image:
    """What the official loader does with a frame file."""
    return Image.open(io.BytesIO(data)).convert("RGB")


def _corrupt(data: bytes) -> bytes:
    """One byte of entropy-coded data flipped, a third of the way into the scan (the file stays complete)."""
    sos = data.rindex(b"\xff\xda")
    i = sos + (len(data) - sos) // 3
    while data[i] == 0xFF or data[i - 1] == 0xFF or data[i] ^ 0x5A == 0xFF:
        i += 1
    b = bytearray(data)
    b[i] ^= 0x5A
    return bytes(b)


def make_jpeg_fixtures(root: str) -> None:
    photo_dir = os.path.join(root, "photos")
    out = os.path.join(root, "jpeg")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    encoded = {name: _encode(photo_dir, photo, box, mode, options) for name, photo, box, mode, options in CASES}
    base = encoded["cat_q75_420"]
    # Corrupt but complete: Pillow decodes it (ignoring libjpeg's warning), so must the engine.
    encoded["cat_q75_420_corrupt"] = _corrupt(base)
    # Data cut short by one byte after the scan, stray bytes before the end marker: both complete images.
    encoded["cat_q75_420_extraneous_bytes"] = base[:-2] + b"\x12\x34" + base[-2:]
    encoded["cat_q75_420_truncated_then_ended"] = base[: len(base) * 2 // 3] + b"\xff\xd9"
    refused_cases = {
        "truncated_half": base[: len(base) // 2],
        "truncated_no_end_marker": base[:-2],
        "truncated_progressive": encoded["cat_q90_420_progressive"][: len(encoded["cat_q90_420_progressive"]) * 3 // 4],
        "truncated_after_corrupt_data": _corrupt(base)[: len(base) * 4 // 5],
    }
    for name, data in encoded.items():
        with open(os.path.join(out, f"{name}.jpg"), "wb") as f:
            f.write(data)
        _pil_decode(data).save(os.path.join(out, f"{name}.png"), optimize=True)
    refused = {}
    for name, data in refused_cases.items():
        try:
            _pil_decode(data)
        except OSError as e:
            refused[f"{name}.jpg"] = str(e)
        else:
            raise UserError(f"Pillow decodes the JPEG fixture {name}, which is meant to be refused.")
        with open(os.path.join(out, f"{name}.jpg"), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "refused.json"), "w") as f:
        json.dump({"format": "sam2-rotoscope-jpeg-refused", "version": 1, "refused": refused}, f, indent=2)
        f.write("\n")


@friendly_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the fixtures folder (tests/fixtures)")
    a = p.parse_args(argv)
    make_jpeg_fixtures(a.out)


if __name__ == "__main__":
    main()
