"""What expanding a spec may cost: the budgets, and what a block use costs before it is expanded.

The expander (netspec.lang.expand) charges every layer and every expansion step against these
budgets. Charging after the fact is not enough for blocks that use blocks ten times each, so a
lower bound on a block's layers is read from its YAML first, and a use that was expanded once is
recognised by its arguments and charged again without expanding it.
"""

from __future__ import annotations

from typing import Any

from netspec.layers import REGISTRY

MAX_LAYERS = 100_000
MAX_REPEAT = 10_000
# Entries expanded (each copy of a `repeat:` and each block or macro use counts one). Layers alone
# do not bound the work: blocks that only call other blocks, or fail, add no layer. Three per layer
# at the layer limit (the shipped GoogLeNet spends 1.4, a block of one layer used everywhere 2).
MAX_EXPANSION_STEPS = 3 * MAX_LAYERS
# Layer lists inside layer lists (blocks, `residual:`, `parallel:`). Expansion and inference
# recurse once per level, a few frames each, so this keeps far below Python's recursion limit;
# the deepest shipped spec nests 4 levels.
MAX_NESTING = 64


class LeastLayers:
    """Lower bounds on the layers one use of each block expands to, cached by block name."""

    def __init__(self, blocks: dict, node_keys: tuple[str, ...]):
        self.blocks, self.node_keys = blocks, node_keys
        self.cache: dict[str, int] = {}

    def of(self, block, depth: int = 0) -> int:
        """A lower bound on the layers one use of `block` expands to, read from the YAML before
        expanding it (a parameter's effect counts as none), so blocks that use blocks ten times
        each are refused at once instead of after building 100,000 layers."""
        if block.name not in self.cache:
            self.cache[block.name] = 0  # a cycle (reported when expanded) counts as nothing
            self.cache[block.name] = self._least_in(block.layers, depth)
        return self.cache[block.name]

    def _least_in(self, items: Any, depth: int) -> int:
        if not isinstance(items, list) or depth > MAX_NESTING:
            return 0
        total = 0
        for item in items:
            types = [k for k in item if k not in self.node_keys] if isinstance(item, dict) else [item]
            kind = types[0] if len(types) == 1 and isinstance(types[0], str) else None
            args = item.get(kind) if isinstance(item, dict) else None
            repeat = item.get("repeat", 1) if isinstance(item, dict) else 1
            repeat = repeat if isinstance(repeat, int) and 1 <= repeat <= MAX_REPEAT else 1
            if kind in REGISTRY:
                cost = 1
            elif kind in self.blocks and not self.blocks[kind].broken:
                cost = self.of(self.blocks[kind], depth + 1)
            elif kind in ("residual", "parallel") and isinstance(args, dict):
                lists = [args.get("body"), args.get("shortcut")] if kind == "residual" else args.get("paths")
                cost = sum(self._least_in(x, depth + 1) for x in lists) if isinstance(lists, list) else 0
            else:
                cost = 0
            total = min(total + repeat * cost, MAX_LAYERS + 1)  # stays a small number
        return total


def use_key(name: str, bound: dict, chain: tuple, depth: int, keep: list) -> tuple:
    """A hashable key for one use of a block: small values compared by value, big ones by
    identity (expanded values are never mutated; `keep` holds them so their ids stay unique)."""
    return name, _freeze(bound, [16], keep), chain, depth


def _freeze(value: Any, budget: list[int], keep: list):
    if value is None or isinstance(value, (str, int, float, bool)):
        return type(value).__name__, value
    budget[0] -= 1
    if budget[0] < 0 or not isinstance(value, (dict, list)):
        keep.append(value)
        return "object", id(value)
    pairs = value.items() if isinstance(value, dict) else enumerate(value)
    return type(value).__name__, tuple((key, _freeze(item, budget, keep)) for key, item in pairs)
