"""`netspec infer MODEL.onnx INPUT...`: classify image files with onnxruntime.

Each input is preprocessed from the model's own metadata — grayscale or RGB, resized to the
model's input, scaled to [0, 1] and normalised with the training mean/std — through the same
code training used (netspec.preprocess), then run in batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.runtime import OnnxModel, softmax
from netspec.errors import Diagnostic, SpecError
from netspec.preprocess import array_to_image, fit_image, normalise

@dataclass
class Prediction:
    input: str
    index: int
    label: str
    prob: float
    top_k: list[dict]

    def to_json(self) -> dict:
        return {"input": self.input, "index": self.index, "label": self.label, "prob": self.prob, "top_k": self.top_k}


def read_input(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """An image file or a .npy image array → uint8 C×H×W at the model's input."""
    if not path.is_file():
        raise _input_error(path, "no such file")
    if path.suffix.lower() == ".npy":
        return fit_image(array_to_image(_npy_image(path)), channels, height, width)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return fit_image(image, channels, height, width)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise _input_error(path, f"cannot read it as an image ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def _npy_image(path: Path) -> np.ndarray:
    """An image stored with numpy: H×W, H×W×C or C×H×W (C = 1 or 3); uint8 0–255 or float 0–1."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise _input_error(path, f"not a plain numpy array ({e})") from None
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[2] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise _input_error(path, f"expected an image array H×W, H×W×C or C×H×W (C = 1 or 3), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if array.min() < 0 or array.max() > 1:
            raise _input_error(path, "float arrays must hold values in [0, 1]")
        array = np.round(array * 255)
    elif not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
        raise _input_error(path, f"expected uint8 0–255 or float 0–1 values, got {array.dtype}")
    return array.astype(np.uint8)


def _input_error(path: Path, message: str) -> SpecError:
    return SpecError([Diagnostic(None, str(path), message)])


def predict(model: OnnxModel, paths: list[Path], top_k: int = 5, batch_size: int = 32) -> list[Prediction]:
    info = model.info
    if len(info.input_shape) != 3 or any(d is None for d in info.input_shape):
        raise SpecError.at(None, "model", f"infer needs a fixed C×H×W input, the model takes {info.input_shape}")
    channels, height, width = info.input_shape
    if channels not in (1, 3):
        raise SpecError.at(None, "model", f"the model takes {channels}-channel input; images give 1 or 3")
    images = [read_input(Path(p), channels, height, width) for p in paths]  # all errors before any work
    predictions = []
    for start in range(0, len(images), batch_size):
        chunk = np.stack(images[start:start + batch_size])
        outputs = model.run(normalise(chunk, info.mean, info.std, info.normalize and info.mean is not None))
        probs = outputs if info.output == "probs" else softmax(outputs)
        for path, row in zip(paths[start:start + batch_size], probs):
            order = np.argsort(-row)[:top_k]
            top = [{"index": int(i), "label": info.label(int(i)), "prob": float(row[i])} for i in order]
            predictions.append(Prediction(str(path), top[0]["index"], top[0]["label"], top[0]["prob"], top))
    return predictions


def table(predictions: list[Prediction]) -> str:
    width = max([len("input"), *(len(p.input) for p in predictions)])
    lines = [f"{'input':<{width}}  {'label':>10}  {'prob':>7}  next"]
    for p in predictions:
        rest = ", ".join(f"{t['label']} {t['prob'] * 100:.1f}%" for t in p.top_k[1:])
        lines.append(f"{p.input:<{width}}  {p.label:>10}  {p.prob * 100:6.2f}%  {rest}")
    return "\n".join(lines)
