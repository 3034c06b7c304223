"""Runs from Python: `netspec.load_run(RUN_DIR)`, a trained run that predicts.

    import netspec
    run = netspec.load_run("runs/lenet5-1")   # the best weights; weights="last" for the newest
    run.model                                 # torch.nn.Module, eval mode
    run.spec, run.config, run.labels, run.card
    run.predict("digit.png").label            # one input → one Prediction
    run.predict(["a.png", array, pil_image])  # a list (or a folder, a glob, an N×C×H×W array) → a list

Every input becomes exactly the pixels training evaluated on: image files and .npy arrays are read
by the readers `netspec infer` uses (netspec.exporters.predict: size checked before decoding, the
.npy header before allocating), numpy arrays and PIL images go through the same netspec.preprocess
functions (converted to L or RGB, resized bilinearly to the spec's input), then they are normalised
with the mean/std saved with the weights. The run's own torch model computes the scores (nothing
is exported); each prediction is the object `netspec infer --json` prints: input, index, label,
prob and top_k. A bad input raises BadInput (a ValueError) naming it.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from netspec.errors import RunError, printable
from netspec.exporters.predict import (
    BadInput,
    Failure,
    Prediction,
    classify_images,
    expand_inputs,
    image_array,
    read_input,
)
from netspec.preprocess import array_to_image, fit_image
from netspec.run import Run, check_weights_name

__all__ = ["TrainedRun", "load_run", "Prediction", "BadInput", "image_array"]


class TrainedRun(Run):
    """A run directory with its weights loaded (netspec.run.Run) that classifies images."""

    def __repr__(self) -> str:
        name = self.card.name if self.card else "?"
        return f"TrainedRun({str(self.directory)!r}, weights={self.weights!r}, spec={name!r})"

    def predict(self, inputs, top_k: int = 5, batch_size: int = 32):
        """Predictions for `inputs`: one Prediction for one image path, array or PIL image; a list
        for a list or tuple of them, a folder or glob pattern (expanded as `netspec infer` does), or
        an N×C×H×W / N×H×W×C array. Batches of `batch_size` run through the model in eval mode."""
        for name, value in (("top_k", top_k), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.model is None:
            self.load_weights("best")
        items, single = _as_items(inputs)
        runtime = _TorchRuntime(self)
        channels, height, width = self.card.input_shape
        predictions, batch, names = [], [], []
        for name, item in items:
            batch.append(_read(item, name, channels, height, width))
            names.append(name)
            if len(batch) == batch_size:
                predictions += runtime.classify(np.stack(batch), names, top_k)
                batch, names = [], []
        if batch:
            predictions += runtime.classify(np.stack(batch), names, top_k)
        return predictions[0] if single else predictions


def load_run(run_dir, weights: str = "best") -> TrainedRun:
    """The run at `run_dir` (a path) with its `weights` (best or last) loaded, checked as `netspec
    eval` checks them: config.json, the spec as trained, the weights file and its model card. Each
    problem is a netspec error (RunError, ModelFileError, OptionError) naming the file."""
    check_weights_name(weights)
    return TrainedRun.open(Path(run_dir), "load_run").load_weights(weights)


class _TorchRuntime:
    """The run's torch model behind the interface infer's classifier reads (card, where, run)."""

    def __init__(self, run: TrainedRun):
        shape = run.card.input_shape
        if len(shape) != 3 or shape[0] not in (1, 3) or not all(isinstance(d, int) for d in shape):
            raise RunError.at(None, str(run.directory), f"predict takes images; the model's input is "
                              f"{'×'.join(map(str, shape))} (1 or 3 channels × H × W needed)")
        self.card, self.model, self.where = run.card, run.model, printable(run.directory)

    def classify(self, images: np.ndarray, names: list[str], top_k: int) -> list[Prediction]:
        return classify_images(self, images, names, top_k)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Scores for float32 N×C×H×W, in eval mode (restored to what it was after)."""
        import torch

        tensors = [*self.model.parameters(), *self.model.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return self.model(torch.from_numpy(x).to(device)).float().cpu().numpy()
        finally:
            self.model.train(was_training)


def _as_items(inputs) -> tuple[list[tuple[str, object]], bool]:
    """(name, input) pairs in order, and whether `inputs` was one input (one result)."""
    from PIL import Image

    if isinstance(inputs, (str, os.PathLike)):
        expanded = _expanded(inputs)
        return expanded, len(expanded) == 1 and not _names_many(inputs)
    if isinstance(inputs, Image.Image) or (isinstance(inputs, np.ndarray) and inputs.ndim in (2, 3)):
        return [(_name(inputs, 0), inputs)], True
    if isinstance(inputs, np.ndarray) and inputs.ndim != 4:
        raise BadInput(f"expected an image array H×W, H×W×C or C×H×W, or a batch N×C×H×W, got shape {inputs.shape}")
    if not isinstance(inputs, (list, tuple, np.ndarray)):
        raise TypeError(f"predict takes image paths, numpy arrays or PIL images (one, or a list), "
                        f"not {type(inputs).__name__}")
    items: list[tuple[str, object]] = []
    for position, item in enumerate(inputs):
        items += _expanded(item) if isinstance(item, (str, os.PathLike)) else [(_name(item, position), item)]
    return items, False


def _names_many(path) -> bool:
    text = os.fspath(path)
    return os.path.isdir(text) or (not os.path.lexists(text) and glob.has_magic(str(text)))


def _expanded(path) -> list[tuple[str, object]]:
    """A path as the files it names (a folder: its images and .npy arrays; a glob: its matches)."""
    found = []
    for item in expand_inputs([os.fspath(path)]):
        if isinstance(item, Failure):
            raise BadInput(f"{printable(item.input)}: {item.message}")
        found.append((str(item), item))
    return found


def _name(item, position: int) -> str:
    """What a prediction's `input` says for an in-memory input: a PIL image's file name if it has
    one, else its kind and position among the inputs."""
    filename = getattr(item, "filename", "")
    if isinstance(filename, str) and filename:
        return filename
    return f"<{'array' if isinstance(item, np.ndarray) else type(item).__name__} {position}>"


def _read(item, name: str, channels: int, height: int, width: int) -> np.ndarray:
    """One input → uint8 C×H×W at the model's input, as `netspec infer` reads it."""
    from PIL import Image

    try:
        if isinstance(item, Path):
            return read_input(item, channels, height, width)
        if isinstance(item, Image.Image):
            return fit_image(item, channels, height, width)
        if isinstance(item, np.ndarray):
            return fit_image(array_to_image(image_array(item)), channels, height, width)
    except BadInput as error:
        raise BadInput(f"{printable(name)}: {error}") from None
    raise TypeError(f"{printable(name)}: predict takes image paths, numpy arrays or PIL images, "
                    f"not {type(item).__name__}")
