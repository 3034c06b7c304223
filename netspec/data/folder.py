"""Image folders (`data: folder:PATH`): one subfolder per class, decoded lazily with Pillow.

Two layouts, like torchvision's ImageFolder:

    PATH/train/<class>/*.png  +  PATH/val/<class>/... (or PATH/test/<class>/...)
    PATH/<class>/*.png        (split here: 20 % of each class held out for validation)

The held-out images are chosen by a hash of each file's path relative to its root, so the split
is the same on every run and machine: it does not depend on directory listing order or on the
training seed (changing the seed must not leak validation images into training).

The folder may come from someone else, so only regular files are opened (a FIFO or device
named `x.png` is skipped, never waited on), only through the decoders of the four image
formats we list (Pillow otherwise picks any of its ~40 plugins by content, EPS among them,
which runs Ghostscript), and only up to MAX_IMAGE_PIXELS. Symbolic links are followed, to
files and to class folders alike, wherever they point: datasets are commonly assembled from
links into shared storage (torchvision's ImageFolder follows them too), and what a link can
reach is only decoded as an image within those limits, never shown or executed. Links inside a
class folder's tree are not descended into (pathlib's rglob), so a link loop cannot recur.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from netspec import preprocess
from netspec.data import Data, DataError, channel_stats, printable
from netspec.preprocess import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS  # noqa: F401 (MAX_IMAGE_PIXELS: part of this module's contract)

VAL_FRACTION = 0.2
STATS_SAMPLE = 2000  # images decoded for the per-channel mean/std
HEADER_CHECK_LIMIT = 20_000  # up to this many files, open every header at load to catch bad files early
LAYOUT_HINT = "put images in DIR/<class>/*.png, or DIR/train/<class>/ and DIR/val/<class>/"


class FolderDataset(Dataset):
    """(uint8 C×H×W tensor, int64 label) per image, at the spec's channels and size.

    Plain attributes only, so DataLoader workers can pickle it.
    """

    def __init__(self, files: list[Path], labels: list[int], input_shape: tuple):
        c, h, w = input_shape
        self.files = files
        self.labels = labels
        self.mode = preprocess.channel_mode(c)
        self.size = (int(h), int(w))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = decode(self.files[index], self.mode, self.size)
        return torch.from_numpy(image), torch.tensor(self.labels[index], dtype=torch.int64)


def decode(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image file → uint8 C×H×W in `mode` ("L" or "RGB"), resized bilinearly to `size` (H, W)."""
    from netspec.preprocess import fit_image

    with open_image(path) as image:
        return fit_image(image, preprocess.channels_of(mode), *size)  # a copy, independent of the file


@contextmanager
def open_image(path: Path) -> Iterator:
    """netspec.preprocess.open_image, its failures as DataErrors naming the file."""
    try:
        with preprocess.open_image(path) as image:
            yield image
    except preprocess.ImageError as exc:
        raise DataError(f"cannot read image {printable(path, None)}: {exc}", "replace or delete the file") from None


def load_folder(path: Path, input_shape: tuple, val_only: bool = False) -> Data:
    """The image folder at `path`, adapted to `input_shape` (the split does not depend on any seed).
    `val_only` skips the training images' statistics (eval and export use the saved ones)."""
    c = input_shape[0]
    if c not in (1, 3):
        raise DataError(f"image folders give 1- or 3-channel images; the spec's input has {c} channels",
                        "use an input of 1 (grayscale) or 3 (RGB) channels")
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"no image folder at {printable(path, None)}", LAYOUT_HINT)
    notes: list[str] = []
    train_dir = path / "train"
    val_dir = next((path / n for n in ("val", "test") if (path / n).is_dir()), None)
    if train_dir.is_dir() and val_dir is not None:
        classes = class_names(train_dir)
        val_classes = class_names(val_dir)
        if val_classes != classes:
            extra = sorted(set(val_classes) - set(classes))
            lacking = sorted(set(classes) - set(val_classes))
            detail = "; ".join(filter(None, [extra and f"{val_dir.name}/ also has {', '.join(extra)}",
                                             lacking and f"{val_dir.name}/ lacks {', '.join(lacking)}"]))
            raise DataError(f"{printable(val_dir, None)} and {printable(train_dir, None)} have different "
                            f"class folders ({detail})",
                            "give train/ and val/ the same class subfolders")
        train, val = list_images(train_dir, classes, notes), list_images(val_dir, classes, notes)
    else:
        if val_dir is not None:  # val/ alone would otherwise be taken for a class called "val"
            raise DataError(f"{printable(path, None)} has {val_dir.name}/ but no train/", LAYOUT_HINT)
        source = train_dir if train_dir.is_dir() else path
        classes = class_names(source)
        train, val = split(list_images(source, classes, notes), source)
        notes.append(f"folder: no val/ folder, held out {VAL_FRACTION:.0%} of each class for validation")
    check_headers(val if val_only else train + val)
    train_set = FolderDataset([f for f, _ in train], [label for _, label in train], input_shape)
    val_set = FolderDataset([f for f, _ in val], [label for _, label in val], input_shape)
    mean, std = (None, None) if val_only else sample_stats(train_set)
    return Data(name=f"folder:{path}", train=train_set, val=val_set, classes=classes,
                mean=mean, std=std, notes=notes)


