"""Torch modules for token sequences (ViT), N×L×D tensors: see netspec/layers/tokens.py.

Parameter names follow torchvision's VisionTransformer (`class_token`, `pos_embedding`,
`in_proj_weight`, `out_proj.*`), so weights map across by role.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class Tokens(nn.Module):
    """N×C×H×W → N×(H·W)×C (torchvision: reshape(n, C, H·W).permute(0, 2, 1))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class ClassToken(nn.Module):
    """Prepends a learnable 1×1×D token (zeros, as torchvision)."""

    def __init__(self, dim: int):
        super().__init__()
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)


class PosEmbedding(nn.Module):
    """Adds a learnable 1×L×D position embedding (normal, std 0.02, as torchvision)."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, length, dim).normal_(std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_embedding


class SelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention(D, heads, batch_first=True) applied as self-attention, x → attn(x, x, x).

    The parameters and their initialisation are torch's own; the forward is the math of
    torch's `multi_head_attention_forward` (packed in-projection, softmax(q·kᵀ/√d)·v per head,
    out-projection) written with matmuls, so that torch's FlopCounterMode counts every MAC
    (torch's eval fast path and its CPU SDPA kernel count none) and ONNX export is plain.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__(dim, heads, dropout=dropout, bias=bias, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n, length, dim = x.shape
        heads = self.num_heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)              # N×L×3D
        qkv = qkv.reshape(n, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                                        # N×h×L×d each
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(dim // heads)  # N×h×L×L
        weights = F.dropout(scores.softmax(dim=-1), p=self.dropout, training=self.training)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(n, length, dim)  # N×L×D
        return self.out_proj(out)


class SelectToken(nn.Module):
    """N×L×D → N×D: the token at `index` (torchvision ViT: x[:, 0])."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]
