"""What `--resume` continues from: weights, trainer state and counters that agree.

`last.safetensors` names the trainer state written just before it. When it is damaged, the
only other checkpoint, `best.safetensors`, is resumable if the state file it names is still
there — it is when the best epoch was also the newest checkpoint (older states are pruned).
Otherwise resuming is impossible: the error names the damaged file and says which intact
weights remain for `eval` and `export`. Every file is checked before anything is loaded into
the model or optimizer; names read from metadata never leave the run directory.

Settings on resume: a resumed run is the same training, continued or extended. What it trains
on, the model and how it learns stay as config.json records them — a flag that would change
them is refused (exit 2, a different training is a new run: `--init-from RUN`); flags that only
change how long and where it runs are applied, printed, written into config.json and kept in
`resumes.jsonl`. Learning-rate schedules are functions of the step and the run's length, so a
new `--epochs` re-plans the schedule; the trainer states the jump this makes, if any.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from netspec.compile.weights import SpecMismatch
from netspec.errors import Diagnostic, NetspecError, OptionError
from netspec.progress import plural
from netspec.train import checkpoint as ckpt
from netspec.train.config import TrainConfig
from netspec.train.schedule import learning_rate

# Exactly the names the trainer writes (`state-<global step>.safetensors`): nothing with a
# separator, `..`, or a leading dot can name a file outside the run, or a temporary one.
STATE_NAME = re.compile(r"state-[0-9]{1,18}\.safetensors")
CHECKPOINTS = ("last.safetensors", "best.safetensors")  # newest first


@dataclass
class Resumable:
    path: Path  # the weights file
    meta: dict
    weights: dict[str, torch.Tensor]
    optimizer: dict
    rng: dict[str, torch.Tensor]
    counters: dict
    note: str | None = None

    def apply(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
        """Load it all (everything was checked; torch may still refuse a value)."""
        try:
            model.load_state_dict(self.weights)
            optimizer.load_state_dict(self.optimizer)
            torch.set_rng_state(self.rng["torch"])
            generator.set_state(self.rng["augment"])
            if torch.cuda.is_available():
                cuda = [self.rng[k] for k in sorted(self.rng) if k.startswith("cuda")]
                if len(cuda) == torch.cuda.device_count():
                    torch.cuda.set_rng_state_all(cuda)
        except (RuntimeError, ValueError, TypeError, KeyError) as e:
            raise ckpt.damaged(self.path, f"cannot be restored ({str(e).splitlines()[0][:200]})") from None


def find_resumable(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator, channels: int) -> Resumable:
    """The newest intact checkpoint with its trainer state, or an error naming the damage."""
    last, best = (run_dir / name for name in CHECKPOINTS)
    try:
        return load_checkpoint(run_dir, last, model, optimizer, generator, channels)
    except SpecMismatch:
        raise  # the run's spec changed: every checkpoint disagrees with it alike
    except NetspecError as error:
        problem = error
    fallback_problem = None
    if best.exists():
        try:
            found = load_checkpoint(run_dir, best, model, optimizer, generator, channels)
        except NetspecError as error:
            fallback_problem = error
        else:
            found.note = (f"note: {_first(problem)}\n  resuming from {best} (epoch {found.meta['epoch']}, step "
                          f"{found.meta['step']}) instead, the newest intact checkpoint")
            return found
    raise _unresumable(problem, run_dir, fallback_problem, model, channels)


def load_checkpoint(run_dir: Path, path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator, channels: int) -> Resumable:
    meta = ckpt.read_checked(path, model, channels)
    missing = [key for key in ("state", "epoch", "step") if key not in meta]
    if missing:
        raise ckpt.damaged(path, f"its metadata has no `{missing[0]}`: it cannot be resumed")
    state_path = state_file(run_dir, meta["state"], path)
    optimizer_state, rng, counters = ckpt.load_state(state_path)
    if (counters["epoch"], counters["step"]) != (meta["epoch"], meta["step"]):
        raise ckpt.damaged(state_path, f"its counters (epoch {counters['epoch']}, step {counters['step']}) do not "
                           f"match {path.name} (epoch {meta['epoch']}, step {meta['step']})")
    check_optimizer_state(optimizer_state, optimizer, state_path)
    check_rng(rng, generator, state_path)
    return Resumable(path, meta, ckpt.load_weights(path), optimizer_state, rng, counters)


def state_file(run_dir: Path, name: str, named_by: Path) -> Path:
    """The state file named in `named_by`'s metadata: a plain state file name in `run_dir`."""
    if not STATE_NAME.fullmatch(name):
        raise ckpt.damaged(named_by, f"its metadata names the trainer state {ascii(name[:80])}, which is not a "
                           "state file in the run directory (state-<step>.safetensors); not following it")
    path = run_dir / name
    if not path.exists() and not path.is_symlink():
        raise ckpt.damaged(path, f"missing: the trainer state named by {named_by.name} does not exist")
    return path


