"""onnxruntime sessions for netspec models: the file checked, threads, metadata, batched runs.

A model file may come from anyone: before onnxruntime sees it, it must be a regular file within
protobuf's 2 GiB with external data only inside its own folder, and netspec's metadata (JSON in
`metadata_props`) is checked for types, lengths and sizes — a bad field is an error naming the
file and the field, never garbage or a 10^10-pixel resize.

The full graph optimisation level is used (the NCHWc layout transform only runs there).
When PyTorch shares the process (export parity, bench), ORT's thread spinning is turned off
so the two thread pools do not starve each other. On CUDA the cuDNN conv algorithm search is
heuristic (exhaustive search would re-run for every new dynamic batch size) and inputs and
outputs go through IO binding. Which provider runs, and why, is exporters/providers.py's part.
"""

from __future__ import annotations

import json
import math
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporters.providers import GPU_PROVIDERS, gpu_present, open_session  # noqa: F401 (gpu_present: for bench)
from netspec.errors import SpecError, printable  # noqa: F401 (re-exported for infer, bench, cli)
from netspec.progress import plural
from netspec.reading import open_regular

OUTPUT_KINDS = ("logits", "log_probs", "probs")

MAX_MODEL_BYTES = 2**31 - 1  # protobuf cannot encode more; bigger weights live in external data
MAX_METADATA_CHARS = 4 * 2**20  # one netspec.* value: 100,000 labels fit, a JSON bomb does not
MAX_INPUT_SIDE = 16_384  # H and W of a model's input (ImageNet models take 224)
MAX_INPUT_CHANNELS = 64  # C of a model's input (images have 1 or 3)
MAX_INPUT_ELEMENTS = 3 * 8192 * 8192  # C×H×W of one sample: an 8192² RGB image, 768 MiB as float32
MAX_BATCH_BYTES = 2**31  # one float32 batch bench or export allocates: 2 GiB


