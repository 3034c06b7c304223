"""Checkpoints that are never corrupt, in safetensors (no pickle anywhere).

Every file is written atomically: to a temporary file in the same directory, flushed and
fsync'ed, then `os.replace`d over the target and the directory fsync'ed — a kill at any
instant leaves either the old file or the new one.

A resumable checkpoint is two files: the trainer state `state-<step>.safetensors`
(optimizer tensors, RNG states, counters as metadata) is written first, then
`last.safetensors` (the model) whose metadata names that state file; older state files are
deleted only after that. So `last.safetensors` always names a state file that exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, safe_open, save_file

FORMAT = "netspec-checkpoint-1"
# Fault injection for the crash tests: pause with the temporary file complete but not yet renamed.
_PAUSE_ENV = "NETSPEC_CHECKPOINT_PAUSE"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        pause = os.environ.get(_PAUSE_ENV)
        if pause:
            print(f"checkpoint: {path.name} written to {tmp.name}, renaming", flush=True)
            import time
            time.sleep(float(pause))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def weight_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict (parameters and buffers) as contiguous CPU tensors."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Weights (from `weight_tensors`), plus JSON-able metadata."""
    meta = {"format": FORMAT, **{k: json.dumps(v) for k, v in metadata.items()}}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def read_metadata(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    return {k: json.loads(v) for k, v in raw.items() if k != "format"}


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def save_state(path: Path, optimizer: torch.optim.Optimizer, rng: dict[str, torch.Tensor],
               counters: dict[str, Any]) -> None:
    """Optimizer state (tensors by parameter index, the rest as JSON), RNG states, counters."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    for name, value in rng.items():
        tensors[f"rng/{name}"] = value.to("cpu").contiguous()
    meta = {"format": FORMAT, "param_groups": json.dumps(state["param_groups"]),
            "optim_scalars": json.dumps(scalars), "counters": json.dumps(counters)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_state(path: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, Any]]:
    """(optimizer state_dict, RNG states, counters) as written by save_state."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    optim_state: dict[int, dict[str, Any]] = {}
    rng = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition("/")
        if kind == "optim":
            index, _, name = rest.partition("/")
            optim_state.setdefault(int(index), {})[name] = value
        elif kind == "rng":
            rng[rest] = value
    for index, values in json.loads(meta["optim_scalars"]).items():
        optim_state.setdefault(int(index), {}).update(values)
    optimizer = {"state": optim_state, "param_groups": json.loads(meta["param_groups"])}
    return optimizer, rng, json.loads(meta["counters"])


def prune_states(run_dir: Path, keep: str) -> None:
    """Delete state files other than `keep` (called after last.safetensors names `keep`), and
    temporary files a killed process left behind."""
    for path in run_dir.glob("state-*.safetensors"):
        if path.name != keep:
            path.unlink(missing_ok=True)
    for path in run_dir.glob(".*.tmp-*"):
        path.unlink(missing_ok=True)
