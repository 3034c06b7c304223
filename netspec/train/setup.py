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
from netspec.compile.pretrained import is_pretrained, resolve
from netspec.data import Data, load_data
from netspec.errors import Diagnostic, OptionError, RunError, SpecError
from netspec.lang.spec import Spec, load
from netspec.modelcard import ModelCard
from netspec.progress import Progress, plural
from netspec.run import WEIGHTS, Run
from netspec.train.classes import check_outputs
from netspec.train.config import TrainConfig, complete_config
from netspec.train.rundir import latest_run_dir, new_run_dir, run_to_resume, write_config, write_spec_copy
from netspec.train.runlock import RunLock


@dataclass
class Process:
    """Where this process trains: its device and mixed precision, its place in a distributed run."""

    device: torch.device
    amp_dtype: Any  # torch.bfloat16 | torch.float16 | None
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def reduce_totals(self, totals):
        """Sum the epoch's training totals over all processes."""
        if self.world == 1:
            return totals
        import torch.distributed as dist

        values = torch.tensor([totals.loss, totals.correct, totals.seen], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return type(totals)(values[0].item(), int(values[1].item()), int(values[2].item()), totals.seconds)


@dataclass
class Learner:
    """The model being trained and its optimizer."""

    model: torch.nn.Module  # what runs (maybe DDP- or torch.compile-wrapped)
    bare_model: torch.nn.Module  # what is saved
    optimizer: torch.optim.Optimizer


@dataclass
class RunTarget:
    """The run directory this training writes, and what it continues when resumed."""

    directory: Path
    spec_path: Path  # as given on the command line (for the "continue with" hint)
    resume_from: Path | None = None
    resumed: Any = None  # netspec.train.resume.Resumed: the run's recorded settings and what --resume changes


@dataclass
class Setup:
    spec: Spec
    config: TrainConfig
    data: Data
    card: ModelCard  # what every checkpoint says about the model
    learner: Learner
    process: Process
    target: RunTarget
    progress: Progress
    notes: list[str] = field(default_factory=list)
    lock: RunLock | None = None  # on the run directory, while this process trains it

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    @property
    def run_dir(self) -> Path:
        return self.target.directory

    @property
    def bare_model(self) -> torch.nn.Module:
        return self.learner.bare_model

    def banner(self, steps: int) -> str:
        c, p = self.config, self.process
        processes = f" ×{plural(p.world, 'process')}" if p.world > 1 else ""
        lines = [f"training {self.spec.name} on {self.data.name} ({len(self.data.train):,} train / "
                 f"{len(self.data.val):,} val, {plural(len(self.data.classes), 'class')}) → {self.run_dir}",
                 f"  device {p.device}{processes}, "
                 f"{plural(c.epochs, 'epoch')} × {plural(steps, 'step')} of {c.batch_size}, "
                 f"{c.optimizer}{' nesterov' if c.nesterov else ''} "
                 f"lr {c.lr:g} weight decay {c.weight_decay:g}, "
                 f"schedule {c.schedule}" + (f", amp {c.amp}" if c.amp != "none" else "")]
        lines += [f"  {note}" for note in self.notes + self.data.notes]
        return "\n".join(lines)


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
    run, resume_from, resumed = None, None, None
    notes = []
    if resume:
        if init_from is not None:
            raise OptionError.at(None, "--init-from", "--init-from starts a new run from other weights; --resume "
                                 "continues a run from its own", "give one of them")
        run, overrides, resumed = _resume_settings(spec_path, overrides, set_vars, out, rank, locks)
        resume_from, set_vars = run.directory, run.overrides
    elif is_pretrained(init_from):  # a bad name before anything is loaded
        resolve(str(init_from).split(":", 1)[1])
    # A resumed run continues the spec as trained (its copy in the run directory), even if the
    # spec file has changed since.
    spec = run.spec if run is not None else load(spec_path, overrides=set_vars)
    config = resolve_config(spec, overrides)
    if config.data is None:
        raise OptionError.at(None, "--data", "no dataset: give --data (e.g. --data digits) or `train: {data: ...}`")
    device = pick_device(config.device, rank)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.amp]
    if config.amp == "fp16" and device.type != "cuda":
        raise OptionError.at(None, "--amp", "fp16 mixed precision needs CUDA", "use --amp bf16 on CPU, or --amp none")
    torch.manual_seed(config.seed)  # the weights' initialisation
    from netspec.compile.compiler import build_with_report

    bare_model, report = build_with_report(spec)
    if config.channels_last == "auto":
        has_conv = any(isinstance(m, torch.nn.Conv2d) for m in bare_model.modules())
        config = config.model_copy(update={"channels_last": has_conv and len(spec.input) == 3})
    data = load_data(config.data, spec.input, Path(config.data_root) if config.data_root else None)
    check_outputs(report.output, data, spec, set_vars)
    if init_from is not None and resume_from is None:  # before the run directory: a bad source leaves none
        notes.append(initialise_from(bare_model, init_from))
    run_dir = resume_from or _make_run_dir(spec, config, data, set_vars, out, rank, locks)
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
    card = ModelCard.of_spec(spec, data.classes, data.mean, data.std, config.augment.normalize)
    return Setup(spec, config, data, card, Learner(model, bare_model, optimizer),
                 Process(device, amp_dtype, rank, world), RunTarget(run_dir, spec_path, resume_from, resumed),
                 progress if rank == 0 else Progress(enabled=False), notes)