def json_text(value) -> str:
    """Indented JSON that keeps non-ASCII text readable but escapes what a terminal would act on
    (json.dumps escapes only C0 controls; C1 and bidi controls would pass raw)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return "".join(ch if ch.isprintable() or ch == "\n" else json.dumps(ch)[1:-1] for ch in text)


@dataclass
class ModelInfo:
    """What the exported file says about itself (netspec writes it into metadata_props)."""

    name: str = "model"
    input_shape: list = field(default_factory=list)  # C, H, W (or F); None where the graph leaves it open
    labels: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    normalize: bool = False
    channels: str = "RGB"
    output: str = "logits"  # logits | log_probs | probs (what the last layer gives)

    @classmethod
    def from_metadata(cls, meta: dict[str, str], graph_shape: list, classes: int | None,
                      where: str = "model") -> "ModelInfo":
        """Validated metadata; `graph_shape` is the graph's input without the batch (None: open),
        `classes` its output width when fixed. A bad field raises SpecError naming it."""
        check = _Metadata(meta, where)
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
            raise check.problem("normalize", "is true but `netspec.mean` or `netspec.std` is missing")
        default_mode = "L" if channels == 1 else "RGB"
        return cls(name=check.text("spec_name", "model"), input_shape=shape, labels=labels, mean=mean, std=std,
                   normalize=normalize, output=check.choice("output", OUTPUT_KINDS, "logits"),
                   channels=check.choice("channels", ("L", "RGB"), default_mode))

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels and index < len(self.labels) else str(index)


class _Metadata:
    """Reads netspec.* fields out of metadata_props, raising errors that name the file and field."""

    def __init__(self, meta: dict[str, str], where: str):
        self.meta, self.where = meta, where

    def problem(self, key: str, message: str) -> SpecError:
        return SpecError.at(None, self.where, f"metadata `netspec.{key}`: {message}",
                            "this file was not written by `netspec export`, or was edited since")

    def text(self, key: str, default: str) -> str:
        value = self.meta.get(f"netspec.{key}", default)
        if len(value) > MAX_METADATA_CHARS:
            raise self.problem(key, f"{len(value):,} characters; the limit is {MAX_METADATA_CHARS:,}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise self.problem(key, f"expected one of {', '.join(choices)}, got `{printable(value[:40])}`")
        return value

    def json(self, key: str, default=None):
        if f"netspec.{key}" not in self.meta:
            return default
        try:
            return json.loads(self.text(key, ""))
        except (ValueError, RecursionError) as e:  # RecursionError: [[[[…]]]] nested 10^6 deep
            raise self.problem(key, f"not valid JSON ({printable(str(e))[:80]})") from None

    def list_of(self, key: str, kinds, what: str, length: int | None = None):
        value = self.json(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value):
            raise self.problem(key, f"expected a list of {what}, got {_show(value)}")
        if length is not None and len(value) != length:
            raise self.problem(key, f"has {len(value)} entries, the model has {length}")
        if kinds != str and not all(math.isfinite(v) for v in value):
            raise self.problem(key, f"expected finite numbers, got {_show(value)}")
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
            raise self.problem("input_shape", f"says {_dims(value)} but the graph's input is {_dims(graph_shape)}")
        problem = input_size_problem(value)
        if problem:
            raise self.problem("input_shape", problem)
        return value


def input_size_problem(shape: list) -> str | None:
    """Why an input shape (without the batch; None = open) is beyond the documented bounds."""
    if len(shape) == 3:
        channels, height, width = shape
        if channels is not None and channels > MAX_INPUT_CHANNELS:
            return f"{_dims(shape)} has {channels:,} channels; the limit is {MAX_INPUT_CHANNELS}"
        if any(d is not None and d > MAX_INPUT_SIDE for d in (height, width)):
            return f"{_dims(shape)} has a side above {MAX_INPUT_SIDE:,}"
    values = math.prod(d for d in shape if d is not None)
    if values > MAX_INPUT_ELEMENTS:
        return f"{_dims(shape)} is {values:,} values per sample; the limit is {MAX_INPUT_ELEMENTS:,}"
    return None


def check_batch_memory(flag: str, batch: int, shape: list) -> None:
    """A float32 batch of `shape` samples must fit MAX_BATCH_BYTES (refused before allocating)."""
    size = batch * math.prod(shape) * 4
    if size > MAX_BATCH_BYTES:
        raise SpecError.at(None, flag, f"a batch of {batch:,} inputs of {_dims(shape)} is {size / 2**30:.1f} GiB "
                           f"as float32; the limit is {MAX_BATCH_BYTES / 2**30:g} GiB", "use a smaller batch")


def _dims(shape) -> str:
    return printable("×".join("?" if d is None else str(d) for d in shape))[:80]


def _show(value) -> str:
    """A short, escaped rendering of a metadata value for an error message."""
    text = str(value)
    return printable(text[:80]) + ("…" if len(text) > 80 else "")


def read_model_file(path: Path) -> tuple[object, bytes]:
    """The parsed onnx.ModelProto and the file's bytes: a regular file within MAX_MODEL_BYTES."""
    import onnx
    from google.protobuf.message import DecodeError

    where = printable(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SpecError.at(None, "model", f"{where}: no such file") from None
    except OSError as e:
        raise SpecError.at(None, "model", f"{where}: cannot read it ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError.at(None, "model", f"{where} is a directory, not a run directory (no config.json)",
                           "give the .onnx file written by `netspec export`, or the run directory it was exported into")
    if not stat.S_ISREG(info.st_mode):
        raise SpecError.at(None, "model", f"{where} is not a regular file")
    if info.st_size > MAX_MODEL_BYTES:
        raise SpecError.at(None, "model", f"{where} is {info.st_size:,} bytes; an ONNX file holds at most "
                           f"{MAX_MODEL_BYTES:,} (larger weights go to external data)")
    try:
        with open_regular(path) as file:  # non-blocking open + fstat: swapped for a FIFO since the stat, it cannot hang
            data = file.read(MAX_MODEL_BYTES + 1)
        model = onnx.ModelProto.FromString(data)
    except OSError as e:
        raise SpecError.at(None, "model", f"{where}: cannot read it ({e.strerror})") from None
    except (DecodeError, RuntimeError, ValueError) as e:  # RuntimeError: protobuf's nesting limit
        raise SpecError.at(None, "model", f"{where} is not a loadable ONNX model ({printable(e)[:120]})") from None
    return model, data


def check_external_data(model, path: Path) -> bool:
    """Whether the model keeps tensors in external files; each must lie inside the model's own
    folder (no absolute paths, no `..`, no symlink out) and be long enough for its offset + length."""
    import onnx

    folder, external = path.resolve().parent, False
    for tensor in _tensors_of(model.graph, model.functions):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            external = True
            entries = {e.key: e.value for e in tensor.external_data}
            problem = _external_problem(folder, entries.get("location", ""), entries)
            if problem:
                raise SpecError.at(None, printable(path), f"tensor `{printable(tensor.name)[:80]}`: {problem[0]}", problem[1])
    return external


def _external_problem(folder: Path, location: str, entries: dict) -> tuple[str, str | None] | None:
    shown = f"`{printable(location)[:120]}`"
    target = _resolved(folder, location)
    if target is None or not target.is_relative_to(folder):
        return f"external data {shown} is outside the model's folder", "only files beside the model are read"
    if not target.is_file():
        return f"external data file {shown} is missing", "copy the .onnx.data file along with the model"
    try:
        offset, length = int(entries.get("offset", "0")), int(entries.get("length", "0"))
    except ValueError:
        offset = length = -1
    if offset < 0 or length < 0 or offset + length > target.stat().st_size:
        return f"its external offset/length do not fit {shown}", None
    return None


def _resolved(folder: Path, location: str) -> Path | None:
    """`folder / location` with symlinks resolved; None for names no file can have."""
    if not location or "\0" in location or Path(location).is_absolute():
        return None
    try:
        return (folder / location).resolve()
    except (OSError, RuntimeError):  # a name over the OS limit; RuntimeError: a symlink loop (Python 3.11)
        return None


def _tensors_of(graph, functions=()):
    """Every tensor a model holds: initializers (dense and sparse) and node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    nodes = [*graph.node, *(node for function in functions for node in function.node)]
    for node in nodes:
        for attribute in node.attribute:
            yield from (attribute.t, *attribute.tensors)
            for sparse in (attribute.sparse_tensor, *attribute.sparse_tensors):
                yield from (sparse.values, sparse.indices)
            for subgraph in (attribute.g, *attribute.graphs):
                yield from _tensors_of(subgraph)


class OnnxModel:
    """An onnxruntime session plus the model's metadata; `run` takes float32 N×C×H×W."""

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None, torch_in_process: bool = False):
        import onnxruntime as ort

        self.path = path = Path(path)
        self.where = printable(path)
        proto, data = read_model_file(path)
        external = check_external_data(proto, path)
        ort.set_default_logger_severity(3)  # our own note says which provider ran
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if torch_in_process:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = str(path) if external else data  # the bytes just checked, unless external data lies beside the file
        try:
            self.session, self.notes = open_session(
                provider, lambda providers, **kw: ort.InferenceSession(model, options, providers=providers, **kw))
        except SpecError:
            raise
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/… types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SpecError.at(None, "model", f"{self.where} is not a loadable ONNX model ({printable(first)[:200]})") from None
        del data, model
        self.provider = self.session.get_providers()[0]
        self._read_signature(proto)

    def _read_signature(self, proto) -> None:
        """The one float input N×C×H×W (or N×F), the first output, and the validated metadata."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise SpecError.at(None, self.where, f"the model takes {plural(len(inputs), 'input')} and gives "
                               f"{plural(len(outputs), 'output')}; a netspec model takes one and gives one")
        shape = inputs[0].shape if isinstance(inputs[0].shape, list) else []
        if inputs[0].type != "tensor(float)" or len(shape) not in (2, 4):
            raise SpecError.at(None, self.where, f"the model's input is {printable(inputs[0].type)} of rank "
                               f"{len(shape)}; netspec models take float N×C×H×W or N×F")
        if not outputs[0].type.startswith("tensor(float") and outputs[0].type != "tensor(double)":
            raise SpecError.at(None, self.where, f"the model gives {printable(outputs[0].type)}; expected floats")
        dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
        out = outputs[0].shape if isinstance(outputs[0].shape, list) else []
        classes = out[1] if len(out) == 2 and isinstance(out[1], int) and out[1] > 0 else None
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.fixed_batch = dims[0]
        meta: dict[str, str] = {}
        for prop in proto.metadata_props:
            if prop.key.startswith("netspec.") and prop.key in meta:
                raise SpecError.at(None, self.where, f"metadata `{printable(prop.key)}` is given twice")
            meta[prop.key] = prop.value
        self.info = ModelInfo.from_metadata(meta, dims[1:], classes, self.where)

    @property
    def on_gpu(self) -> bool:
        return self.provider in GPU_PROVIDERS

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs for float32 N×C×H×W; a fixed-batch model is fed chunks of its batch size,
        the last one padded by repeating its final sample."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        size = self.fixed_batch
        if not size or len(x) == size:
            return self._run(x)
        outputs = []
        for start in range(0, len(x), size):
            chunk = x[start:start + size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
            outputs.append(self._run(chunk))
        return np.concatenate(outputs)[:len(x)]

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            if not self.on_gpu:
                return self.session.run([self.output_name], {self.input_name: x})[0]
            binding = self.session.io_binding()  # inputs copied once, output left on the device until read
            binding.bind_cpu_input(self.input_name, x)
            binding.bind_output(self.output_name, "cuda")
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]
        except Exception as e:
            if not type(e).__module__.startswith("onnxruntime"):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SpecError.at(None, self.where, f"onnxruntime cannot run the model ({printable(first)[:200]})") from None


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
