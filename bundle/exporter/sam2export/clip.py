"""A clip is a folder of frames named by integer; frames load exactly as the official predictor loads JPEGs."""

from __future__ import annotations

import os

import numpy as np
import torch

from .errors import UserError

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")


def frame_paths(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise UserError(f"The clip folder {folder} does not exist.")
    names = []
    for p in os.listdir(folder):
        stem, ext = os.path.splitext(p)
        if ext.lower() not in FRAME_EXTENSIONS:
            continue
        if not stem.isdigit():
            raise UserError(f"The clip folder {folder} holds {p}, whose name is not a frame number.")
        names.append(p)
    if not names:
        raise UserError(f"The clip folder {folder} holds no .png/.jpg/.jpeg frames.")
    names.sort(key=lambda p: int(os.path.splitext(p)[0]))
    return [os.path.join(folder, n) for n in names]


def load_frames(folder: str, image_size: int, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    """`load_video_frames_from_jpg_images` for any of our extensions, using the official per-image loader."""
    from sam2.utils.misc import _load_img_as_tensor

    paths = frame_paths(folder)
    images = torch.zeros(len(paths), 3, image_size, image_size, dtype=torch.float32)
    size = None
    for n, p in enumerate(paths):
        try:
            images[n], h, w = _load_img_as_tensor(p, image_size)
        except Exception as e:  # PIL raises several kinds for unreadable files
            raise UserError(f"The frame {p} could not be read as an image ({e}).") from None
        if size is not None and (h, w) != size:
            raise UserError(f"The frame {p} is {w}×{h}, but the clip's earlier frames are {size[1]}×{size[0]}.")
        size = (h, w)
    images -= torch.tensor(mean, dtype=torch.float32)[:, None, None]
    images /= torch.tensor(std, dtype=torch.float32)[:, None, None]
    return images, size[0], size[1]


def load_mask(path: str, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if not os.path.isfile(path):
        raise UserError(f"The mask {path} does not exist.")
    try:
        a = np.array(Image.open(path))
    except Exception as e:
        raise UserError(f"The mask {path} could not be read as an image ({e}).") from None
    if a.ndim == 3:
        a = a[..., 0]
    if a.shape != (height, width):
        raise UserError(f"The mask {path} is {a.shape[1]}×{a.shape[0]}, but the clip is {width}×{height}.")
    if a.dtype == np.bool_:
        return a
    if a.dtype == np.uint16:
        return a > 32767
    return a > 127
