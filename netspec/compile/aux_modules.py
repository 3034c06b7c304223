"""Auxiliary heads (`aux`, netspec.lang.ir.AuxNode): their torch module and their share of the loss.

`AuxHead` passes its input through. In training mode it also runs its head and keeps the
output (class scores) until the loss takes it; in eval mode the head does not run, so an
exported graph has no trace of it. `with_aux_losses` is the training objective torchvision's
reference training uses for GoogLeNet / Inception v3: CE(main) + Σ weight · CE(aux).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn


class AuxHead(nn.Module):
    def __init__(self, head: nn.Module, weight: float):
        super().__init__()
        self.head = head
        self.weight = float(weight)
        self.output: torch.Tensor | None = None  # the last training-mode forward's head output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.output = self.head(x) if self.training else None
        return x

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, training only"


_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def aux_heads(model: nn.Module) -> list[AuxHead]:
    """The model's aux heads in forward order (a model's modules do not change after compiling)."""
    heads = _HEADS.get(model)
    if heads is None:
        heads = _HEADS[model] = [m for m in model.modules() if isinstance(m, AuxHead)]
    return heads


def take_aux_outputs(model: nn.Module) -> list[tuple[float, torch.Tensor]]:
    """(weight, output) of each head that ran in the last forward; the heads forget them."""
    taken = []
    for head in aux_heads(model):
        if head.output is not None:
            taken.append((head.weight, head.output))
            head.output = None
    return taken


def with_aux_losses(loss: torch.Tensor, model: nn.Module, y: torch.Tensor, label_smoothing: float = 0.0):
    """`loss` (the main output's CE) + Σ weight · CE(aux output, y) over the heads that ran."""
    for weight, output in take_aux_outputs(model):
        loss = loss + weight * F.cross_entropy(output.float(), y, label_smoothing=label_smoothing)
    return loss
