"""Turning pydantic's ValidationError into netspec diagnostics that point at YAML lines."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from netspec.errors import Diagnostic, Mark, did_you_mean
from netspec.layers.base import describe
from netspec.source import YMap, YSeq, key_mark_of, mark_of

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
        for err in exc.errors(include_url=False):
            diagnostics.append(to_diagnostic(err, model, data, where, fallback))
        return None


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
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith(("function-", "literal["))))


def explain(err: dict, model: type[BaseModel], data: Any, loc: tuple) -> tuple[str, str | None]:
    kind, field, value = err["type"], field_name(loc), err.get("input")
    ctx = err.get("ctx") or {}
    known = [f.alias or name for name, f in model.model_fields.items()]
    if kind == "extra_forbidden":
        hint = did_you_mean(loc[-1], known) if len(loc) == 1 else None
        if hint is None and len(loc) == 1:
            hint = f"valid arguments: {', '.join(known)}" if known else "it takes no arguments"
        return f"unknown argument `{field}`", hint
    if kind == "missing":
        return f"missing required argument `{field}`", None
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
    return f"`{field}` {message}" if field else message, None


def _literal_options(expected: str) -> list[str]:
    return [part.strip().strip("'") for part in expected.replace(" or ", ",").split(",") if part.strip()]
