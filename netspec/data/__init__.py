"""Datasets for `netspec train` / `netspec eval`, adapted to a spec's input.

`load_data(source, input_shape, root)` returns the train and validation splits at the spec's
channel count and size. Sets that fit in memory (digits, MNIST, Fashion-MNIST, CIFAR,
synthetic) are one uint8 tensor each, so the trainer can keep them on the training device and
augment whole batches there; image folders stream through a DataLoader with workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netspec.errors import Diagnostic, SpecError, did_you_mean

SOURCES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "digits", "synthetic", "folder:PATH")
DEFAULT_ROOT = Path("~/.cache/netspec").expanduser()


class DataError(SpecError):
    """A dataset that cannot be found, read or adapted to the spec: exit code 2."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__([Diagnostic(None, "data", message, hint)])


@dataclass
class Split:
    """One split held in memory: uint8 images N×C×H×W at the spec's input, int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Data:
    name: str
    train: Any  # Split, or a torch Dataset of (uint8 C×H×W, label) for folders; None when val_only
    val: Any
    classes: list[str]
    mean: tuple[float, ...] | None  # per channel, of the training images scaled to [0, 1]
    std: tuple[float, ...] | None
    notes: list[str] = field(default_factory=list)  # what adaptation happened, for the log


def load_data(source: str, input_shape: tuple, root: Path | None = None, val_only: bool = False) -> Data:
    """The named dataset at `input_shape` (C, H, W). Raises DataError with a one-line reason.

    `val_only` (eval, export) skips adapting the training split and computing its statistics:
    the caller uses the mean/std saved with the weights."""
    root = Path(root).expanduser() if root else DEFAULT_ROOT
    if len(input_shape) != 3:
        raise DataError(f"image datasets need a C×H×W spec input, this spec takes {list(input_shape)}")
    if source == "digits":
        return _adapt("digits", *_digits(), input_shape, val_only)
    if source == "synthetic":
        return _synthetic(input_shape)
    if source.startswith("folder:"):
        from netspec.data.folder import load_folder

        return load_folder(Path(source[len("folder:"):]).expanduser(), input_shape, val_only)
    if source in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
        from netspec.data.files import load_files

        train, val, classes = load_files(source, root)
        return _adapt(source, train, val, classes, input_shape, val_only)
    hint = did_you_mean(source, SOURCES) or f"one of {', '.join(SOURCES)}"
    raise DataError(f"unknown dataset `{source}`", hint)


def digits_arrays():
    """scikit-learn's bundled 8×8 digits scaled 0..16 → 0..255 (uint8 N×1×8×8), labels, and the
    fixed stratified 80/20 split (indices) netspec trains and validates on."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    train_index, val_index = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0)
    return images, labels, train_index, val_index


def _digits():
    images, labels, train_index, val_index = digits_arrays()
    train = (images[train_index], labels[train_index])
    val = (images[val_index], labels[val_index])
    return train, val, [str(d) for d in range(10)]


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std (in [0, 1]) of uint8 N×C×H×W images, from 256-bin counts:
    no float copy of the dataset (which for CIFAR at 224×224 would be 30 GB)."""
    counts = torch.stack([torch.bincount(images[:, i].reshape(-1), minlength=256)
                          for i in range(images.shape[1])]).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum(1)
    mean = (counts * values).sum(1) / n
    var = (counts * (values - mean[:, None]) ** 2).sum(1) / n  # over all pixels (population std)
    return tuple(mean.tolist()), tuple(var.sqrt().clamp_min(1e-6).tolist())


SYNTHETIC_TRAIN = 2048


def _synthetic(input_shape: tuple) -> Data:
    """Random images in 10 classes, learnable but not trivially: each class has its own random
    template, every image is its template plus strong noise. The same set every time (fixed
    seed), so a run can be evaluated and exported against it. For smoke tests and throughput."""
    generator = torch.Generator().manual_seed(0)
    c, h, w = input_shape
    templates = torch.rand((10, c, h, w), generator=generator)

    def split(n: int) -> Split:
        labels = torch.randint(0, 10, (n,), generator=generator)
        noise = torch.rand((n, c, h, w), generator=generator)
        images = (0.12 * templates[labels] + 0.88 * noise).mul_(255).round_().to(torch.uint8)
        return Split(images, labels)

    train, val = split(SYNTHETIC_TRAIN), split(SYNTHETIC_TRAIN // 8)
    return Data("synthetic", train, val, [str(i) for i in range(10)], *channel_stats(train.images))


def _adapt(name: str, train, val, classes: list[str], input_shape: tuple, val_only: bool = False) -> Data:
    """Convert channels (1 ↔ 3) and resize to the spec's input; compute the training mean/std."""
    notes: list[str] = []
    val_split = Split(adapt_images(val[0], input_shape, name, notes), torch.as_tensor(val[1], dtype=torch.int64))
    if val_only:
        return Data(name, None, val_split, classes, None, None, notes=sorted(set(notes)))
    train_split = Split(adapt_images(train[0], input_shape, name, notes), torch.as_tensor(train[1], dtype=torch.int64))
    return Data(name, train_split, val_split, classes, *channel_stats(train_split.images), notes=sorted(set(notes)))


def adapt_images(images, input_shape: tuple, name: str, notes: list[str]) -> torch.Tensor:
    """uint8 N×C×H×W → uint8 N×C'×H'×W' at the spec's input, through the same Pillow conversion
    and resize `netspec infer` applies to an image file (netspec.preprocess)."""
    from netspec.preprocess import array_to_image, fit_image

    images = np.asarray(images)
    c, h, w = input_shape
    have = images.shape[1]
    if have not in (1, 3) or c not in (1, 3):
        raise DataError(f"{name} has {have}-channel images; the spec's input has {c} channels",
                        "use an input of 1 or 3 channels")
    if have == c and images.shape[2:] == (h, w):
        return torch.from_numpy(np.ascontiguousarray(images))
    if have != c:
        notes.append(f"{name}: {'grayscale replicated to RGB' if c == 3 else 'RGB converted to grayscale'}")
    if images.shape[2:] != (h, w):
        notes.append(f"{name}: resized {images.shape[2]}×{images.shape[3]} → {h}×{w}")
    out = np.empty((len(images), c, h, w), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = fit_image(array_to_image(image), c, h, w)
    return torch.from_numpy(out)
