"""onnxruntime sessions for netspec models: the file checked, threads, metadata, batched runs.

A model file may come from anyone: before onnxruntime sees it, it must be a regular file within
protobuf's 2 GiB with external data only inside its own folder, and netspec's metadata (JSON in
`metadata_props`) is checked for types, lengths and sizes — a bad field is an error naming the
file and the field (netspec.modelcard reads it), never garbage or a 10^10-pixel resize.

The full graph optimisation level is used (the NCHWc layout transform only runs there).
When PyTorch shares the process (export parity, bench), ORT's thread spinning is turned off
so the two thread pools do not starve each other. On CUDA the cuDNN conv algorithm search is
heuristic (exhaustive search would re-run for every new dynamic batch size) and inputs and
outputs go through IO binding. Which provider runs, and why, is exporters/providers.py's part.
"""

from __future__ import annotations

import hashlib
import json
import math
import stat
from pathlib import Path

import numpy as np

from netspec.errors import ModelFileError, NetspecError, OptionError, printable  # noqa: F401 (printable: for infer, cli)
from netspec.exporters.providers import (  # noqa: F401 (gpu_present: for bench)
    GPU_PROVIDERS,
    TensorRT,
    gpu_present,
    open_session,
    tensorrt_profile,
)
from netspec.modelcard import EXPORT_PREFIX, ModelCard, dims
from netspec.progress import plural
from netspec.reading import open_regular

MAX_MODEL_BYTES = 2**31 - 1  # protobuf cannot encode more; bigger weights live in external data
MAX_BATCH_BYTES = 2**31  # one float32 batch bench or export allocates: 2 GiB


