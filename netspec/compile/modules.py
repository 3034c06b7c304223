"""The torch modules netspec builds beyond torch.nn's own: merges, residual, parallel, SE, stochastic
depth, layer scale, permute, layer norm and linear over the channel axis.

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
    """Hu et al. 2018: x · gate(W₂ act(W₁ mean_hw(x))) per sample and channel (the seeds' SELayer)."""

    def __init__(self, channels: int, hidden: int, act: nn.Module | None = None, gate: nn.Module | None = None):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU() if act is None else act  # the hidden activation (ReLU by default)
        self.fc2 = nn.Linear(hidden, channels)
        self.gate = nn.Sigmoid() if gate is None else gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x).flatten(1)                   # N×C
        s = self.gate(self.fc2(self.relu(self.fc1(s))))  # N×C
        return x * s[:, :, None, None]                # N×C×H×W


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation, attribute for attribute: 1×1 convs fc1/fc2 on the pooled map."""

    def __init__(self, channels: int, hidden: int, activation: nn.Module, scale_activation: nn.Module):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.activation = activation
        self.scale_activation = scale_activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def stochastic_depth(x: torch.Tensor, p: float, mode: str, training: bool) -> torch.Tensor:
    """torchvision.ops.stochastic_depth: zero whole rows (or the whole batch) with probability p,
    scale the survivors by 1/(1 − p); the identity in eval. Same random draws as torchvision's."""
    if not training or p == 0.0:
        return x
    survival = 1.0 - p
    size = [x.shape[0]] + [1] * (x.ndim - 1) if mode == "row" else [1] * x.ndim
    noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
    if survival > 0.0:
        noise.div_(survival)
    return x * noise


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth (Huang et al. 2016): active in training only."""

    def __init__(self, p: float, mode: str):
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(x, self.p, self.mode, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class LayerScale(nn.Module):
    """A learnable per-channel γ times x (ConvNeXt's CNBlock.layer_scale; same name, shape, values)."""

    def __init__(self, shape: tuple[int, ...], value: float):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.ones(*shape) * value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_scale * x


class Permute(nn.Module):
    """torchvision.ops.Permute: torch.permute(x, dims), dims counting the batch axis."""

    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis (dim 1) of N×C×…: torchvision's convnext.LayerNorm2d on N×C×H×W
    (permute to channels-last, layer_norm over C, permute back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        order = [0, *range(2, x.ndim), 1]
        back = [0, x.ndim - 1, *range(1, x.ndim - 1)]
        x = torch.nn.functional.layer_norm(x.permute(order), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(back)


class ChannelLinear(nn.Linear):
    """nn.Linear over the channel axis (dim 1) of N×C×…: a per-position linear map of the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)
