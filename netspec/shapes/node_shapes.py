"""What shape inference found for one node of the IR (`Report.shapes[node]`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netspec.layers.base import Shape


@dataclass(eq=False)
class NodeShapes:
    """One node's inferred shapes; the compiler builds the node's module from these."""

    inputs: list[Shape]
    output: Shape
    trainable: bool  # the node's own `trainable:` and every container's above it
    sources: list[int] = field(default_factory=list)  # in a list: earlier item indices, -1 = the list's input
    shortcut: Any = None  # residual: the shortcut list as inferred (an auto projection included); None = identity
    merge: Any = None  # parallel: the merge Layer instance
