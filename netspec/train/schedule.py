"""Learning-rate schedules as pure functions of the step: nothing to save, exact on resume.

Each schedule is, step for step, one of torch's own schedulers stepped once per optimiser step
(tests/test_schedules.py compares them to 1e-9):

- `none`: the constant peak; `step`: StepLR(step_size × steps per epoch, gamma); `cosine`:
  CosineAnnealingLR(T_max = the steps after the warm-up, eta_min 0); `onecycle`: OneCycleLR with
  its defaults (cosine warm-up over the first 30 %, then cosine annealing; momentum is not cycled,
  as with cycle_momentum=False).
- A warm-up (`warmup_epochs` > 0) is LinearLR(1/W, 1, total_iters=W − 1) over the first W steps,
  then the schedule starts from its beginning: SequentialLR(LinearLR, <schedule>, milestones=[W]).
  `warmup` is the warm-up followed by the constant peak. `onecycle` has a warm-up of its own and
  refuses `warmup_epochs` (netspec/train/config.py).
"""

from __future__ import annotations

import math

from netspec.train.config import TrainConfig

# torch.optim.lr_scheduler.OneCycleLR's defaults
ONECYCLE_WARM_FRACTION = 0.3  # pct_start
ONECYCLE_START_DIVISOR = 25.0  # div_factor: the first lr is peak / 25
ONECYCLE_FINAL_DIVISOR = 1e4  # final_div_factor: the last lr is the first / 10,000


def warmup_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Steps of linear warm-up: warmup_epochs × steps per epoch rounded to the nearest step
    (halves up, not Python's half-to-even), at least 1 if a warm-up is asked for."""
    if not config.warmup_epochs:
        return 0
    return max(1, math.floor(config.warmup_epochs * steps_per_epoch + 0.5))


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate for optimiser step `step` (0-based) of the run."""
    peak = config.lr
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return _onecycle(peak, step, total)
    warm = warmup_steps(config, steps_per_epoch)
    if step < warm:
        return peak * (step + 1) / warm  # LinearLR from peak/W, reaching the peak at step W − 1
    after = step - warm  # the schedule restarts after the warm-up, as in SequentialLR
    if config.schedule == "step":
        return peak * config.gamma ** (after // (config.step_size * steps_per_epoch))
    if config.schedule == "cosine":
        return 0.5 * peak * (1 + math.cos(math.pi * after / (total - warm)))
    return peak  # none, warmup (constant after the warm-up)


def _onecycle(peak: float, step: int, total: int) -> float:
    """OneCycleLR (two phases, cosine annealing), with its phase boundaries exactly as torch
    computes them: the peak is reached at step 0.3·total − 1, the end at step total − 1."""
    start = peak / ONECYCLE_START_DIVISOR
    end = start / ONECYCLE_FINAL_DIVISOR
    peak_step = ONECYCLE_WARM_FRACTION * total - 1
    if step <= peak_step:
        return _cosine_between(start, peak, step / peak_step)
    return _cosine_between(peak, end, (step - peak_step) / (total - 1 - peak_step))


def _cosine_between(first: float, last: float, fraction: float) -> float:
    """From `first` (fraction 0) to `last` (fraction 1) along half a cosine."""
    return last + (first - last) / 2.0 * (math.cos(math.pi * fraction) + 1)
