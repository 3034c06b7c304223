"""Block parameters that are layer types: `- $act` in a block's `layers:`.

A block declares `params: {act: relu}` and writes `- $act` where the layer goes; a use passes
`act: silu`, or a type with arguments, `act: {leaky_relu: 0.1}`. The expander (netspec.lang.expand)
calls `resolve` for a list item whose type key is `$name`; problems are reported where the
parameter's value was written, so a misspelt `act: siluu` points at that word.
"""

from __future__ import annotations

import re
from typing import Any

from netspec.errors import Mark, did_you_mean
from netspec.lang.source import mark_of
from netspec.layers.base import describe

_PARAM = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


def resolve(expander, key: str, args: Any, origin, scope) -> tuple[str, Any, bool] | None:
    """(kind, args, substituted) for the item `- $name` (or `- $name: args`), or None after reporting why not.

    The value's own arguments were substituted where the value was written, so they are used
    as they are; arguments written on the item itself are substituted by the caller."""
    where = f"{origin.path} {key}"
    match = _PARAM.match(key)
    if match is None:
        expander.error(origin.mark, where, f"`{key}` is not a layer type or a `$parameter`",
                       "a block parameter used as a layer type is written `- $name`")
        return None
    name = match.group(1)
    if name not in scope.values:
        inside = f"a parameter of block `{scope.chain[-1]}` or a var" if scope.chain else "a var"
        hint = did_you_mean(name, scope.values) or (
            "declare it in the block's `params:` (e.g. `act: relu`)" if scope.chain else "declare it under `vars:`")
        expander.error(origin.mark, where, f"`${name}` is not {inside}", hint)
        return None
    value, mark = scope.values[name], scope.marks.get(name, origin.mark)
    kind, own_args = _split_value(value)
    if kind is None:
        expander.error(mark, where, f"parameter `{name}` is used as a layer type (`- ${name}`) but is "
                       f"{describe(value)}", "give a layer type: `relu`, or one with arguments: `{leaky_relu: 0.1}`")
        return None
    known = expander.known_kinds()
    if kind not in known:
        hint = did_you_mean(kind, known) or "see `netspec schema` or docs/spec-language.md for the layer types"
        expander.error(mark, where, f"parameter `{name}` = `{kind}` is not a layer type (it is used as "
                       f"`- ${name}`)", hint)
        return None
    if own_args is not None and args is not None:
        expander.error(origin.mark, where, f"`${name}` is `{{{kind}: ...}}` with its own arguments; the item "
                       "gives arguments too", f"give the arguments in one place (at line {_line(mark)})")
        return None
    return (kind, own_args, True) if own_args is not None else (kind, args, False)


def _split_value(value: Any) -> tuple[str | None, Any]:
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and len(value) == 1:
        kind = next(iter(value))
        if isinstance(kind, str):
            return kind, value[kind]
    return None, None


def _line(mark: Mark | None) -> str:
    return str(mark.line) if mark else "?"


def param_marks(block, args: Any, bound: dict, origin) -> dict[str, Mark | None]:
    """Where each bound parameter's value was written: the use's argument, else the default."""
    if isinstance(args, dict):
        given = {p: mark_of(args, p, origin.mark) for p in args}
    elif args is None:
        given = {}
    else:  # the short form `- block: value` fills its one required parameter
        given = {p: origin.mark for p in bound if p not in block.param_marks or block.params.get(p) == "required"}
    return {p: given.get(p, block.param_marks.get(p, block.mark)) for p in bound}