def _resume_settings(spec_path: Path, overrides: dict, set_vars: list[str], out: Path | None, rank: int,
                     locks: list[RunLock]):
    """The run to resume (locked, on rank 0; its vars and spec as trained), the settings it
    continues with (its own, with the changes --resume may make) and those changes; flags it may
    not change are refused."""
    from netspec.train.resume import settings_on_resume

    name = load(spec_path, overrides=set_vars).name if out is None else ""
    if rank == 0:
        resume_from, lock = run_to_resume(name, out)
        locks.append(lock)
    else:  # the launcher (or rank 0) holds the lock for the whole group
        resume_from = latest_run_dir(name, out)
    run = Run.open(resume_from, "--resume", set_vars)
    resumed = settings_on_resume(resume_from, run.config, overrides, set_vars)
    if not any(run.checkpoint(weights).exists() for weights in WEIGHTS):
        raise RunError.at(None, "--resume", f"{resume_from} has no checkpoint yet", "start a new run instead")
    settings = {**run.config["train"], **{key: new for key, (_, new) in resumed.changes.items()}}
    return run, settings, resumed


def resolve_config(spec: Spec, overrides: dict) -> TrainConfig:
    merged = spec.train.model_dump(exclude_unset=True) if spec.train else {}
    for key, value in overrides.items():
        if key == "augment" and isinstance(value, dict):
            merged["augment"] = {**merged.get("augment", {}), **value}
        elif value is not None:
            merged[key] = value
    try:
        return complete_config(merged)
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
        raise OptionError.at(None, "--device", "CUDA was asked for but no GPU is available", "use --device cpu or auto")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    index = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)  # resolved: AdamW's own 0.01 by default


def initialise_from(model: torch.nn.Module, source: Path | str) -> str:
    """--init-from RUN_DIR|file.safetensors: load tensors matching by name and shape;
    --init-from torchvision:NAME: torchvision's pretrained weights, matched by structure
    (netspec.compile.pretrained). Returns the note the banner shows."""
    from netspec.compile.pretrained import initialise, is_pretrained
    from netspec.compile.weights import load_partial
    from netspec.train.checkpoint import load_weights

    if is_pretrained(source):
        return initialise(model, str(source)).note()
    source = Path(source)
    path = source / "best.safetensors" if source.is_dir() else source
    if source.is_dir() and not path.exists():
        path = source / "last.safetensors"
    if not path.exists():
        raise OptionError.at(None, "--init-from",
                             f"{source}: no such checkpoint (expected a run directory or .safetensors)")
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
