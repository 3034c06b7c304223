"""onnxruntime sessions for netspec models: provider choice, threads, metadata, batched runs.

The full graph optimisation level is used (the NCHWc layout transform only runs there).
When PyTorch shares the process (export parity, bench), ORT's thread spinning is turned off
so the two thread pools do not starve each other. On CUDA the cuDNN conv algorithm search is
heuristic (exhaustive search would re-run for every new dynamic batch size) and inputs and
outputs go through IO binding.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netspec.errors import SpecError

PREFERENCE = ("tensorrt", "cuda", "cpu")
PROVIDER_NAMES = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "cpu": "CPUExecutionProvider"}


def gpu_present() -> bool:
    """An NVIDIA device node: without one, asking ORT for CUDA only produces loader noise."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


@dataclass
class ModelInfo:
    """What the exported file says about itself (netspec writes it into metadata_props)."""

    name: str = "model"
    input_shape: list[int] = field(default_factory=list)  # C, H, W
    labels: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    normalize: bool = False
    channels: str = "RGB"
    output: str = "logits"  # logits | log_probs | probs (what the last layer gives)

    @classmethod
    def from_metadata(cls, meta: dict[str, str], input_shape: list) -> "ModelInfo":
        def parsed(key, default=None):
            return json.loads(meta[key]) if key in meta else default

        return cls(name=meta.get("netspec.spec_name", "model"), input_shape=parsed("netspec.input_shape", input_shape),
                   labels=parsed("netspec.labels"), mean=parsed("netspec.mean"), std=parsed("netspec.std"),
                   normalize=parsed("netspec.normalize", False), output=meta.get("netspec.output", "logits"),
                   channels=meta.get("netspec.channels", "L" if input_shape and input_shape[0] == 1 else "RGB"))

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels and index < len(self.labels) else str(index)


class OnnxModel:
    """An onnxruntime session plus the model's metadata; `run` takes float32 N×C×H×W."""

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None, torch_in_process: bool = False):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise SpecError.at(None, "model", f"{path}: no such file")
        ort.set_default_logger_severity(3)  # our own note says which provider ran
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if torch_in_process:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted, self.notes = choose_providers(provider)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=wanted)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/… types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SpecError.at(None, "model", f"{path} is not a loadable ONNX model ({first[:200]})") from None
        self.provider = self.session.get_providers()[0]
        first = wanted[0] if isinstance(wanted[0], str) else wanted[0][0]  # (name, options) for GPUs
        if self.provider != first:
            self.notes.append(f"{first} is not usable here: running on {self.provider}")
        inputs = self.session.get_inputs()
        self.input_name = inputs[0].name
        shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
        self.fixed_batch = shape[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(meta, shape[1:])
        self.output_name = self.session.get_outputs()[0].name

    @property
    def on_gpu(self) -> bool:
        return self.provider in (PROVIDER_NAMES["cuda"], PROVIDER_NAMES["tensorrt"])

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
        if not self.on_gpu:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        binding = self.session.io_binding()  # inputs copied once, output left on the device until read
        binding.bind_cpu_input(self.input_name, x)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def choose_providers(choice: str) -> tuple[list, list[str]]:
    """Providers to ask onnxruntime for, best first, and notes on anything unavailable."""
    import onnxruntime as ort

    if choice not in ("auto", *PREFERENCE):
        raise SpecError.at(None, "--provider", f"unknown provider `{choice}`", "one of auto, tensorrt, cuda, cpu")
    available = set(ort.get_available_providers())
    gpu = gpu_present()
    order = PREFERENCE if choice == "auto" else tuple(dict.fromkeys((choice, "cpu")))
    notes, wanted = [], []
    for name in order:
        full = PROVIDER_NAMES[name]
        if name != "cpu" and (full not in available or not gpu):
            if choice == name:
                notes.append(f"{name} requested but no {'GPU' if not gpu else full} here: falling back to CPU")
            continue
        wanted.append(_with_options(name, full))
    if choice == "auto" and len(wanted) == 1 and not gpu:
        notes.append("no GPU found: running on CPU")
    return wanted, notes


def _with_options(name: str, full: str):
    if name == "cuda":
        return (full, {"cudnn_conv_algo_search": "HEURISTIC"})
    if name == "tensorrt":
        cache = os.path.expanduser("~/.cache/netspec/tensorrt")
        return (full, {"trt_engine_cache_enable": "True", "trt_engine_cache_path": cache})
    return full


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
