"""The model card: what a trained or exported model says about itself, in one place.

A model needs more than its weights to be used: the input it takes, which output is which class,
how its pixels were prepared in training (grayscale or RGB, size, mean/std, whether normalised)
and what its output is (logits, log-probabilities, probabilities). Checkpoints carry the card in
their safetensors metadata, every export format in its own metadata (ONNX: `metadata_props`);
this module is the one serializer/parser pair for both, and the only place the metadata keys
are spelled. The on-disk keys are those netspec has always written, so old runs and files load.

A file may come from anyone: every field read back is checked for type, length and size, and a
bad one is a ModelFileError naming the file and the field, never garbage or a 10^10-pixel resize.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netspec.errors import ModelFileError, printable
from netspec.preprocess import Normalisation, channel_mode

OUTPUT_KINDS = ("logits", "log_probs", "probs")
MAX_METADATA_CHARS = 4 * 2**20  # one exported value: 100,000 labels fit, a JSON bomb does not
MAX_INPUT_SIDE = 16_384  # H and W of a model's input (ImageNet models take 224)
MAX_INPUT_CHANNELS = 64  # C of a model's input (images have 1 or 3)
MAX_INPUT_ELEMENTS = 3 * 8192 * 8192  # C×H×W of one sample: an 8192² RGB image, 768 MiB as float32

# Checkpoint (safetensors) metadata: one JSON value per key.
CHECKPOINT_KEYS = {"version": "netspec", "name": "spec", "spec_sha256": "spec_sha256", "input_shape": "input",
                   "labels": "labels", "mean": "mean", "std": "std", "normalize": "normalize",
                   "channels": "channels"}
# The card fields of a checkpoint whose types are checked on reading, and their kinds.
CHECKPOINT_KINDS = {"normalize": "bool", "labels": "strings", "mean": "numbers", "std": "numbers", "input": "ints"}
# Export (ONNX metadata_props) keys: text values, JSON where not plain text.
EXPORT_PREFIX = "netspec."
EXPORT_KEYS = {"version": "version", "name": "spec_name", "spec_sha256": "spec_sha256",
               "input_shape": "input_shape", "output": "output", "normalize": "normalize", "channels": "channels",
               "labels": "labels", "mean": "mean", "std": "std"}


@dataclass
class ModelCard:
    """A model's self-description; `channels` (the image mode) follows from the input shape."""

    name: str = "model"
    input_shape: list = field(default_factory=list)  # C, H, W (or F); None where a graph leaves it open
    labels: list[str] | None = None  # the class of each output, in output order
    mean: list[float] | None = None
    std: list[float] | None = None
    normalize: bool = False
    output: str = "logits"  # logits | log_probs | probs (what the last layer gives)
    spec_sha256: str | None = None
    version: str | None = None  # of the netspec that wrote it

    @classmethod
    def of_spec(cls, spec, labels: list[str] | None = None, mean=None, std=None,
                normalize: bool = False) -> "ModelCard":
        from netspec import __version__

        return cls(spec.name, list(spec.input), None if labels is None else list(labels),
                   None if mean is None else list(mean), None if std is None else list(std), bool(normalize),
                   output_kind(spec), spec.sha256, __version__)

    @property
    def channels(self) -> str:
        """The image mode inputs are converted to: L or RGB."""
        return channel_mode(self.input_shape[0] if self.input_shape else None)

    @property
    def preprocessing(self) -> Normalisation:
        return Normalisation(self.mean, self.std, self.normalize)

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels and index < len(self.labels) else str(index)

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoint_metadata(self) -> dict[str, Any]:
        """JSON-able values for a checkpoint's metadata."""
        values = {"version": self.version, "name": self.name, "spec_sha256": self.spec_sha256,
                  "input_shape": list(self.input_shape), "labels": self.labels, "mean": self.mean, "std": self.std,
                  "normalize": self.normalize, "channels": self.channels}
        return {CHECKPOINT_KEYS[k]: v for k, v in values.items()}

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], path: Path, channels: int) -> "ModelCard":
        """The card of a checkpoint's decoded metadata, checked: types, and mean/std per input
        channel. A bad field is a ModelFileError naming the file."""
        check_checkpoint_card(meta, path, channels)
        return cls(name=meta.get("spec", "model"), input_shape=list(meta.get("input", [])),
                   labels=meta.get("labels"), mean=meta["mean"], std=meta["std"],
                   normalize=meta.get("normalize", True), spec_sha256=meta.get("spec_sha256"),
                   version=meta.get("netspec"))

    # -- exports ----------------------------------------------------------------------------------
    def export_metadata(self) -> dict[str, str]:
        """Text values for an export format's key/value metadata."""
        from netspec import __version__

        values = {"version": self.version or __version__, "name": self.name, "spec_sha256": self.spec_sha256 or "",
                  "input_shape": json.dumps(list(self.input_shape)), "output": self.output,
                  "normalize": json.dumps(self.normalize), "channels": self.channels}
        for key in ("labels", "mean", "std"):
            if getattr(self, key) is not None:
                values[key] = json.dumps(list(getattr(self, key)))
        return {EXPORT_PREFIX + EXPORT_KEYS[k]: v for k, v in values.items()}

    @classmethod
    def from_export_metadata(cls, meta: dict[str, str], graph_shape: list, classes: int | None,
                             where: str = "model") -> "ModelCard":
        """Validated metadata; `graph_shape` is the graph's input without the batch (None: open),
        `classes` its output width when fixed. A bad field raises ModelFileError naming it."""
        check = _ExportFields(meta, where)
        shape = check.input_shape(graph_shape)
        channels = shape[0] if len(shape) == 3 else None
        labels = check.list_of("labels", str, "text")
        # Fewer labels than scores is fine (a dataset may have fewer classes than the spec has
        # outputs; the rest show as indices); more means the file does not describe this graph.
        if labels is not None and classes is not None and len(labels) > classes:
            raise check.problem("labels", f"has {len(labels)} entries, the model gives {classes} scores")
        mean = check.list_of("mean", (int, float), "numbers", channels)
        std = check.list_of("std", (int, float), "numbers", channels)
        if std is not None and not all(s > 0 for s in std):
            raise check.problem("std", f"every std must be > 0, got {_show(std)}")
        normalize = check.json("normalize", False)
        if not isinstance(normalize, bool):
            raise check.problem("normalize", f"expected true or false, got {_show(normalize)}")
        if normalize and (mean is None or std is None):
            raise check.problem("normalize", f"is true but `{_key('mean')}` or `{_key('std')}` is missing")
        name, output = check.text("name", "model"), check.choice("output", OUTPUT_KINDS, "logits")
        check.choice("channels", ("L", "RGB"), channel_mode(channels))  # written for other readers; checked
        return cls(name=name, input_shape=shape, labels=labels, mean=mean, std=std, normalize=normalize,
                   output=output, spec_sha256=meta.get(_key("spec_sha256")), version=meta.get(_key("version")))


