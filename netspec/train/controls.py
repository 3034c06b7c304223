"""Training controls: early stopping on validation accuracy (`--patience`) and gradient clipping
(`--clip-grad`).

Early stopping counts the epochs since the best validation accuracy (strictly better than every
epoch before: the epoch best.safetensors holds). With patience N the run stops once N epochs
in a row brought no better one: after epoch best + N. The best epoch is kept in the trainer
state's counters, so a resumed run continues the count, and resuming a run that stopped early
stops again at once unless a larger `--patience` (or 0: off) is given. A run resumed in the middle
of an epoch finishes that epoch before the count (with a patience changed on resume) can stop it.
"""

from __future__ import annotations

import torch

from netspec.progress import plural


def early_stop_reason(patience: int, epoch: int, best_epoch: int, best_val_acc: float) -> str | None:
    """Why the run stops after `epoch` (all of its end done), or None to go on."""
    if not patience or epoch - best_epoch < patience:
        return None
    return (f"stopped early after epoch {epoch}: no better validation accuracy for "
            f"{plural(epoch - best_epoch, 'epoch')} (best {best_val_acc * 100:.2f}% at epoch {best_epoch}; "
            f"--patience {patience})")


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float | None, scaler=None) -> None:
    """Scale the gradients of `optimizer`'s parameters down to a total L2 norm of at most `max_norm`
    (torch's clip_grad_norm_), before its step. With fp16's GradScaler the gradients are unscaled
    first (scaler.unscale_; its step then does not unscale them again)."""
    if max_norm is None:
        return
    if scaler is not None:
        scaler.unscale_(optimizer)
    parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    torch.nn.utils.clip_grad_norm_(parameters, max_norm)


def scaler_counters(scaler) -> dict | None:
    """What fp16's GradScaler carries across a resume: its loss scale and the steps since it last
    changed, as plain numbers for the trainer state's counters (None without an active scaler).
    Restarted at 65,536 instead, a resumed run would skip steps on overflow until the scale fell back."""
    state = scaler.state_dict() if scaler is not None else {}
    if not state:  # no scaler, or a disabled one
        return None
    return {"scale": float(state["scale"]), "growth_tracker": int(state["_growth_tracker"])}


def restore_scaler(scaler, record: dict | None) -> None:
    """Give `scaler` the scale and growth count a checkpoint saved (checked by checkpoint.check_counters)."""
    state = scaler.state_dict() if scaler is not None else {}
    if state and record is not None:
        scaler.load_state_dict({**state, "scale": record["scale"], "_growth_tracker": record["growth_tracker"]})
