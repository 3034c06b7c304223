"""Everything `netspec train` settles before the first step: config, run directory, device,
data, model, optimizer — each problem reported as a one-line user error."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from netspec import __version__
from netspec.config import TrainConfig, complete_config
from netspec.data import Data, DataError, load_data
from netspec.errors import Diagnostic, SpecError
from netspec.progress import Progress, plural
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
    resumed: Any = None  # netspec.resume.Resumed: the run's recorded settings and what --resume changes

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def banner(self, steps: int) -> str:
        c = self.config
        processes = f" ×{plural(self.world, 'process')}" if self.world > 1 else ""
        lines = [f"training {self.spec.name} on {self.data.name} ({len(self.data.train):,} train / "
                 f"{len(self.data.val):,} val, {plural(len(self.data.classes), 'class')}) → {self.run_dir}",
                 f"  device {self.device}{processes}, "
                 f"{plural(c.epochs, 'epoch')} × {plural(steps, 'step')} of {c.batch_size}, {c.optimizer}{' nesterov' if c.nesterov else ''} "
                 f"lr {c.lr:g} weight decay {c.weight_decay:g}, "
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
    resume_from, resumed = None, None
    notes = []
    if resume:
        if init_from is not None:
            raise SpecError.at(None, "--init-from", "--init-from starts a new run from other weights; --resume "
                               "continues a run from its own", "give one of them")
        resume_from, set_vars, overrides, resumed = _resume_settings(spec_path, overrides, set_vars, out, rank, locks)
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
    check_outputs(report.output, data, spec, set_vars)
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
                 resume_from, progress if rank == 0 else Progress(enabled=False), rank, world, notes,
                 resumed=resumed)


def _resume_settings(spec_path: Path, overrides: dict, set_vars: list[str], out: Path | None, rank: int,
                     locks: list[RunLock]):
    """The run to resume (locked, on rank 0), its vars, the settings it continues with (its own,
    with the changes --resume may make) and those changes; flags it may not change are refused."""
    from netspec.resume import settings_on_resume

    name = load(spec_path, overrides=set_vars).name if out is None else ""
    if rank == 0:
        resume_from, lock = run_to_resume(name, out)
        locks.append(lock)
    else:  # the launcher (or rank 0) holds the lock for the whole group
        resume_from = latest_run_dir(name, out)
    saved = read_config(resume_from)
    resumed = settings_on_resume(resume_from, saved, overrides, set_vars)
    if not any((resume_from / checkpoint).exists() for checkpoint in ("last.safetensors", "best.safetensors")):
        raise SpecError.at(None, "--resume", f"{resume_from} has no checkpoint yet", "start a new run instead")
    settings = {**saved["train"], **{key: new for key, (_, new) in resumed.changes.items()}}
    return resume_from, saved.get("overrides", set_vars), settings, resumed


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
        raise SpecError.at(None, "--device", "CUDA was asked for but no GPU is available", "use --device cpu or auto")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    index = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


# -- outputs ↔ classes: the one place that decides which output scores which class ---------------
# Output i of the model is class i of the data (its `classes` order: the IDX/CIFAR label order, or
# the sorted folder names). Training, validation, eval, the checkpoints' `labels`, config.json and
# the exported ONNX metadata all rely on that map, so every mismatch is refused here, before any
# step: a model with extra outputs would train them as classes that never occur and could
# predict them; a spec's `labels:` in another order would name every score wrongly once exported.
MAX_VAR_TRIES = 16  # vars re-checked when looking for the `--set` that fixes the score count
SHOWN_NAMES = 10


def check_outputs(output: tuple, data: Data, spec: Spec, set_vars: list[str] | tuple = ()) -> list[str]:
    """The class names of the model's outputs, in output order, for training `spec` on `data`.
    Raises SpecError unless there is exactly one score per class and the spec's `labels:`, if
    given, are the data's class names in the data's order."""
    scores = _score_count(output, spec.name)
    classes = len(data.classes)
    if scores != classes:
        more = "more" if scores > classes else "fewer"
        raise DataError(f"{spec.name} outputs {scores} scores but {data.name} has {classes} classes "
                        f"({more} outputs than classes: training needs exactly one output per class)",
                        _score_fix(spec, list(set_vars), scores, classes))
    if spec.labels is not None and list(spec.labels) != list(data.classes):
        fix = (f"write `labels: {_names(data.classes, limit=None)}` or leave `labels:` out"
               if len(data.classes) <= 2 * SHOWN_NAMES else "leave `labels:` out (the data's names are used)")
        raise SpecError([Diagnostic(_labels_mark(spec), "labels", _labels_problem(spec.labels, data.classes, data.name),
                                    f"the data decides which output is which class: {fix}")])
    return list(data.classes)


def check_run_outputs(output: tuple, data: Data, run_dir: Path, trained: list[str] | None,
                      trained_on: str) -> list[str]:
    """The class names of a trained run's outputs when evaluated on `data`: the classes it was
    trained on (`trained`, in output order; None when its weights do not say), which `data` must
    have, in the same order."""
    scores = _score_count(output, str(run_dir))
    names = "" if trained is None else " " + _names(trained)
    hint = f"evaluate on data with the {scores} classes {run_dir} was trained on, in the same order"
    if len(data.classes) != scores:
        raise DataError(f"{run_dir} gives {scores} scores, one per class of {trained_on}{names}, but "
                        f"{data.name} has {len(data.classes)} classes {_names(data.classes)}", hint)
    if trained is not None and list(data.classes) != list(trained):
        raise DataError(f"the classes of {data.name} {_names(data.classes)} are not the classes {run_dir} was "
                        f"trained on{names}: {_first_difference(trained, data.classes)}", hint)
    return list(data.classes)


def check_spec_labels(spec: Spec, output: tuple) -> list[str] | None:
    """The spec's `labels:` as the names of an untrained model's outputs (export of a spec): one
    per score, or a SpecError."""
    if spec.labels is None:
        return None
    if list(output) != [len(spec.labels)]:
        raise SpecError([Diagnostic(_labels_mark(spec), "labels", f"the spec names {len(spec.labels)} classes "
                                    f"{_names(spec.labels)} but {spec.name} outputs {'×'.join(map(str, output))} "
                                    "scores", "write one label per output score, in output order")])
    return list(spec.labels)


def _score_count(output: tuple, name: str) -> int:
    if len(output) != 1:
        raise DataError(f"{name} outputs {'×'.join(map(str, output))}; training needs one score per class",
                        "end the spec with `flatten` and `linear: <classes>`")
    return output[0]


def _score_fix(spec: Spec, set_vars: list[str], scores: int, classes: int) -> str:
    """How to get `classes` scores: the `--set` that does it (re-checked statically), else the
    last linear layer to edit."""
    var = next(_vars_giving(spec, set_vars, scores, classes), None)
    if var is not None:
        return f"give --set {var}={classes}"
    last = _last_linear(spec.root)
    where = f" (at {last.origin.mark})" if last is not None and last.origin.mark else ""
    return f"make the last linear layer{where} `linear: {classes}`"


def _vars_giving(spec: Spec, set_vars: list[str], scores: int, classes: int):
    """The spec's vars whose value is the current score count and which, set to `classes`, give
    exactly `classes` scores."""
    from netspec.infer import check
    from netspec.spec import loads

    candidates = [n for n, v in spec.vars.items() if type(v) is int and v == scores]
    candidates.sort(key=lambda n: "class" not in n.lower())  # `classes`, `num_classes` first
    filename = spec.input_mark.file if spec.input_mark else spec.name
    for name in candidates[:MAX_VAR_TRIES]:
        try:
            changed = loads(spec.text, filename, [*set_vars, f"{name}={classes}"],
                            base_dir=spec.path.parent if spec.path else None)
            if tuple(check(changed).output) == (classes,):
                yield name
        except SpecError:
            continue


def _last_linear(node):
    """The last `linear` layer of a spec tree, in execution order (None if there is none)."""
    from netspec.graph import LayerNode

    if isinstance(node, LayerNode):
        return node if node.kind == "linear" else None
    children = [c for part in ("nodes", "paths") for c in getattr(node, part, []) or []]
    body = getattr(node, "body", None)
    for child in reversed(children + ([body] if body is not None else [])):
        found = _last_linear(child)
        if found is not None:
            return found
    return None


def _labels_mark(spec: Spec):
    """Where `labels:` is written (the spec is re-read only for this error)."""
    from netspec.source import parse_yaml

    filename = spec.input_mark.file if spec.input_mark else spec.name
    try:
        return parse_yaml(spec.text, filename).value_marks.get("labels")
    except (SpecError, AttributeError):
        return None


def _labels_problem(labels: list[str], classes: list[str], data_name: str) -> str:
    if len(labels) != len(classes):
        return (f"the spec names {len(labels)} classes {_names(labels)}, {data_name} has {len(classes)} "
                f"{_names(classes)}")
    order = " (the same names in another order)" if sorted(labels) == sorted(classes) else ""
    return (f"the spec's labels {_names(labels)} are not the classes of {data_name} {_names(classes)}{order}: "
            f"{_first_difference(classes, labels, 'the spec says')}")


def _first_difference(expected: list[str], given: list[str], given_is: str = "the data has") -> str:
    i = next(i for i, (a, b) in enumerate(zip(expected, given)) if a != b)
    return f"output {i} is trained as {json.dumps(expected[i])}, {given_is} {json.dumps(given[i])}"


def _names(names: list[str], limit: int | None = SHOWN_NAMES) -> str:
    """A list of class names as JSON, the first `limit` of a long one."""
    if limit is None or len(names) <= limit:
        return json.dumps(list(names), ensure_ascii=False)
    return json.dumps(list(names[:limit]), ensure_ascii=False)[:-1] + f", … {len(names)} in all]"


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)  # resolved: AdamW's own 0.01 by default


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