def output_kind(spec) -> str:
    """What a spec's model outputs, from its last layer."""
    last = spec.root.nodes[-1] if spec.root.nodes else None
    kind = getattr(last, "kind", "")
    return {"log_softmax": "log_probs", "softmax": "probs"}.get(kind, "logits")


def input_size_problem(shape: list) -> str | None:
    """Why an input shape (without the batch; None = open) is beyond the documented bounds."""
    if len(shape) == 3:
        channels, height, width = shape
        if channels is not None and channels > MAX_INPUT_CHANNELS:
            return f"{dims(shape)} has {channels:,} channels; the limit is {MAX_INPUT_CHANNELS}"
        if any(d is not None and d > MAX_INPUT_SIDE for d in (height, width)):
            return f"{dims(shape)} has a side above {MAX_INPUT_SIDE:,}"
    values = math.prod(d for d in shape if d is not None)
    if values > MAX_INPUT_ELEMENTS:
        return f"{dims(shape)} is {values:,} values per sample; the limit is {MAX_INPUT_ELEMENTS:,}"
    return None


def dims(shape) -> str:
    return printable("×".join("?" if d is None else str(d) for d in shape))[:80]


def _show(value) -> str:
    """A short, escaped rendering of a metadata value for an error message."""
    text = str(value)
    return printable(text[:80]) + ("…" if len(text) > 80 else "")


