"""The expanded spec: a tree of nodes, each remembering the YAML it came from.

Macros and user blocks are expanded into these nodes before shape inference; nothing
here knows about shapes. `SeqNode` is a list of nodes run in order, where a node may
take its input(s) from earlier named nodes of the same list (`from:`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

from netspec.errors import Mark
from netspec.layers.base import Layer


@dataclass(frozen=True)
class Origin:
    """Where a node was written, and how expansion reached it.

    `path` reads like `layers[4] › basic[0] › body[2]`: the top-level entry, then each
    macro/block level down to the line that defines the node; `mark` is that line.
    """

    mark: Mark | None
    path: str

    def child(self, segment: str, mark: Mark | None) -> "Origin":
        return Origin(mark, f"{self.path} › {segment}" if self.path else segment)


@dataclass
class Node:
    origin: Origin
    name: str | None = None
    sources: list[str] | None = None  # `from:`; None means "the previous node"
    trainable: bool = True
    from_mark: Mark | None = None  # where `from:` was written, for reference errors
    init: Any = None  # netspec.init.Rule for a layer, or {kind: Rule} for what is inside

    @property
    def kind(self) -> str:
        raise NotImplementedError


@dataclass
class LayerNode(Node):
    layer: Layer | None = None

    @property
    def kind(self) -> str:
        return self.layer.kind


@dataclass
class SeqNode(Node):
    label: str = "layers"  # block name, `vgg`, `repeat` ... (used to name the module)
    nodes: list[Node] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.label


@dataclass
class ResidualNode(Node):
    body: SeqNode | None = None
    shortcut: Union[SeqNode, Literal["auto", "identity"]] = "auto"

    @property
    def kind(self) -> str:
        return "residual"


@dataclass
class ParallelNode(Node):
    paths: list[SeqNode] = field(default_factory=list)
    merge: Literal["concat", "add"] = "concat"

    @property
    def kind(self) -> str:
        return "parallel"


def leaves(node: Node):
    """Every LayerNode under `node`, in order."""
    if isinstance(node, LayerNode):
        yield node
    elif isinstance(node, SeqNode):
        for child in node.nodes:
            yield from leaves(child)
    elif isinstance(node, ResidualNode):
        yield from leaves(node.body)
        if isinstance(node.shortcut, SeqNode):
            yield from leaves(node.shortcut)
    elif isinstance(node, ParallelNode):
        for path in node.paths:
            yield from leaves(path)
