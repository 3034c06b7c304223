"""Checkpoints that are never corrupt, in safetensors (no pickle anywhere).

Every file is written atomically: to a temporary file in the same directory, flushed and
fsync'ed, then `os.replace`d over the target and the directory fsync'ed — a kill at any
instant leaves either the old file or the new one.

A resumable checkpoint is two files: the trainer state `state-<step>.safetensors`
(optimizer tensors, RNG states, counters as metadata) is written first, then
`last.safetensors` (the model) whose metadata names that state file; older state files are
deleted only after that. So `last.safetensors` always names a state file that exists.

Reading is defensive: a run directory may come from someone else, or be damaged. Every read
checks that the file is a regular file, bounds the safetensors header before it is parsed,
and turns any failure into a ModelFileError naming the file (exit 2), never an internal error.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from netspec.compile.weights import check_fits
from netspec.errors import ModelFileError, NetspecError
from netspec.modelcard import check_checkpoint_card, is_number

FORMAT = "netspec-checkpoint-1"
# A real header is ~100 bytes per tensor plus netspec's metadata (class names): ~100 KB for a
# 1,000-tensor model with 10,000 classes. 16 MiB is 100x that, and bounds what is parsed (twice:
# here for the truncation check, then by safetensors, whose own cap is 100 MB) before mapping.
MAX_HEADER_BYTES = 16 * 2**20
TEMP_MARK = ".tmp-"
# Files a training process writes, only while it holds the run's lock: a temporary copy of one
# of them that the lock's next holder finds was left by an earlier holder that was killed.
TRAINER_FILES = ("last.safetensors", "best.safetensors", "state-*.safetensors", "spec.yaml", "config.json",
                 "metrics.jsonl", "curves.png", "per_class.json")
# Fault injection for the crash tests: pause with the temporary file complete but not yet renamed.
_PAUSE_ENV = "NETSPEC_CHECKPOINT_PAUSE"


# -- writing -------------------------------------------------------------------------------------
def temp_path(path: Path) -> Path:
    """`.<name>.tmp-<pid>-<random>`: unique to this process and this write."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    tmp = temp_path(path)
    # Created exclusively: `write` then fills a file that is ours, never someone else's file or link.
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
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
        tmp.unlink(missing_ok=True)  # only our own temporary file (after a failed write)
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


def prune_states(run_dir: Path, keep: str) -> None:
    """Delete state files other than `keep` (called after last.safetensors names `keep`).
    Only the holder of the run's lock calls this, so no other process is using them."""
    for path in run_dir.glob("state-*.safetensors"):
        if path.name != keep and (path.is_file() or path.is_symlink()):
            path.unlink(missing_ok=True)


def remove_stale_temporaries(run_dir: Path) -> list[str]:
    """Temporary copies of the trainer's files left by a killed earlier lock holder (call only
    with the run's lock held); other processes' temporaries (eval, export) are never touched."""
    removed = []
    for pattern in TRAINER_FILES:
        for path in run_dir.glob(f".{pattern}{TEMP_MARK}*"):
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path.name)
    return removed


# -- reading -------------------------------------------------------------------------------------
def damaged(path: Path, problem: str, hint: str | None = None,
            kind: type[NetspecError] = ModelFileError) -> NetspecError:
    """A damaged file of the run: a ModelFileError for weights and states, RunError for the run's own files."""
    return kind.at(None, str(path), problem, hint)


