"""Torch modules for netspec.layers.channels: `split` and `channel_shuffle`."""

from __future__ import annotations

import torch
from torch import nn


class ChannelSplit(nn.Module):
    """The channels as `chunks` equal parts along a new axis 1: out[:, i] is `x.chunk(chunks, 1)[i]`
    (a view, no copy); the compiled graph reads part i as `out[:, i]`."""

    def __init__(self, chunks: int):
        super().__init__()
        self.chunks = chunks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.chunks, x.shape[1] // self.chunks))

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}"


class ChannelShuffle(nn.Module):
    """torchvision.models.shufflenetv2.channel_shuffle, step for step."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batchsize, num_channels, height, width = x.size()
        channels_per_group = num_channels // self.groups
        x = x.view(batchsize, self.groups, channels_per_group, height, width)
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(batchsize, num_channels, height, width)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