def check_optimizer_state(saved: dict, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Same parameter groups, settings of the same kinds, state tensors shaped like their parameters."""
    current = optimizer.state_dict()["param_groups"]
    groups = saved["param_groups"]
    if len(groups) != len(current) or any(g.get("params") != c["params"] for g, c in zip(groups, current)):
        raise ckpt.damaged(path, "its optimizer state is for another set of parameters")
    for group, reference in zip(groups, current):
        for key, value in reference.items():
            if key != "params" and (key not in group or not _same_kind(group[key], value)):
                raise ckpt.damaged(path, f"its optimizer setting `{key}` is missing or of the wrong type")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, values in saved["state"].items():
        if index >= len(params):
            raise ckpt.damaged(path, f"it holds optimizer state for parameter {index}; the model has {len(params)}")
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != params[index].shape:
                raise ckpt.damaged(path, f"its optimizer tensor `{ascii(name[:40])[1:-1]}` for parameter {index} "
                                   f"has shape {tuple(value.shape)}, the parameter {tuple(params[index].shape)}")


def _same_kind(saved: Any, reference: Any) -> bool:
    if isinstance(reference, bool) or reference is None:  # flags; torch versions differ on None/False
        return saved is None or isinstance(saved, bool)
    if isinstance(reference, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool)
    if isinstance(reference, (tuple, list)):
        return isinstance(saved, list) and len(saved) == len(reference)
    return type(saved) is type(reference)


def check_rng(rng: dict[str, torch.Tensor], generator: torch.Generator, path: Path) -> None:
    expected = {"torch": torch.get_rng_state(), "augment": generator.get_state()}
    for name, reference in expected.items():
        value = rng.get(name)
        if value is None or value.dtype != torch.uint8 or value.shape != reference.shape:
            raise ckpt.damaged(path, f"its random-number state `{name}` is missing or malformed")


def _first(error: NetspecError) -> str:
    d = error.diagnostics[0]
    return f"{d.where}: {d.message}" if d.where else d.message


def _unresumable(problem: NetspecError, run_dir: Path, fallback_problem: NetspecError | None, model,
                 channels) -> NetspecError:
    intact = [name for name in CHECKPOINTS if ckpt.is_intact(run_dir / name, model, channels)]
    why = f"{_first(fallback_problem)}" if fallback_problem else "there is no best.safetensors"
    hint = f"nothing in {run_dir} can be resumed ({why})"
    if intact:
        hint += (f"; {' and '.join(intact)} still load for `netspec eval`/`export --weights "
                 f"{intact[0].split('.')[0]}`; `netspec train --init-from {run_dir / intact[0]}` starts a new run "
                 "from those weights")
    d = problem.diagnostics[0]
    return type(problem)([Diagnostic(d.mark, d.where, d.message, hint)])


# -- settings on resume ------------------------------------------------------------------------------
# May change: how long the run trains, and where and how fast it runs (not what it computes,
# though another device or precision is then not bit-for-bit the uninterrupted run).
CHANGEABLE = ("epochs", "device", "amp", "channels_last", "compile", "workers", "checkpoint_every", "data_root",
              "patience", "tensorboard", "log_every")
# Fixed, with what changing them would change (any other setting: "the training").
_DATA = "the data each step trains on"
FIXED_BECAUSE = {
    "data": _DATA, "augment": _DATA, "batch_size": "the batches and the steps per epoch",
    "seed": "the data order and the augmentation",
    **{key: "how the weights are trained (config.json could no longer describe the run)"
       for key in ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule", "step_size", "gamma",
                   "warmup_epochs", "label_smoothing")},
}


@dataclass
class Resumed:
    """The run's config.json as it was, and the settings this resume changes: {key: (old, new)}."""

    record: dict
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def saved_config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.record["train"])


