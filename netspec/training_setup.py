"""Everything `netspec train` settles before the first step: config, run directory, device,
data, model, optimizer — each problem reported as a one-line user error."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from netspec import __version__
from netspec.config import TrainConfig
from netspec.data import Data, DataError, load_data
from netspec.errors import Diagnostic, SpecError
from netspec.progress import Progress
from netspec.rundir import (latest_run_dir, load_run_spec, new_run_dir, read_config, run_to_resume, write_config,
                            write_spec_copy)
from netspec.runlock import RunLock
from netspec.spec import Spec, load



@dataclass
class Setup:
    spec: Spec
    spec_path: Path
    config: TrainConfig
    data: Data
    model: torch.nn.Module  # what runs (maybe DDP- or torch.compile-wrapped)
    bare_model: torch.nn.Module  # what is saved
    device: torch.device
    amp_dtype: Any
    optimizer: torch.optim.Optimizer
    run_dir: Path
    resume_from: Path | None
    progress: Progress
    rank: int = 0
    world: int = 1
    notes: list[str] = field(default_factory=list)
    lock: RunLock | None = None  # on the run directory, while this process trains it

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def banner(self, steps: int) -> str:
        c = self.config
        lines = [f"training {self.spec.name} on {self.data.name} ({len(self.data.train):,} train / "
                 f"{len(self.data.val):,} val, {len(self.data.classes)} classes) → {self.run_dir}",
                 f"  device {self.device}{f' ×{self.world} processes' if self.world > 1 else ''}, "
                 f"{c.epochs} epochs × {steps} steps of {c.batch_size}, {c.optimizer} lr {c.lr:g}, "
                 f"schedule {c.schedule}" + (f", amp {c.amp}" if c.amp != "none" else "")]
        lines += [f"  {note}" for note in self.notes + self.data.notes]
        return "\n".join(lines)

    def weights_metadata(self) -> dict:
        return {"netspec": __version__, "spec": self.spec.name, "spec_sha256": self.spec.sha256,
                "input": list(self.spec.input), "labels": self.data.classes, "mean": list(self.data.mean),
                "std": list(self.data.std), "normalize": self.config.augment.normalize,
                "channels": "L" if self.spec.input[0] == 1 else "RGB"}

    def reduce_totals(self, totals):
        """Sum the epoch's training totals over all processes."""
        if self.world == 1:
            return totals
        import torch.distributed as dist

        values = torch.tensor([totals.loss, totals.correct, totals.seen], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return type(totals)(values[0].item(), int(values[1].item()), int(values[2].item()), totals.seconds)


def prepare(spec_path: Path, overrides: dict, set_vars: list[str], out: Path | None, resume: bool,
            init_from: Path | None, progress: Progress) -> Setup:
    """Everything before the first step. The run directory's lock, once taken, is held by the
    returned Setup until `Setup.release()` — or released here if anything after it fails."""
    locks: list[RunLock] = []
    try:
        setup = _prepare(Path(spec_path), overrides, set_vars, out, resume, init_from, progress, locks)
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    setup.lock = locks[0] if locks else None
    return setup


def _prepare(spec_path: Path, overrides: dict, set_vars: list[str], out: Path | None, resume: bool,
             init_from: Path | None, progress: Progress, locks: list[RunLock]) -> Setup:
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    resume_from = None
    notes = []
    if resume:
        resume_from, set_vars, overrides = _resume_settings(spec_path, overrides, set_vars, out, rank, notes, locks)
    # A resumed run continues the spec as trained (its copy in the run directory), even if the
    # spec file has changed since.
    spec = load_run_spec(resume_from, set_vars) if resume_from else load(spec_path, overrides=set_vars)
    config = resolve_config(spec, overrides)
    if config.data is None:
        raise SpecError.at(None, "--data", "no dataset: give --data (e.g. --data digits) or `train: {data: ...}`")
    device = pick_device(config.device, rank)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.amp]
    if config.amp == "fp16" and device.type != "cuda":
        raise SpecError.at(None, "--amp", "fp16 mixed precision needs CUDA", "use --amp bf16 on CPU, or --amp none")
    torch.manual_seed(config.seed)  # the weights' initialisation
    from netspec.compiler import build_with_report

    bare_model, report = build_with_report(spec)
    if config.channels_last == "auto":
        has_conv = any(isinstance(m, torch.nn.Conv2d) for m in bare_model.modules())
        config = config.model_copy(update={"channels_last": has_conv and len(spec.input) == 3})
    data = load_data(config.data, spec.input, Path(config.data_root) if config.data_root else None)
    check_outputs(report.output, data, spec)
    run_dir = resume_from or _make_run_dir(spec, config, data, set_vars, out, rank, locks)
    if init_from is not None and resume_from is None:
        notes.append(initialise_from(bare_model, Path(init_from)))
    bare_model.to(device)
    if config.channels_last:
        bare_model.to(memory_format=torch.channels_last)
    model = bare_model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(bare_model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    optimizer = make_optimizer(config, bare_model)
    return Setup(spec, spec_path, config, data, model, bare_model, device, amp_dtype, optimizer, run_dir,
                 resume_from, progress if rank == 0 else Progress(enabled=False), rank, world, notes)


def _resume_settings(spec_path: Path, overrides: dict, set_vars: list[str], out: Path | None, rank: int,
                     notes: list[str], locks: list[RunLock]) -> tuple[Path, list[str], dict]:
    """The run to resume (locked, on rank 0) and the settings it continues with: its own."""
    name = load(spec_path, overrides=set_vars).name if out is None else ""
    if rank == 0:
        resume_from, lock = run_to_resume(name, out)
        locks.append(lock)
    else:  # the launcher (or rank 0) holds the lock for the whole group
        resume_from = latest_run_dir(name, out)
    saved = read_config(resume_from)
    ignored = sorted(k for k in overrides if k != "epochs" and not _same_setting(overrides[k], saved["train"].get(k)))
    if ignored:
        notes.append(f"resuming with the run's own settings; ignored: {', '.join(ignored)}")
    if not any((resume_from / checkpoint).exists() for checkpoint in ("last.safetensors", "best.safetensors")):
        raise SpecError.at(None, "--resume", f"{resume_from} has no checkpoint yet", "start a new run instead")
    return resume_from, saved.get("overrides", set_vars), {**saved["train"], **{k: v for k, v in overrides.items() if k == "epochs"}}


def _same_setting(given, saved) -> bool:
    """A flag equals the saved setting (for `augment`, every sub-key given)."""
    if isinstance(given, dict) and isinstance(saved, dict):
        return all(saved.get(k) == v for k, v in given.items())
    return given == saved


def resolve_config(spec: Spec, overrides: dict) -> TrainConfig:
    merged = spec.train.model_dump(exclude_unset=True) if spec.train else {}
    for key, value in overrides.items():
        if key == "augment" and isinstance(value, dict):
            merged["augment"] = {**merged.get("augment", {}), **value}
        elif value is not None:
            merged[key] = value
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as e:
        diagnostics = []
        for err in e.errors(include_url=False):
            loc = err["loc"]
            key = str(loc[0])
            flag = "--" + str(loc[-1] if key == "augment" else key).replace("_", "-")  # --pad, not --augment
            where = flag if key in overrides else f"train.{'.'.join(map(str, loc))}"
            diagnostics.append(Diagnostic(spec.input_mark if key not in overrides else None, where,
                                          err["msg"][0].lower() + err["msg"][1:]))
        raise SpecError(diagnostics) from None


def pick_device(choice: str, rank: int) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SpecError.at(None, "--device", "CUDA was asked for but no GPU is available", "use --device cpu or auto")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    index = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def check_outputs(output: tuple, data: Data, spec: Spec) -> None:
    if len(output) != 1:
        raise DataError(f"{spec.name} outputs {'×'.join(map(str, output))}; training needs one score per class",
                        "end the spec with `flatten` and `linear: <classes>`")
    if output[0] < len(data.classes):
        raise DataError(f"{spec.name} outputs {output[0]} scores but {data.name} has {len(data.classes)} classes",
                        f"make the last layer `linear: {len(data.classes)}` (or --set the var that sets it)")


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def initialise_from(model: torch.nn.Module, source: Path) -> str:
    """--init-from RUN_DIR|file.safetensors: load tensors matching by name and shape."""
    from netspec.checkpoint import load_weights
    from netspec.weights import load_partial

    path = source / "best.safetensors" if source.is_dir() else source
    if source.is_dir() and not path.exists():
        path = source / "last.safetensors"
    if not path.exists():
        raise SpecError.at(None, "--init-from", f"{source}: no such checkpoint (expected a run directory or .safetensors)")
    report = load_partial(model, load_weights(path))
    return f"init from {path}: " + report.summary().replace("\n", "; ")


def _make_run_dir(spec: Spec, config: TrainConfig, data: Data, set_vars: list[str], out, rank: int,
                  locks: list[RunLock]) -> Path:
    if rank != 0:  # the launcher made it; every process gets it through --out
        return Path(out)
    run_dir, lock = new_run_dir(spec.name, out)
    locks.append(lock)
    write_spec_copy(run_dir, spec)
    write_config(run_dir, {"netspec": __version__, "spec": str(spec.path), "overrides": list(set_vars),
                           "train": config.model_dump(), "data": {"name": data.name, "classes": data.classes,
                                                                  "mean": data.mean, "std": data.std,
                                                                  "train": len(data.train), "val": len(data.val)}})
    return run_dir
