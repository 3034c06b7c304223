"""`netspec infer MODEL.onnx INPUT...`: classify image files with onnxruntime.

Each input is preprocessed from the model's own metadata — grayscale or RGB, resized to the
model's input, scaled to [0, 1] and normalised with the training mean/std — through the same
code training used (netspec.preprocess), then run in batches. Inputs are untrusted files: an
image's size is checked before decoding, a `.npy` header before anything is allocated. A bad
input is a failure of that input alone; the others are still classified.

Inputs are files, folders (searched recursively for images and .npy arrays, in sorted order) and
glob patterns (expanded here, so a quoted 'digits/*.png' works without a shell). The model is an
.onnx file or a run directory holding the one written by `netspec export RUN --onnx`.
"""

from __future__ import annotations

import glob
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspec.errors import ModelFileError, RunError
from netspec.exporters.runtime import MAX_BATCH_BYTES, OnnxModel, printable, softmax
from netspec.modelcard import dims
from netspec.preprocess import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, ImageError, array_to_image, fit_image, open_image
from netspec.reading import open_regular

# A .npy image holds at most as many values as the largest image file netspec decodes (RGBA).
MAX_NPY_VALUES = 4 * MAX_IMAGE_PIXELS
NPY_DTYPE_KINDS = "uif"  # unsigned, signed, float: what an image array can be stored as
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".npy")  # what a folder given as input is searched for


@dataclass
class Prediction:
    input: str
    index: int
    label: str
    prob: float
    top_k: list[dict]
    note: str | None = None  # why the image was resized (a dynamic-size model whose rules it broke)

    def to_json(self) -> dict:
        values = {"input": self.input, "index": self.index, "label": self.label, "prob": self.prob,
                  "top_k": self.top_k}
        return values if self.note is None else {**values, "note": self.note}


class BadInput(ValueError):
    """One input that cannot be classified; the others still are."""


@dataclass
class Failure:
    input: str
    message: str

    def format(self) -> str:
        return f"{printable(self.input)}: error: {printable(self.message)}"


def model_file(path: Path) -> tuple[Path, list[str]]:
    """The model file to run: `path` itself, or the one exported into a run directory (a file of
    any registered format: .onnx, .pt2); notes. A run holding several is refused, naming them."""
    from netspec.exporters import FORMAT_MODULES, format_named
    from netspec.run import WEIGHTS, checkpoint_path, exported_models

    path = Path(path)
    if not (path.is_dir() and (path / "config.json").is_file()):
        return path, []  # a file, or not a run: the format's reader says what is wrong with it
    shown, hint = printable(path), f"netspec export {printable(path)} --onnx"
    suffixes = sorted({format_named(name).SUFFIX for name in FORMAT_MODULES})
    exported = sorted((p for suffix in suffixes for p in exported_models(path, suffix)), key=lambda p: p.name)
    if not exported:
        raise RunError.at(None, "model", f"{shown} is a run directory with no exported model in it", hint)
    if len(exported) > 1:
        names = ", ".join(printable(p.name) for p in exported[:5]) + (", …" if len(exported) > 5 else "")
        kinds = {p.suffix for p in exported}
        what = f"{kinds.pop()} files" if len(kinds) == 1 else "model files"
        raise RunError.at(None, "model", f"{shown} holds {len(exported)} {what} ({names})",
                          f"give the one to run, e.g. {printable(exported[0])}")
    notes = [f"model: {printable(exported[0])}"]
    made = exported[0].stat().st_mtime_ns
    checkpoints = [checkpoint_path(path, weights) for weights in WEIGHTS]
    newer = [c.name for c in checkpoints if c.is_file() and c.stat().st_mtime_ns > made]
    if newer:
        export_hint = f"netspec export {printable(path)} --format {exported[0].suffix[1:]}"
        notes.append(f"{printable(exported[0].name)} was exported before the run's {' and '.join(newer)} "
                     f"was last written: `{export_hint}` exports the current weights")
    return exported[0], notes


def expand_inputs(arguments: list) -> list:
    """Each argument as the inputs it names, in order: a file as itself, a folder as the images
    and .npy arrays under it (sorted), a glob pattern as its matches (sorted). A folder or pattern
    that names nothing is a Failure of its own."""
    items: list = []
    for argument in map(str, arguments):
        if os.path.isdir(argument):
            items += _folder_inputs(argument)
        elif not os.path.lexists(argument) and glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                items.append(Failure(argument, "no such file, and no file matches it as a pattern"))
            for match in matches:
                items += _folder_inputs(match) if os.path.isdir(match) else [Path(match)]
        else:
            items.append(Path(argument))
    return items


