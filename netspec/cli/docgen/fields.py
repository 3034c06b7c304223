"""Rendering pieces of the reference: field tables, readable types, examples run through the
`netspec check` command line."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from netspec.lang.source import YMap, YSeq, parse_yaml

REGENERATE = "python -m netspec.cli.docgen > docs/spec-language.md"

def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _scalar(value: Any) -> str:
    """A Python value as it is written in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if value == "":
        return '""'
    if isinstance(value, float):
        text = repr(value)
        return text.replace("e-0", "e-").replace("e+0", "e+")
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return _scalar(value[0])
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return str(value)


def _flow(value: Any) -> str | None:
    """A short YAML flow rendering of a parsed value, or None when it would not be short."""
    if isinstance(value, dict):
        return None
    if isinstance(value, list):
        parts = [_flow(v) for v in value]
        if any(p is None for p in parts):
            return None
        text = "[" + ", ".join(parts) + "]"
    else:
        text = _scalar(value)
    return text if len(text) <= 40 else None


def _alternatives(schema: dict) -> list[str]:
    """A field's JSON schema as a list of readable alternatives ('int ≥ 1', '[h, w]', '`same`')."""
    if "anyOf" in schema:
        out: list[str] = []
        for sub in schema["anyOf"]:
            if sub.get("type") == "null":
                continue
            out += _alternatives(sub)
        return out
    if "enum" in schema:
        return [f"`{v}`" for v in schema["enum"]]
    if "const" in schema:
        return [f"`{schema['const']}`"]
    kind = schema.get("type")
    if kind == "integer":
        low = schema["exclusiveMinimum"] + 1 if "exclusiveMinimum" in schema else schema.get("minimum")
        high = schema["exclusiveMaximum"] - 1 if "exclusiveMaximum" in schema else schema.get("maximum")
        if low is not None and high is not None:
            return [f"int in [{low:,}, {high:,}]"]
        if low is not None:
            return [f"int ≥ {low}"]
        return ["int" if high is None else f"int ≤ {high:,}"]
    if kind == "number":
        low = ("(", schema["exclusiveMinimum"]) if "exclusiveMinimum" in schema else \
            ("[", schema["minimum"]) if "minimum" in schema else None
        high = (")", schema["exclusiveMaximum"]) if "exclusiveMaximum" in schema else \
            ("]", schema["maximum"]) if "maximum" in schema else None
        if low and high:
            return [f"number in {low[0]}{_scalar(low[1])}, {_scalar(high[1])}{high[0]}"]
        if low:
            return [f"number {'>' if low[0] == '(' else '≥'} {_scalar(low[1])}"]
        return ["number"]
    if kind == "boolean":
        return ["bool"]
    if kind == "string":
        return ["text"]
    if kind == "object":
        return ["mapping"]
    if kind == "array":
        items = schema.get("items", {})
        if items == {"x-netspec": "LayerEntry"}:
            what = "layers"
        elif items.get("items") == {"x-netspec": "LayerEntry"}:
            what = "layer lists"
        else:
            if schema.get("minItems") == schema.get("maxItems") == 2 and items.get("type") == "integer":
                return ["[h, w]"]
            inner = _alternatives(items)
            what = _join(inner) if len(inner) == 1 else f"({_join(inner)})"
        least = schema.get("minItems")
        if least == 1:
            return [f"non-empty list of {what}"]
        if least:
            return [f"list of ≥ {least} {what}"]
        return [f"list of {what}"]
    return ["any"]


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def type_text(cls, name: str) -> str:
    """The readable type of field `name` of a pydantic model, e.g. 'int ≥ 1 or [h, w]'."""
    field = cls.model_fields[name]
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
        return "mapping"
    schema = cls.model_json_schema()["properties"][field.alias or name]
    return _join(_alternatives(schema))