def settings_on_resume(run_dir: Path, record: dict, flags: dict, set_vars: list[str]) -> Resumed:
    """The changes `flags` make to the run's recorded settings; an OptionError listing every flag
    that would change the data, the model or the training itself."""
    saved = record["train"]
    refused = []
    trained_vars = record.get("overrides", [])
    if set_vars and _vars(set_vars) != _vars(trained_vars):
        shown = " ".join(f"--set {v}" for v in trained_vars) or "no --set"
        refused.append(_refusal(run_dir, "--set", f"was trained with {shown}; it would change the model"))
    changes = {}
    for key, given in flags.items():
        if _same_setting(given, saved.get(key)):
            continue
        if key in CHANGEABLE:
            changes[key] = (saved.get(key), given)
        else:
            flag = "--" + (next(iter(given)) if key == "augment" and isinstance(given, dict) else key).replace("_", "-")
            refused.append(_refusal(run_dir, flag, f"was trained with {key} {_shown(saved.get(key))}; "
                                    f"{_shown(given)} would change {FIXED_BECAUSE.get(key, 'the training')}"))
    if refused:
        last = refused[-1]  # one hint, after the last refusal
        refused[-1] = Diagnostic(last.mark, last.where, last.message,
                                 f"--resume continues the same training (it may change only {', '.join(CHANGEABLE)}); "
                                 f"to train these weights another way, start a new run with --init-from {run_dir}")
        raise OptionError(refused)
    return Resumed(record, changes)


def _refusal(run_dir: Path, flag: str, problem: str) -> Diagnostic:
    return Diagnostic(None, flag, f"{run_dir} {problem}")


def _vars(assignments: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) if "=" in a else (a, "") for a in assignments)


def _same_setting(given, saved) -> bool:
    """A flag equals the saved setting (for `augment`, every sub-key given)."""
    if isinstance(given, dict) and isinstance(saved, dict):
        return all(saved.get(k) == v for k, v in given.items())
    return given == saved


def _shown(value) -> str:
    return "(unset)" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def change_lines(resumed: Resumed) -> list[str]:
    """`epochs 40 → 60`, one per changed setting."""
    return [f"{key} {_shown(old)} → {_shown(new)}" for key, (old, new) in resumed.changes.items()]


def check_epochs(run_dir: Path, epochs: int, epoch: int, step: int) -> None:
    """`--epochs` on resume may lengthen or shorten the plan, but not end it before the run's
    position (epoch `epoch`, `step` steps into it)."""
    needed = epoch if step else epoch - 1
    if epochs < needed:
        part = f" and {plural(step, 'step')} of epoch {epoch}" if step else ""
        raise OptionError.at(None, "--epochs", f"{run_dir} has trained {plural(epoch - 1, 'epoch')}{part}; "
                           f"--epochs {epochs} would end it before that", f"give --epochs {needed} or more")


def resume_notes(resumed: Resumed, config: TrainConfig, global_step: int, steps_per_epoch: int):
    """(what to print, the learning-rate jump or None): the settings this resume changes, and the
    jump a new --epochs makes in a schedule that depends on the length."""
    notes, lines = [], change_lines(resumed)
    if lines:
        notes.append("changed on resume (config.json rewritten; resumes.jsonl keeps each change):\n"
                     + "\n".join(f"  {line}" for line in lines))
    saved = resumed.saved_config
    jump = lr_jump(saved, config, global_step, steps_per_epoch) if "epochs" in resumed.changes else None
    if jump is not None:
        source = "the last rate of" if global_step >= saved.epochs * steps_per_epoch else "from"
        notes.append(f"note: the {config.schedule} schedule is re-planned for {plural(config.epochs, 'epoch')}: "
                     f"learning rate at step {global_step + 1}: {jump[0]:.4g} → {jump[1]:.4g} ({source} the "
                     f"{saved.epochs}-epoch plan)")
    return notes, jump


def lr_jump(saved: TrainConfig, config: TrainConfig, global_step: int, steps_per_epoch: int):
    """(old, new) learning rate of the next step when a new length re-plans the schedule and
    moves it; None if it does not (`none`, `step`, `warmup` do not depend on the length). The old
    plan's rate past its end is its last one."""
    if global_step >= config.epochs * steps_per_epoch:
        return None  # no step left to take
    before = learning_rate(saved, min(global_step, saved.epochs * steps_per_epoch - 1), steps_per_epoch)
    after = learning_rate(config, global_step, steps_per_epoch)
    return None if before == after else (before, after)


def record_resume(run_dir: Path, resumed: Resumed, config: TrainConfig, at: dict[str, int],
                  lr: tuple[float, float] | None) -> None:
    """config.json with the settings resumed with; one line of resumes.jsonl: when, from where,
    what changed (and the learning-rate jump that made)."""
    from netspec.train.metrics import append_jsonl
    from netspec.train.rundir import write_config

    if resumed.changes:
        write_config(run_dir, {**resumed.record, "train": config.model_dump()})
    entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **at,
             "changes": {key: {"from": old, "to": new} for key, (old, new) in resumed.changes.items()}}
    if lr is not None:
        entry["lr"] = {"from": lr[0], "to": lr[1]}
    append_jsonl(run_dir / "resumes.jsonl", entry)
