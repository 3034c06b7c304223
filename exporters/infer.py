"""`netspec infer MODEL.onnx INPUT...`: classify image files with onnxruntime.

Each input is preprocessed from the model's own metadata — grayscale or RGB, resized to the
model's input, scaled to [0, 1] and normalised with the training mean/std — through the same
code training used (netspec.preprocess), then run in batches. Inputs are untrusted files: an
image's size is checked before decoding, a `.npy` header before anything is allocated. A bad
input is a failure of that input alone; the others are still classified.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.runtime import MAX_BATCH_BYTES, OnnxModel, printable, softmax
from netspec.errors import SpecError
from netspec.preprocess import MAX_IMAGE_PIXELS, ImageError, array_to_image, fit_image, normalise, read_image

# A .npy image holds at most as many values as the largest image file netspec decodes (RGBA).
MAX_NPY_VALUES = 4 * MAX_IMAGE_PIXELS
NPY_DTYPE_KINDS = "uif"  # unsigned, signed, float: what an image array can be stored as


@dataclass
class Prediction:
    input: str
    index: int
    label: str
    prob: float
    top_k: list[dict]

    def to_json(self) -> dict:
        return {"input": self.input, "index": self.index, "label": self.label, "prob": self.prob, "top_k": self.top_k}


class BadInput(ValueError):
    """One input that cannot be classified; the others still are."""


@dataclass
class Failure:
    input: str
    message: str

    def format(self) -> str:
        return f"{printable(self.input)}: error: {printable(self.message)}"


def read_input(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """An image file or a .npy image array → uint8 C×H×W at the model's input; raises BadInput."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode) and path.suffix.lower() == ".npy":
            return fit_image(array_to_image(_npy_image(path)), channels, height, width)
    except FileNotFoundError:
        raise BadInput("no such file") from None
    except OSError as e:
        raise BadInput(f"cannot read it ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISREG(mode):
        raise BadInput("is a directory" if stat.S_ISDIR(mode) else "is not a regular file")
    try:
        return read_image(path, channels, height, width)
    except ImageError as e:
        raise BadInput(f"cannot read it as an image: {e}") from None


def _npy_image(path: Path) -> np.ndarray:
    """An image stored with numpy — H×W, H×W×C or C×H×W (C = 1 or 3), uint8 0–255 or float 0–1 —
    as uint8 C×H×W. The header is checked against the file before anything is allocated."""
    with open(path, "rb") as file:
        dtype, shape, fortran = _npy_header(file)
        count = math.prod(shape)
        data = file.read(count * dtype.itemsize)
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    if array.ndim == 2:
        array = array[None]
    elif array.shape[2] in (1, 3):  # H×W×C (an ambiguous 3×H×3 too, as before) → C×H×W
        array = array.transpose(2, 0, 1)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise BadInput(f"expected an image array H×W, H×W×C or C×H×W (C = 1 or 3), got shape {shape}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise BadInput("the array holds NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise BadInput("float arrays must hold values in [0, 1]")
        array = np.round(array * 255)
    elif array.min() < 0 or array.max() > 255:
        raise BadInput(f"expected uint8 0–255 or float 0–1 values, got {array.dtype} from {array.min()} to {array.max()}")
    return array.astype(np.uint8)


def _npy_header(file) -> tuple[np.dtype, tuple[int, ...], bool]:
    """dtype, shape and order from a .npy header, checked: a plain numeric dtype (no pickled
    objects), 2 or 3 non-empty axes, at most MAX_NPY_VALUES, and exactly the bytes the file holds."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(file)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(file)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy.read_array_header_2_0(file)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, OverflowError, TypeError) as e:
        raise BadInput(f"not a plain numpy array file ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    if dtype.kind not in NPY_DTYPE_KINDS or dtype.hasobject or dtype.fields is not None:
        raise BadInput(f"expected uint8 0–255 or float 0–1 values, got dtype {dtype}")
    if len(shape) not in (2, 3):
        raise BadInput(f"expected an image array H×W, H×W×C or C×H×W (C = 1 or 3), got shape {shape}")
    if not all(d > 0 for d in shape):
        raise BadInput(f"the array is empty (shape {shape})" if 0 in shape else f"the header's shape {shape} is invalid")
    count = math.prod(shape)
    if count > MAX_NPY_VALUES:
        raise BadInput(f"the header claims {count:,} values; the limit is {MAX_NPY_VALUES:,}")
    left = os.fstat(file.fileno()).st_size - file.tell()
    if left != count * dtype.itemsize:
        raise BadInput(f"the header claims {count * dtype.itemsize:,} bytes of data, the file holds {left:,}")
    return dtype, shape, fortran


def predict(model: OnnxModel, paths: list[Path], top_k: int = 5,
            batch_size: int = 32) -> tuple[list[Prediction], list[Failure]]:
    """Predictions for the inputs that could be read, and a Failure for each that could not,
    in input order. Inputs are read one batch at a time, so memory does not grow with their number."""
    info = model.info
    if len(info.input_shape) != 3 or any(d is None for d in info.input_shape):
        raise SpecError.at(None, model.where, f"infer needs a fixed C×H×W input, the model takes "
                           f"{'×'.join(map(str, info.input_shape))}")
    channels, height, width = info.input_shape
    if channels not in (1, 3):
        raise SpecError.at(None, model.where, f"the model takes {channels}-channel input; images give 1 or 3")
    batch_size = min(batch_size, max(1, MAX_BATCH_BYTES // (4 * channels * height * width)))
    predictions, failures = [], []
    for start in range(0, len(paths), batch_size):
        images, good = [], []
        for path in paths[start:start + batch_size]:
            try:
                images.append(read_input(Path(path), channels, height, width))
                good.append(path)
            except BadInput as e:
                failures.append(Failure(str(path), str(e)))
        if images:
            predictions += _classify(model, np.stack(images), good, top_k)
    return predictions, failures


def _classify(model: OnnxModel, images: np.ndarray, paths: list, top_k: int) -> list[Prediction]:
    info = model.info
    outputs = model.run(normalise(images, info.mean, info.std, info.normalize))
    if outputs.ndim != 2 or len(outputs) != len(images):
        raise SpecError.at(None, model.where, f"the model gives {'×'.join(map(str, outputs.shape))} for "
                           f"{len(images)} inputs; infer needs one row of class scores per input")
    probs = outputs if info.output == "probs" else softmax(outputs)
    predictions = []
    for path, row in zip(paths, probs):
        order = np.argsort(-row)[:top_k]
        top = [{"index": int(i), "label": info.label(int(i)), "prob": float(row[i])} for i in order]
        predictions.append(Prediction(str(path), top[0]["index"], top[0]["label"], top[0]["prob"], top))
    return predictions


def table(predictions: list[Prediction]) -> str:
    """Inputs, labels and probabilities; file names and labels escaped for the terminal."""
    width = max([len("input"), *(len(printable(p.input)) for p in predictions)])
    lines = [f"{'input':<{width}}  {'label':>10}  {'prob':>7}  next"]
    for p in predictions:
        rest = ", ".join(f"{printable(t['label'])} {t['prob'] * 100:.1f}%" for t in p.top_k[1:])
        lines.append(f"{printable(p.input):<{width}}  {printable(p.label):>10}  {p.prob * 100:6.2f}%  {rest}")
    return "\n".join(lines)