def default_text(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        default = field.default_factory()
        if isinstance(default, BaseModel):
            return "see below"
        return "`" + (_scalar(default) if not isinstance(default, dict) else "{}") + "`"
    if field.default is None or field.default is PydanticUndefined:
        return "—"
    return f"`{_scalar(field.default)}`"


def field_rows(cls, notes: dict[str, str] | None = None) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in cls.model_fields.items():
        key = field.alias or name
        description = field.description or (notes or {}).get(key, "")
        rows.append((f"`{key}`", type_text(cls, name), default_text(field), description))
    return rows


def field_table(cls, headers=("field", "type", "default", "description"), notes=None) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in field_rows(cls, notes):
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines


def _yaml_block(text: str) -> list[str]:
    return ["```yaml", *text.rstrip("\n").splitlines(), "```"]


def _text_block(lines: Iterable[str]) -> list[str]:
    return ["```text", *lines, "```"]


# -- running examples -------------------------------------------------------------------------------

def example_spec(cls) -> str:
    """The full spec text `check` runs for a class's `example`."""
    body = "\n".join(f"  {line}" if line else "" for line in cls.example.rstrip("\n").splitlines())
    dims = ", ".join(str(d) for d in cls.example_input)
    return f"name: {cls.kind}_example\ninput: [{dims}]\nlayers:\n{body}\n"


def cli_check_lines(spec_text: str, filename: str, *options: str) -> list[str]:
    """What `netspec check FILENAME OPTIONS...` prints for a file holding `spec_text`: the real
    command line (netspec.cli.app.main), run in a scratch folder so that the file name it prints is the one
    the docs show; stdout, then stderr, as a terminal shows them. The docs show this text, so a
    change of the CLI's layout changes the docs (and tests/test_docs.py re-runs every command)."""
    from netspec.cli.app import main

    with tempfile.TemporaryDirectory(prefix="netspec-docgen-") as folder:
        (Path(folder) / filename).write_text(spec_text, encoding="utf-8")
        printed = io.StringIO()
        with contextlib.chdir(folder), contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            main(["check", filename, *options])
    return printed.getvalue().rstrip("\n").splitlines()


def check_block(spec_text: str, filename: str, *options: str) -> list[str]:
    """The docs' "`netspec check FILE` gives:" paragraph and the command's real output."""
    command = " ".join(["netspec check", filename, *options])
    return [f"`{command}` gives:", "", *_text_block(cli_check_lines(spec_text, filename, *options)), ""]


def _example_entries(cls) -> list:
    root = parse_yaml(cls.example, "<example>")
    return list(root) if isinstance(root, YSeq) else []


def short_form(cls) -> tuple[str | None, str]:
    """(`- kind: value` fragment or None, the sentence describing the short form)."""
    kind, primary = cls.kind, cls.primary
    required = [n for n, f in cls.model_fields.items() if f.is_required()]
    if getattr(cls, "arity", 1) is None and not cls.model_fields:
        return None, f"none; no arguments: write `- {kind}:` with `from: [a, b, …]` beside it."
    if not cls.model_fields:
        return None, f"none; no arguments: write `- {kind}`."
    bare = "" if required else f" With every default, write just `- {kind}`."
    if primary is None:
        return None, f"none; give a mapping, `{kind}: {{{next(iter(cls.model_fields))}: …}}`.{bare}"
    others = [n for n in required if n != primary]
    if others:
        return None, (f"`{kind}: VALUE` would set `{primary}` alone, but {_join([f'`{n}`' for n in others])} "
                      f"{'is' if len(others) == 1 else 'are'} required too, so {kind} is written as a mapping.")
    value = None
    for entry in _example_entries(cls):
        if isinstance(entry, YMap) and kind in entry:
            args = entry[kind]
            if args is not None and not isinstance(args, dict):
                value = args
            elif isinstance(args, dict) and primary in args:
                value = args[primary]
            if value is not None:
                break
    if value is None:
        value = _sample(cls.model_json_schema()["properties"][primary], cls.model_fields[primary].default)
    flow = _flow(value) if value is not None else None
    if flow is None:
        if isinstance(value, list):
            return None, f"`{kind}: [ … ]` is `{kind}: {{{primary}: [ … ]}}`.{bare}"
        return None, f"`{kind}: VALUE` sets `{primary}`.{bare}"
    fragment = f"- {kind}: {flow}"
    return fragment, f"`{kind}: {flow}` is `{kind}: {{{primary}: {flow}}}`.{bare}"


def _sample(schema: dict, default: Any) -> Any:
    """A value other than the default for a choice field, to show its short form; else None."""
    choices = schema.get("enum", [])
    others = [c for c in choices if c != default]
    return others[0] if others else None


# -- sections ---------------------------------------------------------------------------------------

