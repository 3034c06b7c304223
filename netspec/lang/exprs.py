"""`$name` and `${expr}` substitution, with integer arithmetic parsed from the AST.

Nothing is ever passed to `eval`: the expression is parsed with `ast.parse(mode="eval")` and
walked here, accepting only integer literals, parameter names, + − × // % (exact) /, unary
minus, parentheses and min()/max(). Anything else (attributes, calls, subscripts, strings,
lambdas, comprehensions) is an error that names the construct.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Mapping

from netspec.errors import did_you_mean
from netspec.lang.source import YMap, YSeq, mark_of

MAX_EXPR_CHARS = 200
# Every literal, name and intermediate result of `${...}` stays within ±2^62: far above any real
# size or count, and it keeps each operation on small machine-sized integers (a product of two
# bounded values is at most 2^124, checked right away), so no chain of * can build a huge int.
MAX_MAGNITUDE = 1 << 62
# Text produced by `$name` / `${expr}` interpolation. Vars that each repeat the previous one ten
# times grow 10^k-fold; the length is checked before each piece is appended, so such a chain stops
# here instead of in a MemoryError. 10,000 characters is 50× the longest text a shipped spec holds.
MAX_TEXT_CHARS = 10_000

_WHOLE_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_INTERPOLATION = re.compile(r"\$\{([^{}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$\$")


class SubstitutionError(ValueError):
    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        self.mark = None  # the innermost YAML position, filled in on the way out of substitute()
        super().__init__(message)


def substitute(value: Any, scope: Mapping[str, Any]) -> Any:
    """A copy of `value` with every `$name` / `${expr}` replaced; marks are kept."""
    if isinstance(value, str):
        return _substitute_text(value, scope)
    if isinstance(value, YMap):
        out = YMap(value.mark)
        for k, v in value.items():
            out[k] = _substitute_item(value, k, scope)
            out.key_marks[k] = value.key_marks.get(k, value.mark)
            out.value_marks[k] = value.value_marks.get(k, value.mark)
        return out
    if isinstance(value, YSeq):
        out = YSeq(value.mark)
        out.extend(_substitute_item(value, i, scope) for i in range(len(value)))
        out.item_marks = list(value.item_marks)
        return out
    if isinstance(value, dict):
        return {k: substitute(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, scope) for v in value]
    return value


def _substitute_item(container, key, scope: Mapping[str, Any]) -> Any:
    try:
        return substitute(container[key], scope)
    except SubstitutionError as e:
        if e.mark is None:
            e.mark = mark_of(container, key)
        raise


def _substitute_text(text: str, scope: Mapping[str, Any]) -> Any:
    if "$" not in text:
        return text
    whole = _WHOLE_REF.match(text)
    if whole:
        return lookup(whole.group(1), scope)
    if text.startswith("${") and text.endswith("}") and text.count("${") == 1:
        return evaluate(text[2:-1], scope)
    return _interpolate(text, scope)


def _interpolate(text: str, scope: Mapping[str, Any]) -> str:
    """`text` with each reference replaced, refusing before the result passes MAX_TEXT_CHARS."""
    pieces, length, end = [], 0, 0
    for match in _INTERPOLATION.finditer(text):
        for piece in (text[end:match.start()], _replacement(match, scope)):
            length += len(piece)
            if length > MAX_TEXT_CHARS:
                raise SubstitutionError(f"interpolated text is too large: over {MAX_TEXT_CHARS:,} characters",
                                        "a `$name` inside text repeats that var's whole text; "
                                        "vars that repeat each other grow exponentially")
            pieces.append(piece)
        end = match.end()
    pieces.append(text[end:])
    if length + len(pieces[-1]) > MAX_TEXT_CHARS:
        raise SubstitutionError(f"interpolated text is too large: over {MAX_TEXT_CHARS:,} characters")
    return "".join(pieces)


def _replacement(match: re.Match, scope: Mapping[str, Any]) -> str:
    if match.group(0) == "$$":
        return "$"
    if match.group(1) is not None:
        return str(evaluate(match.group(1), scope))
    value = lookup(match.group(2), scope)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_MAGNITUDE:
        raise SubstitutionError(f"`${match.group(2)}` is too large to write into text "
                                f"(more than {MAX_MAGNITUDE:,} in magnitude)")
    if isinstance(value, (dict, list)):
        raise SubstitutionError(f"`${match.group(2)}` is {_kind_text(value)}; only text and numbers "
                                "can be written inside text", f"use `${match.group(2)}` on its own to pass it whole")
    return str(value)


def _kind_text(value: Any) -> str:
    return "a mapping" if isinstance(value, dict) else f"a list of {len(value)}"


def lookup(name: str, scope: Mapping[str, Any]) -> Any:
    if name not in scope:
        known = ", ".join(f"`{k}`" for k in sorted(scope)) or "none"
        hint = did_you_mean(name, scope) or "declare it under `vars:` (or a block's `params:`)"
        raise SubstitutionError(f"`${name}` is not a parameter or var here (known: {known})", hint)
    return scope[name]


def evaluate(source: str, scope: Mapping[str, Any]) -> int:
    """Evaluate `${...}` integer arithmetic over the names in scope."""
    text = source.strip()
    if not text:
        raise SubstitutionError("empty `${}` expression")
    if len(text) > MAX_EXPR_CHARS:
        raise SubstitutionError(f"`${{...}}` expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise SubstitutionError(f"`${{{text}}}` is not a valid arithmetic expression") from None
    return _Evaluator(text, scope).visit(tree.body)


_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}
_CONSTRUCT_NAMES = {
    ast.Attribute: "attribute access", ast.Subscript: "indexing", ast.Call: "function calls",
    ast.Lambda: "lambdas", ast.Compare: "comparisons", ast.BoolOp: "boolean operators",
    ast.IfExp: "conditional expressions", ast.ListComp: "comprehensions", ast.GeneratorExp: "comprehensions",
    ast.Pow: "powers (**)", ast.NamedExpr: "assignment", ast.JoinedStr: "f-strings",
    ast.List: "lists", ast.Tuple: "tuples", ast.Dict: "mappings", ast.Set: "sets", ast.Starred: "unpacking",
    ast.Slice: "slices", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions", ast.Await: "await",
    ast.BitAnd: "bit operators", ast.BitOr: "bit operators", ast.BitXor: "bit operators",
    ast.LShift: "shifts", ast.RShift: "shifts", ast.MatMult: "matrix products", ast.Invert: "bit operators",
    ast.Not: "boolean operators",
}


class _Evaluator:
    def __init__(self, text: str, scope: Mapping[str, Any]):
        self.text, self.scope = text, scope

    def reject(self, node: ast.AST) -> SubstitutionError:
        what = _CONSTRUCT_NAMES.get(type(node), type(node).__name__)
        return SubstitutionError(f"`${{{self.text}}}`: {what} not allowed; only integers, names, "
                                 "+ − * / // %, parentheses and min()/max()")

    def visit(self, node: ast.AST) -> int:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, int) and not isinstance(node.value, bool):
                return self.bounded(node.value)
            raise SubstitutionError(f"`${{{self.text}}}`: only integer literals are allowed, got {node.value!r}")
        if isinstance(node, ast.Name):
            value = lookup(node.id, self.scope)
            if not isinstance(value, int) or isinstance(value, bool):
                raise SubstitutionError(f"`${{{self.text}}}`: `{node.id}` is {_short_repr(value)}, not an integer")
            return self.bounded(value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.visit(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max") \
                and node.args and not node.keywords:
            values = [self.visit(a) for a in node.args]
            return min(values) if node.func.id == "min" else max(values)
        raise self.reject(node)

    def binary(self, node: ast.BinOp) -> int:
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, (ast.FloorDiv, ast.Mod, ast.Div)) and right == 0:
            raise SubstitutionError(f"`${{{self.text}}}`: division by zero")
        if isinstance(node.op, ast.Div):
            if left % right:
                raise SubstitutionError(f"`${{{self.text}}}`: {left}/{right} is not a whole number",
                                        "use // to round down")
            return self.bounded(left // right)
        operation = _BINARY.get(type(node.op))
        if operation is None:
            raise self.reject(node.op)
        return self.bounded(operation(left, right))

    def bounded(self, value: int) -> int:
        if abs(value) > MAX_MAGNITUDE:
            raise SubstitutionError(f"`${{{self.text}}}`: value out of range (too large: "
                                    f"beyond ±{MAX_MAGNITUDE:,})")
        return value


def _short_repr(value: Any, limit: int = 60) -> str:
    """A value quoted in a message, cut short: a var may hold up to MAX_TEXT_CHARS of text."""
    if isinstance(value, (dict, list)):
        return _kind_text(value)
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"