def open_regular(path: Path, what: str = "file", kind: type[NetspecError] = ModelFileError):
    """A binary file object, only for a regular file that is not a symlink (never blocks on a
    FIFO or device, never leaves the directory through a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise damaged(path, f"the {what} does not exist", kind=kind) from None
    except OSError as e:
        if os.path.islink(path):
            raise damaged(path, f"the {what} is a symbolic link; netspec reads only regular files in a run "
                          "directory", kind=kind) from None
        raise damaged(path, f"cannot read the {what} ({e.strerror})", kind=kind) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise damaged(path, f"the {what} is not a regular file", kind=kind)
    return os.fdopen(fd, "rb")


def _check_header(path: Path) -> None:
    """The header's length against the bound and the file's size, and the tensors' data
    against the file's size: a truncated file is reported as such before safetensors maps it."""
    with open_regular(path, "checkpoint") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else None
        if length is None:
            raise damaged(path, f"truncated: {size} bytes, not a safetensors file")
        if length > MAX_HEADER_BYTES:
            raise damaged(path, f"not a safetensors file: its header claims {length:,} bytes "
                          f"(at most {MAX_HEADER_BYTES:,})")
        if 8 + length > size:
            raise damaged(path, f"truncated: its header claims {length:,} bytes but the file has {size:,}")
        header = f.read(length)
    try:
        entries = json.loads(header)
        end = max((e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__"), default=0)
    except (ValueError, RecursionError, TypeError, KeyError, IndexError, AttributeError):
        return  # malformed: safetensors itself says how
    if isinstance(end, int) and 8 + length + end > size:
        raise damaged(path, f"truncated: its tensors need {8 + length + end:,} bytes but the file has {size:,}")


def _safetensors_error(path: Path, error: Exception) -> NetspecError:
    detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    return damaged(path, f"damaged or not a safetensors file ({detail})")


def read_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and raw metadata, validated without loading any tensor."""
    _check_header(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise _safetensors_error(path, e) from None
    return shapes, raw


def decode_metadata(path: Path, raw: dict[str, str]) -> dict[str, Any]:
    values = {}
    for key, text in raw.items():
        if key == "format":
            continue
        try:
            values[key] = json.loads(text)
        except (ValueError, RecursionError):
            raise damaged(path, f"its metadata `{ascii(key[:60])[1:-1]}` is not valid JSON") from None
    return values


def read_metadata(path: Path) -> dict[str, Any]:
    return decode_metadata(path, read_header(path)[1])


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    _check_header(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise _safetensors_error(path, e) from None


def load_state(path: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, Any]]:
    """(optimizer state_dict, RNG states, counters) as written by save_state, with their
    structure and types checked (whether they fit the optimizer is `resume`'s business)."""
    tensors = load_weights(path)
    meta = read_metadata(path)
    missing = [k for k in ("param_groups", "optim_scalars", "counters") if k not in meta]
    if missing:
        raise damaged(path, f"not a netspec trainer state (no {', '.join(missing)} in its metadata)")
    optim_state: dict[int, dict[str, Any]] = {}
    rng = {}
    for key, value in tensors.items():
        kind, _, rest = key.partition("/")
        index, _, name = rest.partition("/")
        if kind == "optim" and index.isdigit() and len(index) <= 9 and name:
            optim_state.setdefault(int(index), {})[name] = value
        elif kind == "rng" and rest:
            rng[rest] = value
        else:
            raise damaged(path, f"unexpected tensor {key[:80]!r} in a trainer state")
    for index, values in check_scalars(meta["optim_scalars"], path).items():
        optim_state.setdefault(index, {}).update(values)
    optimizer = {"state": optim_state, "param_groups": check_param_groups(meta["param_groups"], path)}
    return optimizer, rng, check_counters(meta["counters"], path)


# -- metadata types ------------------------------------------------------------------------------
# Counters beyond int64 cannot be real (and torch cannot hold them).
MAX_COUNTER = 2**63 - 1
COUNTER_FIELDS = {"epoch": "int", "step": "int", "global_step": "int", "best_val_acc": "number",
                  "steps_per_epoch": "int"}
TOTALS_FIELDS = {"loss": "number", "correct": "int", "seen": "int", "seconds": "number"}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNTER


_is_number = is_number


def _check_fields(record: Any, fields: dict[str, str], path: Path, what: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise damaged(path, f"its {what} is not a JSON object")
    for key, kind in fields.items():
        ok = _is_int(record.get(key)) if kind == "int" else _is_number(record.get(key))
        if not ok:
            expected = "a non-negative integer" if kind == "int" else "a finite number"
            raise damaged(path, f"its {what} `{key}` is {'missing' if key not in record else 'not ' + expected}")
    return {key: record[key] for key in fields}


def check_counters(counters: Any, path: Path) -> dict[str, Any]:
    checked = _check_fields(counters, COUNTER_FIELDS, path, "counters")
    checked["totals"] = _check_fields(counters.get("totals"), TOTALS_FIELDS, path, "counters' totals")
    if checked["epoch"] < 1 or checked["steps_per_epoch"] < 1 or not -1 <= checked["best_val_acc"] <= 1:
        raise damaged(path, "its counters are out of range (epoch and steps_per_epoch ≥ 1, best_val_acc ≤ 1)")
    # Whether the epoch's end (validation, metrics, best) is done: a Ctrl-C on an epoch's last
    # step saves all its steps but not its end. States written before this flag existed saved
    # the last step only at the epoch's end.
    ended = counters.get("epoch_ended", checked["step"] >= checked["steps_per_epoch"])
    if not isinstance(ended, bool) or (ended and checked["step"] != checked["steps_per_epoch"]):
        raise damaged(path, "its counters `epoch_ended` is not true or false, or true in the middle of an epoch")
    checked["epoch_ended"] = ended
    # The epoch of the best validation accuracy: early stopping counts from it (netspec/train/controls.py).
    # States written before it was kept: the last ended epoch, so that a resume restarts the count.
    best_epoch = counters.get("best_epoch", checked["epoch"] - (0 if ended else 1))
    if not _is_int(best_epoch) or best_epoch > checked["epoch"]:
        raise damaged(path, "its counters `best_epoch` is not a non-negative integer up to `epoch`")
    checked["best_epoch"] = best_epoch
    scaler = counters.get("grad_scaler")  # fp16 AMP's loss scale (netspec/train/controls.py); absent otherwise
    if scaler is not None:
        if not (isinstance(scaler, dict) and _is_number(scaler.get("scale")) and scaler["scale"] > 0
                and _is_int(scaler.get("growth_tracker"))):
            raise damaged(path, "its counters `grad_scaler` is not {scale: a positive number, growth_tracker: "
                          "a non-negative integer}")
        checked["grad_scaler"] = {"scale": float(scaler["scale"]), "growth_tracker": scaler["growth_tracker"]}
    return checked


def _plain_value(value) -> bool:
    """What an optimizer keeps besides tensors: numbers, flags, names, None, short tuples of numbers."""
    if value is None or isinstance(value, (bool, str)) or _is_number(value):
        return True
    return isinstance(value, list) and len(value) <= 8 and all(_is_number(v) for v in value)


def check_scalars(scalars: Any, path: Path) -> dict[int, dict[str, Any]]:
    if not isinstance(scalars, dict):
        raise damaged(path, "its optimizer scalars are not a JSON object")
    checked = {}
    for index, values in scalars.items():
        if not (index.isdigit() and len(index) <= 9 and isinstance(values, dict)
                and all(_plain_value(v) for v in values.values())):
            raise damaged(path, f"its optimizer scalars for parameter {index[:20]!r} are malformed")
        checked[int(index)] = values
    return checked


def check_param_groups(groups: Any, path: Path) -> list[dict[str, Any]]:
    if not (isinstance(groups, list) and all(isinstance(g, dict) for g in groups)):
        raise damaged(path, "its optimizer parameter groups are not a list of JSON objects")
    for group in groups:
        params = group.get("params")
        if not (isinstance(params, list) and all(_is_int(p) for p in params)
                and all(_plain_value(v) for k, v in group.items() if k != "params")):
            raise damaged(path, "its optimizer parameter groups are malformed")
    return groups


# The checkpoint's own fields; the model card's (labels, mean/std, ...) are netspec.modelcard's.
WEIGHTS_FIELDS = {"epoch": "int", "step": "int", "state": "str", "complete": "bool"}


def check_weights_metadata(meta: dict[str, Any], path: Path, channels: int) -> dict[str, Any]:
    """The fields eval, export and resume use: their types, and mean/std per input channel."""
    for key, kind in WEIGHTS_FIELDS.items():
        ok = _is_int(meta.get(key)) if kind == "int" else isinstance(meta.get(key), {"str": str, "bool": bool}[kind])
        if key in meta and not ok:
            expected = {"int": "a non-negative integer", "str": "a string", "bool": "true or false"}[kind]
            raise damaged(path, f"its metadata `{key}` has the wrong type (expected {expected})")
    check_checkpoint_card(meta, path, channels)
    return meta


def read_checked(path: Path, model: torch.nn.Module, channels: int) -> dict:
    """The metadata of a weights file whose header is sound and whose tensors fit `model`
    (from the header alone: nothing is loaded). ModelFileError naming the file otherwise."""
    shapes, raw = read_header(path)
    meta = check_weights_metadata(decode_metadata(path, raw), path, channels)
    check_fits(model, shapes, path)
    return meta


def is_intact(path: Path, model: torch.nn.Module, channels: int) -> bool:
    try:
        read_checked(path, model, channels)
    except NetspecError:
        return False
    return True
