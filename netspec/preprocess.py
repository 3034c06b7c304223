"""Turning an image into a model input: the one definition shared by training and inference.

Training adapts whole datasets with it once (channels, size), `netspec infer` applies it to
each input file, so a model sees exactly the pixels it was trained on. Pillow only, no torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

MODES = {1: "L", 3: "RGB"}


def mode_for(channels: int) -> str:
    if channels not in MODES:
        raise ValueError(f"images have 1 (grayscale) or 3 (RGB) channels, not {channels}")
    return MODES[channels]


def fit_image(image: Image.Image, channels: int, height: int, width: int) -> np.ndarray:
    """A PIL image → uint8 C×H×W: converted to grayscale (ITU-R 601 luma) or RGB, then resized
    with Pillow's bilinear filter (antialiased when shrinking)."""
    image = image.convert(mode_for(channels))
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)
    return np.ascontiguousarray(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


def array_to_image(array: np.ndarray) -> Image.Image:
    """uint8 C×H×W (C = 1 or 3) or H×W → PIL image."""
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(array))


def normalise(images: np.ndarray, mean, std, enabled: bool = True) -> np.ndarray:
    """uint8 N×C×H×W → float32 in [0, 1], then (x − mean) / std per channel as in training."""
    x = images.astype(np.float32) / 255.0
    if enabled:
        x = (x - np.asarray(mean, np.float32).reshape(1, -1, 1, 1)) / np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return x
