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
               "labels": "labels", "mean": "mean", "std": "std",
               "quantization": "quantization", "input_constraints": "input_constraints"}


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
    # How an exported file's weights were quantized (None: float32 as trained), e.g. {"type": "int8",
    # "format": "QDQ", "per_channel": true, "calibration": {...}, "accuracy": {...}}: exports only.
    quantization: dict | None = None
    # What open input sizes (None in input_shape) must satisfy, per symbol, as `check` derived them,
    # e.g. {"H": {"min": 32, "period": 32, "residues": [0]}}: exports of a symbolic input only.
    input_constraints: dict | None = None

    @classmethod
    def of_spec(cls, spec, labels: list[str] | None = None, mean=None, std=None,
                normalize: bool = False, input_constraints: dict | None = None) -> "ModelCard":
        """The card of a spec's model; a symbolic size (`H`) is open (None), with the rules
        netspec.exporters.dynamic derived for it as `input_constraints`."""
        from netspec import __version__

        shape = [d if isinstance(d, int) else None for d in spec.input]
        return cls(spec.name, shape, None if labels is None else list(labels),
                   None if mean is None else list(mean), None if std is None else list(std), bool(normalize),
                   output_kind(spec), spec.sha256, __version__, input_constraints=input_constraints)

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
        for key in ("quantization", "input_constraints"):
            if getattr(self, key) is not None:
                values[key] = json.dumps(getattr(self, key), sort_keys=True)
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
        quantization, constraints = check.json_object("quantization"), check.input_constraints(shape)
        return cls(name=name, input_shape=shape, labels=labels, mean=mean, std=std, normalize=normalize,
                   output=output, spec_sha256=meta.get(_key("spec_sha256")), version=meta.get(_key("version")),
                   quantization=quantization, input_constraints=constraints)


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

    def json_object(self, name: str) -> dict | None:
        """A JSON object (None when absent); its fields are checked by the code that uses them."""
        value = self.json(name)
        if value is not None and not isinstance(value, dict):
            raise self.problem(name, f"expected a JSON object, got {_show(value)}")
        return value

    def input_constraints(self, shape: list) -> dict | None:
        """The rules of the open sizes of `shape` (netspec.exporters.dynamic): required exactly when
        a size is open, every key and value checked (check_input_constraints)."""
        value = self.json_object("input_constraints")
        if value is None and None in shape and _key("input_shape") in self.meta:  # our shape says open: rules too
            raise self.problem("input_constraints", f"is missing, and the input {dims(shape)} has open sizes")
        if value is not None:
            problem = check_input_constraints(value, shape)
            if problem:
                raise self.problem("input_constraints", problem)
        return value

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
        """[C, H, W] or [N]; H and W may be null (open: a dynamic axis of the graph too)."""
        value = self.json("input_shape")
        if value is None:
            value = graph_shape
        elif not (isinstance(value, list) and len(value) in (1, 3)
                  and all(_size_or_open(d, i, len(value)) for i, d in enumerate(value))):
            raise self.problem("input_shape", f"expected [C, H, W] or [N] of positive integers (H, W: or null), "
                                              f"got {_show(value)}")
        elif len(value) != len(graph_shape) or any(g is not None and g != d for g, d in zip(graph_shape, value)) \
                or any(d is None and g is not None for g, d in zip(graph_shape, value)):
            raise self.problem("input_shape", f"says {dims(value)} but the graph's input is {dims(graph_shape)}")
        problem = input_size_problem(value)
        if problem:
            raise self.problem("input_shape", problem)
        return value


# -- the rules of open input sizes (netspec.exporters.dynamic writes them) ----------------------
MAX_RECORD_PERIOD = 4096  # netspec.shapes.constraints.MAX_PERIOD: the longest period check walks
RECORD_FIELDS = ("dims", "min", "period", "residues")


def _size_or_open(d, i: int, rank: int) -> bool:
    if d is None:
        return rank == 3 and i > 0  # H and W may be open, never the channels
    return isinstance(d, int) and not isinstance(d, bool) and d >= 1


def _int_in(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_input_constraints(record: dict, shape: list) -> str | None:
    """Why `record` ({symbol: {dims, min, period, residues}}) does not describe the open sizes of
    `shape` (None: it does): each open axis ruled by exactly one symbol, numbers within the bounds
    (min ≤ MAX_INPUT_SIDE, period ≤ MAX_RECORD_PERIOD, residues sorted, distinct, below the
    period) and at least one allowed size."""
    opened = [i for i, d in enumerate(shape) if d is None]
    if not opened:
        return f"is given, but the input {dims(shape)} has no open sizes"
    if len(record) > len(opened):
        return f"has {len(record)} entries for {len(opened)} open sizes"
    ruled: list[int] = []
    for symbol, rule in record.items():
        name = printable(symbol[:40])
        if not (symbol.isidentifier() and len(symbol) <= 64):
            return f"`{name}` is not a size name"
        if not isinstance(rule, dict) or sorted(rule) != sorted(RECORD_FIELDS):
            return f"`{name}`: expected an object with {', '.join(RECORD_FIELDS)}, got {_show(rule)}"
        problem = _rule_problem(rule, opened)
        if problem:
            return f"`{name}`: {problem}"
        ruled += rule["dims"]
    if sorted(ruled) != opened:
        return f"rules axes {sorted(ruled)}, the open axes of {dims(shape)} are {opened}"
    return None


def _rule_problem(rule: dict, opened: list[int]) -> str | None:
    axes, period, residues = rule["dims"], rule["period"], rule["residues"]
    if not (isinstance(axes, list) and 1 <= len(axes) <= len(opened) and all(a in opened for a in axes)
            and all(_int_in(a, 1, 2) for a in axes) and len(set(axes)) == len(axes)):
        return f"`dims` must list open axes (1: H, 2: W), got {_show(axes)}"
    if not _int_in(rule["min"], 1, MAX_INPUT_SIDE):
        return f"`min` must be an integer 1..{MAX_INPUT_SIDE:,}, got {_show(rule['min'])}"
    if not _int_in(period, 1, MAX_RECORD_PERIOD):
        return f"`period` must be an integer 1..{MAX_RECORD_PERIOD:,}, got {_show(period)}"
    if not (isinstance(residues, list) and 1 <= len(residues) <= period
            and all(_int_in(r, 0, period - 1) for r in residues) and residues == sorted(set(residues))):
        return f"`residues` must be distinct sorted integers 0..{period - 1}, got {_show(residues)}"
    first = rule["min"] + (min((r - rule["min"]) % period for r in residues))
    if first > MAX_INPUT_SIDE:
        return f"allows no size up to {MAX_INPUT_SIDE:,}"
    return None