def _key(name: str) -> str:
    return EXPORT_PREFIX + EXPORT_KEYS[name]


# -- reading a checkpoint's card -----------------------------------------------------------------
_KIND_NAMES = {"bool": "true or false", "strings": "a list of strings", "numbers": "a list of finite numbers",
               "ints": "a list of non-negative integers"}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind_ok(value, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if not isinstance(value, list):
        return False
    if kind == "strings":
        return all(isinstance(x, str) for x in value)
    if kind == "numbers":
        return all(is_number(x) for x in value)
    return all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 2**63 - 1 for x in value)


def check_checkpoint_card(meta: dict[str, Any], path: Path, channels: int) -> None:
    def damaged(problem: str) -> ModelFileError:
        return ModelFileError.at(None, str(path), problem)

    for key, kind in CHECKPOINT_KINDS.items():
        if key in meta and not _kind_ok(meta[key], kind):
            raise damaged(f"its metadata `{key}` has the wrong type (expected {_KIND_NAMES[kind]})")
    for key in ("mean", "std"):
        if key not in meta:
            raise damaged(f"its metadata has no `{key}` (the normalisation used in training)")
        if len(meta[key]) != channels:
            raise damaged(f"its metadata `{key}` has {len(meta[key])} values for {channels} input channels")
    if not all(s > 0 for s in meta["std"]):
        raise damaged("its metadata `std` must be positive")


class _ExportFields:
    """Reads the card's fields out of an export's metadata, raising errors that name the file and field."""

    def __init__(self, meta: dict[str, str], where: str):
        self.meta, self.where = meta, where

    def problem(self, name: str, message: str) -> ModelFileError:
        return ModelFileError.at(None, self.where, f"metadata `{_key(name)}`: {message}",
                                 "this file was not written by `netspec export`, or was edited since")

    def text(self, name: str, default: str) -> str:
        value = self.meta.get(_key(name), default)
        if len(value) > MAX_METADATA_CHARS:
            raise self.problem(name, f"{len(value):,} characters; the limit is {MAX_METADATA_CHARS:,}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise self.problem(name, f"expected one of {', '.join(choices)}, got `{printable(value[:40])}`")
        return value

    def json(self, name: str, default=None):
        if _key(name) not in self.meta:
            return default
        try:
            return json.loads(self.text(name, ""))
        except (ValueError, RecursionError) as e:  # RecursionError: [[[[…]]]] nested 10^6 deep
            raise self.problem(name, f"not valid JSON ({printable(str(e))[:80]})") from None

    def list_of(self, name: str, kinds, what: str, length: int | None = None):
        value = self.json(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value):
            raise self.problem(name, f"expected a list of {what}, got {_show(value)}")
        if length is not None and len(value) != length:
            raise self.problem(name, f"has {len(value)} entries, the model has {length}")
        if kinds is not str and not all(math.isfinite(v) for v in value):
            raise self.problem(name, f"expected finite numbers, got {_show(value)}")
        return value

    def input_shape(self, graph_shape: list) -> list:
        value = self.json("input_shape")
        if value is None:
            value = graph_shape
        elif not (isinstance(value, list) and len(value) in (1, 3)
                  and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in value)):
            raise self.problem("input_shape", f"expected [C, H, W] or [N] of positive integers, "
                                              f"got {_show(value)}")
        elif len(value) != len(graph_shape) or any(g is not None and g != d for g, d in zip(graph_shape, value)):
            raise self.problem("input_shape", f"says {dims(value)} but the graph's input is {dims(graph_shape)}")
        problem = input_size_problem(value)
        if problem:
            raise self.problem("input_shape", problem)
        return value
