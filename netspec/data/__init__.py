"""Datasets for `netspec train` / `netspec eval`, adapted to a spec's input.

`load_data(source, input_shape, root)` returns the train and validation splits at the spec's
channel count and size. Sets that fit in memory (digits, MNIST, Fashion-MNIST, CIFAR,
synthetic) are one uint8 tensor each, so the trainer can keep them on the training device and
augment whole batches there; image folders stream through a DataLoader with workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from netspec import errors
from netspec.errors import Diagnostic, did_you_mean
from netspec.errors import printable as escaped
from netspec.progress import plural
from netspec.reading import NotRegularFile, open_regular

SOURCES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "digits", "synthetic", "folder:PATH")
DEFAULT_ROOT = Path("~/.cache/netspec").expanduser()


class DataError(errors.DataError):
    """A dataset that cannot be found, read or adapted to the spec: exit code 2 (`data: message`)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__([Diagnostic(None, "data", message, hint)])


# Text that comes from a data file (a pickle's global name, a file or folder name in a dataset
# someone handed over) is quoted in messages escaped, so an ESC sequence cannot drive the
# terminal, and cut to this many characters, so a megabyte-long name cannot flood it.
SHOWN_TEXT_LIMIT = 120


def printable(text: object, limit: int | None = SHOWN_TEXT_LIMIT) -> str:
    """File-supplied text for a message: escaped (netspec.errors.printable) and cut to `limit`."""
    return escaped(text, limit)


def open_regular_file(path: Path) -> IO[bytes]:
    """`path` opened for reading if it is a regular file (after following links), else a DataError."""
    try:
        return open_regular(path)
    except NotRegularFile as exc:
        raise DataError(f"{printable(path, None)} is {exc.strerror}",
                        "datasets are read from regular files only; replace it with the real file") from exc
    except OSError as exc:
        raise DataError(f"cannot open {printable(path, None)}: {exc.strerror or exc}") from exc


def read_regular_file(path: Path, limit: int) -> bytearray:
    """The whole content of the regular file `path`, refused beyond `limit` bytes.

    The limit is checked against the size on disk before reading and again while reading (a
    file that grows, or one of /proc's that report size 0), so memory never exceeds `limit` +
    READ_CHUNK: the buffer is sized by what the file holds, never by `limit` itself."""
    with open_regular_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        content = bytearray(size if size <= limit else 0)
        with memoryview(content) as view:
            filled = read_into(f, view)
        del content[filled:]  # in place: the file shrank since fstat
        while size <= limit and len(content) <= limit and (more := f.read(READ_CHUNK)):
            content += more
    if max(size, len(content)) > limit:
        measured = f"{size:,} bytes" if size > limit else "longer than its size on disk"
        raise DataError(f"{printable(path, None)} is {measured}, more than the {limit:,} netspec reads from one "
                        "dataset file", "it is not a file of this dataset; delete it")
    return content


READ_CHUNK = 2**20  # past the size fstat reported: read on in pieces this size, up to the limit


def read_into(stream, view: memoryview) -> int:
    """Fill `view` from `stream` until it is full or the stream ends; the number of bytes read."""
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled:])
        if not count:
            break
        filled += count
    return filled


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
    if len(input_shape) != 3:
        raise DataError(f"image datasets need a C×H×W spec input, this spec takes {list(input_shape)}")
    root = user_path(root, "data_root") if root else DEFAULT_ROOT
    try:
        return _load(str(source), tuple(input_shape), root, val_only)
    except OSError as exc:  # permission denied, a name too long, an I/O error: all on paths the user gave
        where = printable(os.fsdecode(exc.filename), 200) if exc.filename else f"dataset {printable(source)}"
        raise DataError(f"cannot read {where}: {exc.strerror or exc}", "check the path and its permissions") from exc


def _load(source: str, input_shape: tuple, root: Path, val_only: bool) -> Data:
    if source == "digits":
        return _adapt("digits", *_digits(), input_shape, val_only)
    if source == "synthetic":
        return _synthetic(input_shape)
    if source.startswith("folder:"):
        from netspec.data.folder import load_folder

        return load_folder(user_path(source[len("folder:"):], "folder:"), input_shape, val_only)
    if source in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
        from netspec.data.files import load_files

        train, val, classes = load_files(source, root)
        return _adapt(source, train, val, classes, input_shape, val_only)
    hint = did_you_mean(source, SOURCES) or f"one of {', '.join(SOURCES)}"
    raise DataError(f"unknown dataset `{printable(source)}`", hint)


def user_path(text, what: str) -> Path:
    """A dataset path as the user wrote it, `~` expanded; NUL bytes and unknown `~user` are errors."""
    if "\x00" in str(text):
        raise DataError(f"{what} `{printable(text)}` contains a NUL character", "write the path without it")
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # `~nosuchuser/...`, or no home directory at all
        raise DataError(f"{what} `{printable(text)}`: {exc}", "write the path in full") from exc


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
# Sets held in memory are adapted to the spec's input all at once (uint8 N×C×H×W; CIFAR-10 at
# 224×224 takes 7.5 GB). Past this, or past the machine's memory, a spec's large input is a
# clean error instead of a MemoryError or the OOM killer: a folder: dataset streams instead.
MAX_IN_MEMORY_BYTES = 64 * 2**30


def check_fits(name: str, count: int, input_shape: tuple, bytes_per_value: int = 1) -> None:
    """DataError unless `count` images at `input_shape` (`bytes_per_value` each value) fit in memory."""
    needed = count * int(np.prod(input_shape, dtype=object)) * bytes_per_value
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not on this platform: the fixed cap alone
        physical = MAX_IN_MEMORY_BYTES
    limit = min(MAX_IN_MEMORY_BYTES, physical)
    if needed > limit:
        shape = "×".join(str(n) for n in input_shape)
        bound = "this machine's memory" if physical < MAX_IN_MEMORY_BYTES else "netspec's cap for a dataset in memory"
        raise DataError(f"{name}: {count:,} images at {shape} take {needed / 2**30:,.1f} GiB, more than "
                        f"{limit / 2**30:,.1f} GiB ({bound})",
                        "use a smaller input, or a folder: dataset (streamed from disk)")


def _synthetic(input_shape: tuple) -> Data:
    """Random images in 10 classes, learnable but not trivially: each class has its own random
    template, every image is its template plus strong noise. The same set every time (fixed
    seed), so a run can be evaluated and exported against it. For smoke tests and throughput."""
    check_fits("synthetic", SYNTHETIC_TRAIN + SYNTHETIC_TRAIN // 8, input_shape, 9)  # float32 noise and template
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
    check_fits(name, len(val[1]) + (0 if val_only else len(train[1])), input_shape)
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
        raise DataError(f"{name} has {have}-channel images; the spec's input has {plural(c, 'channel')}",
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
