"""The torch modules netspec builds beyond torch.nn's own: merges, residual, parallel, SE.

Imported only by `netspec.build` (never by `check`). Each forward is plain tensor code.
"""

from __future__ import annotations

import torch
from torch import nn


class Add(nn.Module):
    """Sum of two or more inputs (broadcasting as torch does)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = inputs[0]
        for other in inputs[1:]:
            out = out + other
        return out


class Mul(nn.Module):
    """Elementwise product of two or more inputs (a N×C×1×1 gate broadcasts over H×W)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = inputs[0]
        for other in inputs[1:]:
            out = out * other
        return out


class Concat(nn.Module):
    """Concatenation along the channel axis (dim 1, after the batch)."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat(inputs, dim=1)


class Residual(nn.Module):
    """body(x) + shortcut(x); the shortcut is nn.Identity or torchvision's downsample."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, add_in_place: bool = False):
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        # Set by the compiler when the body ends in a layer whose backward does not need its
        # output (conv, bn, linear): then the sum may overwrite it, as torchvision's `out += identity`.
        self.add_in_place = add_in_place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.add_in_place:
            out += self.shortcut(x)
            return out
        return out + self.shortcut(x)


class Parallel(nn.Module):
    """Runs every path on the same input and merges the outputs (a `Concat` or `Add` module)."""

    def __init__(self, paths: list[nn.Module], merge: nn.Module):
        super().__init__()
        self.paths = nn.ModuleList(paths)
        self.merge = merge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(*[path(x) for path in self.paths])


class SqueezeExcite(nn.Module):
    """Hu et al. 2018: x · σ(W₂ relu(W₁ mean_hw(x))) per sample and channel (the seeds' SELayer)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x).flatten(1)                   # N×C
        s = self.gate(self.fc2(self.relu(self.fc1(s))))  # N×C
        return x * s[:, :, None, None]                # N×C×H×W
