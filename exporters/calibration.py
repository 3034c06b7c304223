"""The images `--quantize int8` calibrates on and measures accuracy with, as netspec's training saw them.

Calibration takes CALIBRATION images of the training split (a fixed-seed sample, so a folder
sorted by class is not calibrated on its first classes only); accuracy and agreement take up to
MAX_ACCURACY_SAMPLES of the validation split, streamed CHUNK at a time as uint8 and normalised
per chunk (netspec.preprocess, the card's mean/std), so a large validation set is never held
as float32. A run uses its own dataset; a bare spec its `train:` data when that can be loaded,
else netspec's synthetic images (with a warning: their ranges say little about real inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netspec.errors import ExportError, NetspecError

MAX_ACCURACY_SAMPLES = 10_000  # validation images int8 and float32 accuracy are measured on, at most
CHUNK = 256  # images decoded, normalised and run at a time
SAMPLE_SEED = 0
IN_MEMORY = ("mnist", "fashion_mnist", "cifar10", "cifar100")  # read by netspec.data.files


@dataclass
class Images:
    """uint8 N×C×H×W images, where they came from, and what the user should be warned of."""

    images: np.ndarray
    data: str  # e.g. "digits, training split"
    warnings: list[str] = field(default_factory=list)


def sample(total: int, count: int) -> np.ndarray:
    """`count` (at most `total`) distinct indices, in order, the same every time."""
    if count >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(total, count, replace=False))


def concrete_shape(source, images: bool = True) -> tuple[int, ...]:
    """The model's input size; --quantize calibrates on images (C×H×W) and verifies at one concrete size."""
    shape = source.input_shape
    if (images and len(shape) != 3) or not all(isinstance(d, int) for d in shape):
        from netspec.exporters.dynamic import dynamic_input

        dynamic = dynamic_input(source)
        shown = dynamic.shape_text() if dynamic else "×".join("?" if d is None else str(d) for d in shape)
        raise ExportError.at(None, "--quantize", f"--quantize {'calibrates on C×H×W images' if images else 'verifies'} "
                             f"at a concrete input size; this model takes {shown}",
                             "give concrete sizes with --input, e.g. 3x224x224")
    return tuple(shape)


def training_images(name: str, shape: tuple, root, count: int) -> np.ndarray:
    """`count` uint8 images of dataset `name`'s training split at `shape` (a NetspecError when it
    cannot be loaded); only the sampled images are resized."""
    from netspec.data import DataError, adapt_images, load_data, user_path

    root_path = user_path(root, "data_root") if root else None
    try:
        if name in IN_MEMORY:
            from netspec.data import DEFAULT_ROOT
            from netspec.data.files import load_files

            (images, _), _, _ = load_files(name, root_path or DEFAULT_ROOT)
            return adapt_images(images[sample(len(images), count)], shape, name, []).numpy()
        train = load_data(name, shape, root_path, val_only=name.startswith("folder:")).train  # folders: no stats
    except OSError as exc:
        raise DataError(f"cannot read dataset {name}: {exc.strerror or exc}") from exc
    if hasattr(train, "images"):
        return train.images[sample(len(train), count)].numpy()
    return np.stack([train[int(i)][0].numpy() for i in sample(len(train), count)])


def calibration_images(source, count: int) -> Images:
    """The training images int8 is calibrated on (see the module's docstring)."""
    shape = concrete_shape(source)
    if source.run is not None:
        train = source.run.config["train"]
        try:
            images = training_images(train["data"], shape, train.get("data_root"), count)
        except NetspecError as e:
            raise ExportError.at(None, "--quantize", "int8 calibrates on the run's training images, which cannot "
                                 f"be loaded: {e.diagnostics[0].message}", "put the dataset back where the run "
                                 "was trained from") from None
        return Images(images, f"{train['data']}, training split")
    spec = getattr(source, "spec", None)  # the parsed spec, when the loader kept it
    config = getattr(spec, "train", None)
    name = getattr(config, "data", None)
    reason = "the spec names no `train: data`" if spec is not None else "a spec, not a trained run, is exported"
    if name:
        try:
            return Images(training_images(name, shape, config.data_root, count), f"{name}, training split")
        except NetspecError as e:
            reason = f"its `train: data` {name} cannot be loaded ({e.diagnostics[0].message[:200]})"
    return Images(training_images("synthetic", shape, None, count), "synthetic, training split",
                  [f"warning: int8 calibrated on netspec's synthetic images: {reason}; ranges fitted to them may "
                   "not fit real inputs — export a trained run to calibrate on its data"])


@dataclass
class Held:
    """Held-out images to measure on: chunks of (uint8 images, labels or None)."""

    split: object  # netspec.data Split (images, labels) or a Dataset of (image, label)
    indices: np.ndarray
    data: str
    labelled: bool

    def __len__(self) -> int:
        return len(self.indices)

    def chunks(self):
        for start in range(0, len(self.indices), CHUNK):
            picked = self.indices[start:start + CHUNK]
            if hasattr(self.split, "images"):
                images, labels = self.split.images[picked].numpy(), self.split.labels[picked].numpy()
            else:
                items = [self.split[int(i)] for i in picked]
                images = np.stack([image.numpy() for image, _ in items])
                labels = np.array([int(label) for _, label in items])
            yield images, (labels if self.labelled else None)


def held_out_images(source, calibrated: Images | None, limit: int = MAX_ACCURACY_SAMPLES) -> Held | None:
    """A run's validation split (labelled; `calibrated` unused); for a bare spec, the validation split
    of the data it was calibrated on (its labels are not this untrained model's classes: agreement
    only), None when that cannot be loaded or `calibrated` is None."""
    from netspec.data import load_data

    if source.run is not None:
        val = source.run.validation_data().val  # a NetspecError (dataset gone) is the caller's note
        return Held(val, sample(len(val), limit), f"{source.run.trained_on}, validation split", True)
    if calibrated is None:
        return None
    name = calibrated.data.split(",")[0]
    config = getattr(getattr(source, "spec", None), "train", None)
    root = getattr(config, "data_root", None) if name != "synthetic" else None
    try:
        val = load_data(name, concrete_shape(source), Path(root).expanduser() if root else None, val_only=True).val
    except (NetspecError, OSError):
        return None
    return Held(val, sample(len(val), limit), f"{name}, validation split", False)
