"""Learning-rate schedules as pure functions of the step: nothing to save, exact on resume."""

from __future__ import annotations

import math

from netspec.config import TrainConfig

ONECYCLE_WARM_FRACTION = 0.3  # torch OneCycleLR's default pct_start
ONECYCLE_START_DIVISOR = 25.0  # its div_factor
ONECYCLE_FINAL_DIVISOR = 1e4  # its final_div_factor


def learning_rate(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate for optimiser step `step` (0-based) of the run."""
    epoch = step / steps_per_epoch  # fractional epochs done
    total = float(config.epochs)
    peak = config.lr
    if config.schedule == "onecycle":
        return _onecycle(peak, epoch, total)
    warm = min(config.warmup_epochs, total)
    if warm and epoch < warm:
        return peak * (step + 1) / (warm * steps_per_epoch)
    if config.schedule == "step":
        return peak * config.gamma ** math.floor(epoch / config.step_size)
    if config.schedule == "cosine":
        span = max(total - warm, 1e-9)
        return 0.5 * peak * (1 + math.cos(math.pi * min((epoch - warm) / span, 1.0)))
    return peak  # none, warmup (constant after the warm-up)


def _onecycle(peak: float, epoch: float, total: float) -> float:
    start = peak / ONECYCLE_START_DIVISOR
    rise = ONECYCLE_WARM_FRACTION * total
    if epoch < rise:
        return start + (peak - start) * epoch / rise
    end = start / ONECYCLE_FINAL_DIVISOR
    progress = min((epoch - rise) / max(total - rise, 1e-9), 1.0)
    return end + 0.5 * (peak - end) * (1 + math.cos(math.pi * progress))