def class_names(folder: Path) -> list[str]:
    """Sorted names of the visible subfolders of `folder`: one class each.

    A class name is printed in tables and stored in the run's JSON and the model's metadata, so
    it must be printable text: not an ESC sequence, nor bytes that are not UTF-8 (which Python
    holds as surrogates that cannot be written back out)."""
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"{printable(folder, None)} has no class subfolders", LAYOUT_HINT)
    for name in names:
        if not name.isprintable():
            raise DataError(f"class folder `{printable(name)}` in {printable(folder, None)} has a name with "
                            "control characters or bytes that are not UTF-8", "rename it to plain text")
    return names


def list_images(folder: Path, classes: list[str], notes: list[str]) -> list[tuple[Path, int]]:
    """(file, label) for the images under each `folder/<class>/` (recursively), in sorted path order.

    Only regular files (after following links) count; other entries with an image suffix (FIFOs,
    devices, broken or looping links) are skipped with a note, as reading them could block."""
    found, skipped = [], 0
    for label, name in enumerate(classes):
        class_dir = folder / name
        candidates = [p for p in class_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                      and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)]
        files = sorted((p for p in candidates if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())
        skipped += len(candidates) - len(files)
        if not files:
            raise DataError(f"class folder {printable(class_dir, None)} has no images ({', '.join(IMAGE_SUFFIXES)})",
                            "add images to it or remove it")
        found += [(f, label) for f in files]
    if skipped:
        notes.append(f"folder: skipped {skipped} entries under {printable(folder.name)}/ that are not "
                     "regular files (FIFOs, devices, broken links)")
    return found


def split(images: list[tuple[Path, int]], root: Path) -> tuple[list, list]:
    """Stratified train/val split: per class, the 20 % of files whose path hashes lowest (≥1 if n ≥ 2)."""
    def rank(item: tuple[Path, int]) -> tuple[str, str]:
        relative = item[0].relative_to(root).as_posix()
        return hashlib.sha1(relative.encode()).hexdigest(), relative

    by_class: dict[int, list[tuple[Path, int]]] = {}
    for item in images:
        by_class.setdefault(item[1], []).append(item)
    held_out: set[Path] = set()
    for members in by_class.values():
        count = 0 if len(members) < 2 else max(1, round(len(members) * VAL_FRACTION))
        held_out.update(f for f, _ in sorted(members, key=rank)[:count])
    return ([item for item in images if item[0] not in held_out],
            [item for item in images if item[0] in held_out])


def check_headers(images: list[tuple[Path, int]]) -> None:
    """Open each file's header (cheap, no decode) so a stray non-image fails now, not mid-epoch."""
    if len(images) > HEADER_CHECK_LIMIT:
        return  # too many to open up front; the stats sample and the loader still name bad files
    for file, _ in images:
        with open_image(file):  # the header, and its size against MAX_IMAGE_PIXELS
            pass


def sample_stats(dataset: FolderDataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] over up to STATS_SAMPLE evenly spaced training images."""
    n = len(dataset)
    indices = np.unique(np.linspace(0, n - 1, min(n, STATS_SAMPLE)).round().astype(np.int64))
    return channel_stats(torch.stack([dataset[int(i)][0] for i in indices]))