def json_text(value) -> str:
    """Indented JSON that keeps non-ASCII text readable but escapes what a terminal would act on
    (json.dumps escapes only C0 controls; C1 and bidi controls would pass raw)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return "".join(ch if ch.isprintable() or ch == "\n" else json.dumps(ch)[1:-1] for ch in text)


def check_batch_memory(flag: str, batch: int, shape: list) -> None:
    """A float32 batch of `shape` samples must fit MAX_BATCH_BYTES (refused before allocating)."""
    size = batch * math.prod(shape) * 4
    if size > MAX_BATCH_BYTES:
        raise OptionError.at(None, flag, f"a batch of {batch:,} inputs of {dims(shape)} is {size / 2**30:.1f} GiB "
                           f"as float32; the limit is {MAX_BATCH_BYTES / 2**30:g} GiB", "use a smaller batch")


def read_model_file(path: Path) -> tuple[object, bytes]:
    """The parsed onnx.ModelProto and the file's bytes: a regular file within MAX_MODEL_BYTES."""
    import onnx
    from google.protobuf.message import DecodeError

    where = printable(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ModelFileError.at(None, "model", f"{where}: no such file") from None
    except OSError as e:
        raise ModelFileError.at(None, "model", f"{where}: cannot read it ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ModelFileError.at(None, "model", f"{where} is a directory, not a run directory (no config.json)",
                                "give the .onnx file written by `netspec export`, "
                                "or the run directory it was exported into")
    if not stat.S_ISREG(info.st_mode):
        raise ModelFileError.at(None, "model", f"{where} is not a regular file")
    if info.st_size > MAX_MODEL_BYTES:
        raise ModelFileError.at(None, "model", f"{where} is {info.st_size:,} bytes; an ONNX file holds at most "
                                f"{MAX_MODEL_BYTES:,} (larger weights go to external data)")
    try:
        with open_regular(path) as file:  # non-blocking open + fstat: swapped for a FIFO since the stat, it cannot hang
            data = file.read(MAX_MODEL_BYTES + 1)
        model = onnx.ModelProto.FromString(data)
    except OSError as e:
        raise ModelFileError.at(None, "model", f"{where}: cannot read it ({e.strerror})") from None
    except (DecodeError, RuntimeError, ValueError) as e:  # RuntimeError: protobuf's nesting limit
        raise ModelFileError.at(None, "model", f"{where} is not a loadable ONNX model ({printable(e)[:120]})") from None
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
                raise ModelFileError.at(None, printable(path),
                                        f"tensor `{printable(tensor.name)[:80]}`: {problem[0]}", problem[1])
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
    """An onnxruntime session plus the model's card (`card`, from its metadata); `run` takes float32 N×C×H×W."""

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None, torch_in_process: bool = False,
                 trt_fp16: bool = False, trt_cache: str | None = None):
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
                provider, lambda providers, **kw: ort.InferenceSession(model, options, providers=providers, **kw),  # noqa: F821 (del below: never called after)
                _tensorrt_settings(provider, proto, data, trt_fp16, trt_cache))
        except NetspecError:
            raise
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/… types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError.at(None, "model", f"{self.where} is not a loadable ONNX model "
                                    f"({printable(first)[:200]})") from None
        del data, model
        self.provider = self.session.get_providers()[0]
        self._read_signature(proto)

    def _read_signature(self, proto) -> None:
        """The one float input N×C×H×W (or N×F), the first output, and the validated metadata."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelFileError.at(None, self.where, f"the model takes {plural(len(inputs), 'input')} and gives "
                                    f"{plural(len(outputs), 'output')}; a netspec model takes one and gives one")
        shape = inputs[0].shape if isinstance(inputs[0].shape, list) else []
        if inputs[0].type != "tensor(float)" or len(shape) not in (2, 4):
            raise ModelFileError.at(None, self.where, f"the model's input is {printable(inputs[0].type)} of rank "
                                    f"{len(shape)}; netspec models take float N×C×H×W or N×F")
        if not outputs[0].type.startswith("tensor(float") and outputs[0].type != "tensor(double)":
            raise ModelFileError.at(None, self.where, f"the model gives {printable(outputs[0].type)}; expected floats")
        sizes = [d if isinstance(d, int) and d > 0 else None for d in shape]
        out = outputs[0].shape if isinstance(outputs[0].shape, list) else []
        classes = out[1] if len(out) == 2 and isinstance(out[1], int) and out[1] > 0 else None
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.fixed_batch = sizes[0]
        meta: dict[str, str] = {}
        for prop in proto.metadata_props:
            if prop.key.startswith(EXPORT_PREFIX) and prop.key in meta:
                raise ModelFileError.at(None, self.where, f"metadata `{printable(prop.key)}` is given twice")
            meta[prop.key] = prop.value
        self.card = ModelCard.from_export_metadata(meta, sizes[1:], classes, self.where)

    @property
    def on_gpu(self) -> bool:
        return self.provider in GPU_PROVIDERS

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs for float32 N×C×H×W; a fixed-batch model is fed chunks of its batch size,
        the last one padded by repeating its final sample."""
        return in_fixed_batches(np.ascontiguousarray(x, dtype=np.float32), self.fixed_batch, self._run)

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
            raise ModelFileError.at(None, self.where,
                                    f"onnxruntime cannot run the model ({printable(first)[:200]})") from None


def in_fixed_batches(x: np.ndarray, size: int | None, run) -> np.ndarray:
    """`run` over x; for a model of a fixed batch `size`, in chunks of it, the last one padded by
    repeating its final sample (the padding's outputs dropped)."""
    if not size or len(x) == size:
        return run(x)
    outputs = []
    for start in range(0, len(x), size):
        chunk = x[start:start + size]
        if len(chunk) < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
        outputs.append(run(chunk))
    return np.concatenate(outputs)[:len(x)]


def _tensorrt_settings(provider: str, proto, data: bytes, fp16: bool, cache: str | None) -> TensorRT | None:
    """The TensorRT engine settings for this model file (None where TensorRT cannot be chosen)."""
    if provider not in ("auto", "tensorrt") or not gpu_present():
        return None
    dims = proto.graph.input[0].type.tensor_type.shape.dim if proto.graph.input else []
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    profile = tensorrt_profile(shape[1:]) if shape and shape[0] is None else None  # a fixed batch: its own shape
    return TensorRT(hashlib.sha256(data).hexdigest(), fp16, cache, profile)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
