"""Turning an image into a model input: the one definition shared by training and inference.

Training adapts whole datasets with it once (channels, size), `netspec infer` applies it to
each input file, so a model sees exactly the pixels it was trained on. Pillow only, no torch.
An image file is untrusted: its header's size is checked against MAX_IMAGE_PIXELS before any
pixel is decoded (a 20000×20000 1-bit PNG is a few kB on disk and 400 MB in memory).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from netspec.errors import printable
from netspec.reading import open_regular

MODES = {1: "L", 3: "RGB"}
# Pixels per image (width × height), checked from the header before decoding. 8192 × 8192 is
# beyond any camera or scan a CNN dataset holds (a 64 MP image), yet decoding it costs 192 MiB
# of RGB per image per DataLoader worker; a PNG of a few KB can claim 100000 × 100000 (30 GB).
# Enforced as an error whatever Image.MAX_IMAGE_PIXELS is set to; Pillow's own bomb warning
# (above 89 M pixels) is an error too.
MAX_IMAGE_PIXELS = 8192 * 8192
# Only these decoders, whatever a file is named: an `.png` that is really PostScript must never
# reach Pillow's EPS plugin (which runs Ghostscript).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # what image folders list


class ImageError(ValueError):
    """An image file that cannot be used: not a regular file, not one of IMAGE_FORMATS, beyond
    MAX_IMAGE_PIXELS (a likely decompression bomb) or broken. The message names no file."""


@contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """The image at `path` with its header read and checked; any failure, here or in the `with`
    body (e.g. truncated pixel data), is an ImageError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # Pillow only warns below 2× its limit
            with open_regular(path) as file, Image.open(file, formats=IMAGE_FORMATS) as image:
                w, h = image.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageError(f"the image is {w}×{h} = {w * h:,} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                                     "netspec decodes (a decompression bomb?)")
                yield image
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("it is not a PNG, JPEG, BMP or WebP image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"too large to decode safely (Pillow: {printable(e, 120)})") from None
    except OSError as e:
        raise ImageError(printable(e.strerror, 120) if e.strerror
                         else f"{type(e).__name__}: {printable(e, 120)}") from None
    except Exception as e:  # Pillow raises SyntaxError, ValueError, struct.error... for broken files
        raise ImageError(f"{type(e).__name__}: {printable(e, 120)}") from None


def read_image(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """An image file → uint8 C×H×W at the given size (fit_image); raises ImageError."""
    with open_image(path) as image:
        return fit_image(image, channels, height, width)


def mode_for(channels: int) -> str:
    """The Pillow mode an image is converted to for a `channels`-channel input (1 or 3 only)."""
    if channels not in MODES:
        raise ValueError(f"images have 1 (grayscale) or 3 (RGB) channels, not {channels}")
    return MODES[channels]


def channel_mode(channels: int | None) -> str:
    """The image mode a model card names for an input of `channels` channels: L for one, RGB
    otherwise (the one place this is decided; fit_image refuses anything but 1 or 3)."""
    return "L" if channels == 1 else "RGB"


def channels_of(mode: str) -> int:
    return 1 if mode == "L" else 3


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


@dataclass(frozen=True)
class Normalisation:
    """How uint8 pixels become a model's input: scaled to [0, 1], then (x − mean) / std per
    channel when `enabled`. Computed as x · scale − shift with scale = 1 / (255 · std) and
    shift = mean / std in float32: the same operations for numpy arrays (inference, export
    parity) and torch tensors (training and evaluation batches), so all see the same values."""

    mean: tuple | list | None
    std: tuple | list | None
    enabled: bool = True

    def coefficients(self) -> tuple[np.ndarray, np.ndarray] | None:
        """float32 (scale, shift) shaped 1×C×1×1, or None when not normalised."""
        if not self.enabled:
            return None
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        return np.float32(1) / (np.float32(255) * std), mean / std

    def apply_(self, x, coefficients=None):
        """Normalise float32 pixels 0–255 in place: a numpy array, or a torch tensor with
        `coefficients` already on its device (Batches makes them once)."""
        coefficients = self.coefficients() if coefficients is None else coefficients
        if coefficients is None or not self.enabled:
            x /= 255
        else:
            scale, shift = coefficients
            x *= scale
            x -= shift
        return x


def normalise(images: np.ndarray, mean, std, enabled: bool = True) -> np.ndarray:
    """uint8 N×C×H×W → float32 in [0, 1], then (x − mean) / std per channel as in training."""
    return Normalisation(mean, std, enabled).apply_(images.astype(np.float32))
