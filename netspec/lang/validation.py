"""Turning pydantic's ValidationError into netspec diagnostics that point at YAML lines."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from netspec.errors import MAX_ERRORS_COLLECTED, Diagnostic, Mark, did_you_mean
from netspec.lang.source import YMap, YSeq, key_mark_of, mark_of
from netspec.layers.base import describe

_COMPARISONS = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<", "less_than_equal": "≤"}
_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "bool_type": "true or false",
    "float_type": "a number", "string_type": "text", "list_type": "a list", "dict_type": "a mapping",
    "model_type": "a mapping", "tuple_type": "a list", "none_required": "null",
}


def validate(model: type[BaseModel], data: Any, where: str, fallback: Mark | None,
             diagnostics: list[Diagnostic]) -> BaseModel | None:
    """`model.model_validate(data)`, appending one diagnostic per problem on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # A value that fails every member of a Union gets one error per member, each with the
        # member's tag in its loc (`cfg.1.constrained-int`, `cfg.1.literal['M']`): drop the tags
        # and report each such group once.
        groups: dict[tuple, list[tuple[dict, int]]] = {}
        # Only so many are ever printed: translating 100,000 errors of one huge list costs seconds.
        for n, err in enumerate(exc.errors(include_url=False)[:MAX_ERRORS_COLLECTED]):
            loc, tag_at = _without_tags(data, tuple(err["loc"]))
            err = {**err, "loc": loc}
            key = loc[:tag_at] if tag_at is not None else ("", n)
            groups.setdefault(key, []).append((err, tag_at))
        for members in groups.values():
            if len(members) == 1:
                diagnostics.append(to_diagnostic(members[0][0], model, data, where, fallback))
            else:
                diagnostics.append(_union_diagnostic(members, model, data, where, fallback))
        return None


_UNION_TAG = re.compile(r"^(constrained-\w+|int|float|str|bool|none|(list|dict|tuple|set|literal)\[.*\]|"
                        r"function-[\w-]+\[.*\])$")


def _without_tags(data: Any, loc: tuple) -> tuple[tuple, int | None]:
    """`loc` without pydantic's Union-member tags, and where the first one was (None: no tag).

    A part is a tag only where the YAML has no such key, so a user's key named `int` stays."""
    node, kept, first = data, [], None
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and _UNION_TAG.match(part):
            first = len(kept) if first is None else first
            continue
        else:
            node = None
        kept.append(part)
    return tuple(kept), first


def _union_diagnostic(members: list[tuple[dict, int]], model, data, where: str, fallback) -> Diagnostic:
    """One diagnostic for a value that fits no member of a Union."""
    # An error below the union field (`from[1]` for `from: [a, -1]`) means the value had that
    # member's shape: it is the one that explains the mistake.
    deeper = [err for err, tag_at in members if len(err["loc"]) > tag_at]
    if deeper:
        return to_diagnostic(deeper[0], model, data, where, fallback)
    wanted, hint = [], None
    for err, _ in members:
        message, member_hint = explain(err, model, data, tuple(err["loc"]))
        wanted.append(re.sub(r"^`[^`]*` (must be |expected )?", "", message).split(", got ")[0])
        hint = hint or member_hint
    loc = tuple(members[0][0]["loc"])
    return Diagnostic(locate(data, loc, fallback), where,
                      f"`{field_name(loc)}` must be {' or '.join(wanted)}, "
                      f"got {describe(members[0][0].get('input'))}", hint)


def _is_layer_args(model: type[BaseModel]) -> bool:
    """Layer and macro fields are "arguments"; the spec file's own structure has "keys"."""
    from netspec.lang.macros import Macro
    from netspec.layers.base import Layer

    return issubclass(model, (Layer, Macro))


def _models_in(annotation) -> list:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _owner(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The model whose fields the last part of `loc` is checked against (`train.epoch` → TrainConfig)."""
    current = model
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue  # a dict key (`blocks.<name>`) or list index: same item model
        nested = _models_in(field.annotation)
        if len(nested) != 1:
            return current
        current = nested[0]
    return current


def to_diagnostic(err: dict, model: type[BaseModel], data: Any, where: str, fallback: Mark | None) -> Diagnostic:
    loc = tuple(err["loc"])
    mark = locate(data, loc, fallback, at_key=err["type"] == "extra_forbidden")
    message, hint = explain(err, model, data, loc)
    return Diagnostic(mark, where, message, hint)


def locate(data: Any, loc: tuple, fallback: Mark | None, at_key: bool = False) -> Mark | None:
    """The mark of the deepest container/value along `loc` that exists in the YAML."""
    node, mark = data, getattr(data, "mark", None) or fallback
    for i, part in enumerate(loc):
        is_last = i == len(loc) - 1
        if isinstance(node, YMap) and part in node:
            mark = key_mark_of(node, part) if (is_last and at_key) else mark_of(node, part)
            node = node[part]
        elif isinstance(node, YSeq) and isinstance(part, int) and 0 <= part < len(node):
            mark = mark_of(node, part)
            node = node[part]
        elif isinstance(node, dict) and part in node:
            node = node[part]
            mark = getattr(node, "mark", mark)
        else:
            break
    return mark


def field_name(loc: tuple) -> str:
    text = ""
    for p in loc:
        if isinstance(p, str) and p.startswith(("function-", "literal[")):
            continue
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


def explain(err: dict, model: type[BaseModel], data: Any, loc: tuple) -> tuple[str, str | None]:
    kind, field, value = err["type"], field_name(loc), err.get("input")
    ctx = err.get("ctx") or {}
    known = [f.alias or name for name, f in model.model_fields.items()]
    if kind == "extra_forbidden":
        owner = _owner(model, loc)
        known = [f.alias or name for name, f in owner.model_fields.items()]
        noun = "argument" if _is_layer_args(owner) else "key"
        hint = did_you_mean(loc[-1], known) or (f"valid {noun}s: {', '.join(known)}" if known
                                                else "it takes no arguments")
        return f"unknown {noun} `{field}`", hint
    if kind == "invalid_key":  # a non-text key such as `5:` (pydantic: "Keys should be strings")
        return f"unknown argument `{loc[-1] if loc else value}`", \
            f"valid arguments: {', '.join(known)}" if known else None
    if kind == "missing":
        noun = "argument" if _is_layer_args(_owner(model, loc)) else "key"
        return f"missing required {noun} `{field}`", None
    if kind in _TYPE_WORDS:
        return f"`{field}` must be {_TYPE_WORDS[kind]}, got {describe(value)}", None
    if kind in _COMPARISONS:
        bound = next(iter(ctx.values()))
        return f"`{field}` must be {_COMPARISONS[kind]} {bound}, got {value}", None
    if kind == "literal_error":
        return f"`{field}` must be one of {ctx.get('expected')}, got {describe(value)}", \
            did_you_mean(value, _literal_options(ctx.get("expected", ""))) if isinstance(value, str) else None
    if kind in ("too_short", "too_long"):
        return f"`{field}` {err['msg'][0].lower()}{err['msg'][1:]}", None
    if kind == "string_pattern_mismatch":
        return f"`{field}` must match {ctx.get('pattern')}, got {describe(value)}", None
    message = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return f"`{field}`: {message}" if field else message, None


def _literal_options(expected: str) -> list[str]:
    return [part.strip().strip("'") for part in expected.replace(" or ", ",").split(",") if part.strip()]