def _folder_inputs(folder: str) -> list:
    """Images and .npy arrays under `folder`, by path; hidden entries skipped and links to folders
    not followed (as in training's image folders), unreadable subfolders reported."""
    found, failures = [], []

    def unreadable(error: OSError) -> None:
        failures.append(Failure(error.filename or folder, f"cannot read this folder ({error.strerror})"))

    for top, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(top, f) for f in files if not f.startswith(".") and Path(f).suffix.lower() in INPUT_SUFFIXES]
    if not found and not failures:
        failures.append(Failure(folder, f"a folder with no images or .npy arrays in it ({', '.join(INPUT_SUFFIXES)})"))
    return sorted(found, key=lambda p: p.as_posix()) + failures


def read_input(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """An image file or a .npy image array → uint8 C×H×W at the model's input; raises BadInput."""
    return read_sized(path, channels, lambda h, w: (height, width, None))[0]


def read_sized(path: Path, channels: int, size) -> tuple[np.ndarray, str | None]:
    """An image file or a .npy image array → uint8 C×H×W at `size(h, w)` → (height, width, why)
    of the image's own h × w (decided from the header, before any pixel is decoded), and a note
    saying why it was resized (None when it was not, or the model takes one fixed size)."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode) and path.suffix.lower() == ".npy":
            return _fitted(array_to_image(_npy_image(path)), channels, size, path)
    except FileNotFoundError:
        raise BadInput("no such file") from None
    except OSError as e:
        raise BadInput(f"cannot read it ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISREG(mode):
        raise BadInput("is a directory" if stat.S_ISDIR(mode) else "is not a regular file")
    try:
        with open_image(path) as image:
            return _fitted(image, channels, size, path)
    except ImageError as e:
        raise BadInput(f"cannot read it as an image: {e}") from None


def _fitted(image, channels: int, size, path: Path) -> tuple[np.ndarray, str | None]:
    width, height = image.size
    target_h, target_w, why = size(height, width)
    note = None if why is None else (f"{printable(path)} is {height}×{width} (H×W); {why}: "
                                     f"resized to {target_h}×{target_w}")
    return fit_image(image, channels, target_h, target_w), note


def _npy_image(path: Path) -> np.ndarray:
    """An image stored with numpy — H×W, H×W×C or C×H×W (C = 1 or 3), uint8 0–255 or float 0–1 —
    as uint8 C×H×W. The header is checked against the file before anything is allocated."""
    with open_regular(path) as file:  # as read_image: a FIFO swapped in after the stat cannot hang
        dtype, shape, fortran = _npy_header(file)
        count = math.prod(shape)
        data = file.read(count * dtype.itemsize)
    return image_array(np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C"))


def image_array(array: np.ndarray) -> np.ndarray:
    """An image array as `netspec infer` takes it from a .npy file (and `netspec.load_run(...).predict`
    from memory) — H×W, H×W×C or C×H×W (C = 1 or 3), uint8 0–255 or float 0–1 — as uint8 C×H×W;
    BadInput for anything else."""
    shape = array.shape
    if array.dtype.kind not in "uif":
        raise BadInput(f"expected uint8 0–255 or float 0–1 values, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[2] in (1, 3):  # H×W×C (an ambiguous 3×H×3 too, as infer) → C×H×W
        array = array.transpose(2, 0, 1)
    if array.ndim != 3 or array.shape[0] not in (1, 3) or 0 in array.shape:
        raise BadInput(f"expected an image array H×W, H×W×C or C×H×W (C = 1 or 3), got shape {shape}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise BadInput("the array holds NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise BadInput("float arrays must hold values in [0, 1]")
        array = np.round(array * 255)
    elif array.min() < 0 or array.max() > 255:
        raise BadInput(f"expected uint8 0–255 or float 0–1 values, got {array.dtype} "
                       f"from {array.min()} to {array.max()}")
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
        raise BadInput("not a plain numpy array file "
                       f"({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    if dtype.kind not in NPY_DTYPE_KINDS or dtype.hasobject or dtype.fields is not None:
        raise BadInput(f"expected uint8 0–255 or float 0–1 values, got dtype {dtype}")
    if len(shape) not in (2, 3):
        raise BadInput(f"expected an image array H×W, H×W×C or C×H×W (C = 1 or 3), got shape {shape}")
    if not all(d > 0 for d in shape):
        raise BadInput(f"the array is empty (shape {shape})" if 0 in shape
                       else f"the header's shape {shape} is invalid")
    count = math.prod(shape)
    if count > MAX_NPY_VALUES:
        raise BadInput(f"the header claims {count:,} values; the limit is {MAX_NPY_VALUES:,}")
    left = os.fstat(file.fileno()).st_size - file.tell()
    if left != count * dtype.itemsize:
        raise BadInput(f"the header claims {count * dtype.itemsize:,} bytes of data, the file holds {left:,}")
    return dtype, shape, fortran


def predict(model: OnnxModel, paths: list, top_k: int = 5,
            batch_size: int = 32) -> tuple[list[Prediction], list[Failure]]:
    """Predictions for the inputs that could be read, and a Failure for each that could not (or
    that expand_inputs already failed), in input order. Inputs are read one batch at a time, so
    memory does not grow with their number. A model with dynamic H and W (netspec.exporters.
    dynamic) runs each image at its own size when the model allows it, else at the nearest allowed
    size (the prediction's `note` says why); images of one size are run together."""
    size, channels, per_image, dynamic = _input_size(model)
    batch_size = min(batch_size, max(1, MAX_BATCH_BYTES // (4 * channels * per_image)))
    budget = per_image if dynamic else batch_size * per_image  # pixels read before they are run
    predictions, failures, read, pixels = [], [], [], 0
    for path in paths:
        if isinstance(path, Failure):
            failures.append(path)
            continue
        try:
            read.append((path, *read_sized(Path(path), channels, size)))
        except BadInput as e:
            failures.append(Failure(str(path), str(e)))
            continue
        pixels += read[-1][1].shape[1] * read[-1][1].shape[2]
        if len(read) >= batch_size or pixels >= budget:  # dynamic sizes: fewer large images at a time
            predictions += _classify_by_size(model, read, top_k)
            read, pixels = [], 0
    return predictions + _classify_by_size(model, read, top_k), failures


def _input_size(model) -> tuple[object, int, int, bool]:
    """(size, channels, pixels, dynamic): what an image of h × w is resized to (a function giving
    height, width and why), the model's channels, the most pixels one image has at the model's
    input (MAX_KEPT_PIXELS for dynamic sizes), and whether its sizes are dynamic."""
    from netspec.exporters.dynamic import MAX_KEPT_PIXELS, dynamic_input

    info = model.card
    dynamic = dynamic_input(info) if len(info.input_shape) == 3 else None
    if len(info.input_shape) != 3 or (dynamic is None and None in info.input_shape):
        raise ModelFileError.at(None, model.where, f"infer needs a fixed C×H×W input (or open H, W with "
                                f"netspec's input constraints), the model takes {dims(info.input_shape)}")
    channels = info.input_shape[0]
    if channels not in (1, 3):
        raise ModelFileError.at(None, model.where, f"the model takes {channels}-channel input; images give 1 or 3")
    if dynamic is not None:
        return dynamic.fit, channels, MAX_KEPT_PIXELS, True
    height, width = info.input_shape[1:]
    return (lambda h, w: (height, width, None)), channels, height * width, False


def _classify_by_size(model, read: list[tuple], top_k: int) -> list[Prediction]:
    """(path, image, note) → predictions in that order; each size run on its own, in runs of at
    most MAX_KEPT_PIXELS pixels (one image at least)."""
    from netspec.exporters.dynamic import MAX_KEPT_PIXELS

    by_size: dict[tuple, list[int]] = {}
    for i, (_, image, _) in enumerate(read):
        by_size.setdefault(image.shape, []).append(i)
    results: dict[int, Prediction] = {}
    for shape, positions in by_size.items():
        step = max(1, MAX_KEPT_PIXELS // (shape[1] * shape[2])) if model.card.input_constraints else len(positions)
        for start in range(0, len(positions), step):
            chunk = positions[start:start + step]
            images = np.stack([read[i][1] for i in chunk])
            for i, prediction in zip(chunk, classify_images(model, images, [read[i][0] for i in chunk], top_k)):
                prediction.note = read[i][2]
                results[i] = prediction
    return [results[i] for i in range(len(read))]


def classify_images(model: OnnxModel, images: np.ndarray, paths: list, top_k: int) -> list[Prediction]:
    """Top-k predictions for N×C×H×W images of any model with `.card`, `.where` and `.run` (an
    OnnxModel, or netspec.predict's trained run): the card's preprocessing, then softmax unless the
    model gives probabilities."""
    info = model.card
    outputs = model.run(info.preprocessing.apply_(images.astype(np.float32)))
    if outputs.ndim != 2 or len(outputs) != len(images):
        raise ModelFileError.at(None, model.where, f"the model gives {'×'.join(map(str, outputs.shape))} for "
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
