"""Generate docs/spec-language.md from the layer registry, the macros and the spec models.

Every layer section (fields, types, defaults, formulas, the example and the numbers
`netspec check` prints for it) is rendered from the classes themselves, and every example
is run through `netspec.check`, so the reference cannot drift from the code.
tests/test_docs.py fails when the committed file differs from this output. Regenerate with

    python -m netspec.docgen > docs/spec-language.md
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

from pydantic_core import PydanticUndefined

from netspec import symbolic as sym
from netspec.config import TrainConfig
from netspec.errors import SpecError
from netspec.expand import NodeKeys
from netspec.infer import check
from netspec.layers import REGISTRY
from netspec.layers.base import shape_text
from netspec.macros import MACROS
from netspec.render import totals
from netspec.report import Report
from netspec.source import YMap, YSeq, parse_yaml
from netspec.spec import SpecFile, loads

REGENERATE = "python -m netspec.docgen > docs/spec-language.md"

# Layer sections are grouped by the module that defines the class; a layer in a module not
# listed here still gets a section, under "Other layers".
GROUPS: list[tuple[str, tuple[str, ...], str]] = [
    ("Convolution & linear", ("netspec.layers.conv", "netspec.layers.linear"),
     "The layers with weights. Input sizes (`in_channels`, `in_features`) are always inferred."),
    ("Normalisation", ("netspec.layers.norm",),
     "Shape unchanged. Parameters are the affine scale and shift; running statistics are buffers."),
    ("Activations", ("netspec.layers.activation",),
     "Elementwise: shape unchanged, no parameters, no MACs."),
    ("Pooling", ("netspec.layers.pool",),
     "No parameters, no MACs. Window sizes, strides and paddings take an int or an `[h, w]` pair."),
    ("Shape & regularisation", ("netspec.layers.misc",),
     "No parameters, no MACs."),
    ("Merges", ("netspec.layers.merge",),
     "A merge combines two or more inputs, named in `from:` (see [Layer entries](#layer-entries)); "
     "without `from:` it is an error. No parameters, no MACs."),
]
COMPOSITE_GROUP = ("Composite layers and macros", ("netspec.layers.se",),
                   "`se` is one layer (one row in `check`). `vgg`, `residual` and `parallel` are macros: "
                   "they expand into ordinary layers, which `check` lists indented under a summary row "
                   "that totals them.")
OTHER_GROUP = "Other layers"

# Prose for the top-level keys, beyond each SpecFile field's own description.
TOP_LEVEL_NOTES = {
    "name": "letters, digits, `_`, `.` and `-`",
    "input": "`[features]` for vector input; see [Symbolic input](#symbolic-input)",
    "layers": "see [Layer entries](#layer-entries)",
    "blocks": "see [User blocks](#user-blocks)",
    "vars": "see [Parameters and expressions](#parameters-and-expressions)",
    "include": "see [`include:`](#include)",
    "train": "defaults for `netspec train`; see [`train:`](#train)",
    "description": "free text, for people",
}

# Prose for `train:` keys whose TrainConfig field has no description of its own.
TRAIN_NOTES = {
    "epochs": "passes over the training data",
    "batch_size": "samples per optimiser step",
    "optimizer": "the optimiser",
    "lr": "learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay",
}


# -- small renderers --------------------------------------------------------------------------------

def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else sym.fmt(value)


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
        if "exclusiveMinimum" in schema:
            return [f"int ≥ {schema['exclusiveMinimum'] + 1}"]
        if "minimum" in schema:
            return [f"int ≥ {schema['minimum']}"]
        return ["int"]
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
    schema = cls.model_json_schema()["properties"][field.alias or name]
    return _join(_alternatives(schema))


def default_text(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        default = field.default_factory()
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


def check_text(text: str, **load_args) -> Report:
    return check(loads(text, **load_args))


def report_rows(report: Report) -> list[str]:
    """The per-layer rows of `netspec check`, as fixed-width text."""
    table = [("#", "layer", "output", "params", "MACs", "formula")]
    for row in report.rows:
        table.append((str(row.index), "  " * row.depth + row.label,
                      shape_text(row.output) if row.output is not None else "?",
                      _count(row.params), _count(row.macs), row.formula))
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    lines = []
    for r in table:
        cells = [r[0].rjust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                 r[3].rjust(widths[3]), r[4].rjust(widths[4]), r[5]]
        lines.append("  ".join(cells).rstrip())
    return lines


def short_totals(report: Report) -> str:
    return (f"input {shape_text(report.input)} → output {shape_text(report.output)} · "
            f"params {_count(report.params)} · MACs {_count(report.macs)}")


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

def layer_groups() -> list[tuple[str, str, list[type]]]:
    """(title, intro, classes) in document order; every REGISTRY and MACROS kind appears once."""
    placed: set[str] = set()
    groups = []
    for title, modules, intro in GROUPS:
        classes = [c for c in REGISTRY.values() if c.__module__ in modules]
        placed |= {c.kind for c in classes}
        groups.append((title, intro, classes))
    composite = [c for c in REGISTRY.values() if c.__module__ in COMPOSITE_GROUP[1]]
    placed |= {c.kind for c in composite}
    other = [c for c in REGISTRY.values() if c.kind not in placed]
    if other:
        groups.append((OTHER_GROUP, "", other))
    groups.append((COMPOSITE_GROUP[0], COMPOSITE_GROUP[2], composite + list(MACROS.values())))
    return groups


def _anchor(title: str) -> str:
    """GitHub's heading anchor."""
    keep = [ch for ch in title.lower() if ch.isalnum() or ch in " -_"]
    return "".join(keep).replace(" ", "-")


def layer_section(cls) -> list[str]:
    kind = cls.kind
    is_macro = kind in MACROS and kind not in REGISTRY
    out = [f"### `{kind}`", "", cls.summary, ""]
    facts = []
    torch_equivalent = getattr(cls, "torch_equivalent", "")
    if torch_equivalent:
        facts.append(f"**PyTorch:** `{torch_equivalent}`")
    if is_macro:
        facts.append("**macro:** expands into ordinary layers")
    if getattr(cls, "arity", 1) is None:
        facts.append("**inputs:** two or more, named in `from:`")
    if facts:
        out += ["  \n".join(facts), ""]
    if cls.model_fields:
        out += field_table(cls) + [""]
    _, sentence = short_form(cls)
    out += [f"**Short form:** {sentence}", ""]
    out += [f"**Shape, params, MACs:** {cls.formula_doc}", ""]
    dims = "×".join(str(d) for d in cls.example_input)
    out += [f"**Example** (input {dims}):", ""]
    out += _yaml_block(cls.example) + [""]
    report = check_text(example_spec(cls), filename=f"{kind}_example.yaml")
    out += ["`netspec check` gives:", ""]
    out += _text_block([*report_rows(report), "", short_totals(report)]) + [""]
    return out


def reference() -> list[str]:
    out = ["## Layer reference", ""]
    groups = layer_groups()
    out += ["| group | types |", "|---|---|"]
    for title, _, classes in groups:
        links = ", ".join(f"[`{c.kind}`](#{_anchor(c.kind)})" for c in classes)
        out.append(f"| [{title}](#{_anchor(title)}) | {links} |")
    out.append("")
    for title, intro, classes in groups:
        out += [f"## {title}", ""]
        if intro:
            out += [intro, ""]
        for cls in classes:
            out += layer_section(cls)
    return out


INTRO_SPEC = """\
name: lenet5
input: [1, 28, 28]            # C, H, W — the batch dimension is implied
labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
layers:
  - conv: {out: 6, kernel: 5, padding: 2}
  - relu
  - maxpool: 2
  - conv: {out: 16, kernel: 5}
  - relu
  - maxpool: 2
  - flatten
  - linear: 120               # in_features is inferred, never written
  - relu
  - linear: 84
  - relu
  - linear: 10
train:                        # defaults for `netspec train`; CLI flags override
  data: mnist
  epochs: 10
  optimizer: adam
  lr: 0.001
"""

ENTRIES_SPEC = """\
name: entries
input: [3, 32, 32]
layers:
  - conv: {out: 16, kernel: 3, padding: 1}
    name: stem
  - relu                        # bare name
  - maxpool: 2                  # primary argument: maxpool: {kernel: 2}
  - conv:                       # mapping, in block style
      out: 16
      kernel: 3
      padding: 1
    repeat: 2                   # two convs in a row, each with its own weights
  - relu:                       # a colon lets a bare layer carry node keys
    name: branch
  - conv: {out: 16, kernel: 1, stride: 2}
    from: stem                  # reads `stem`, not the previous layer
    name: down
  - add:                        # a merge names its inputs
    from: [branch, down]
"""

BLOCKS_SPEC = """\
name: blocks_demo
input: [3, 32, 32]
vars: {width: 16}
blocks:
  cbr:                          # conv + bn + relu
    params: {out: required, kernel: 3, stride: 1}
    layers:
      - conv: {out: $out, kernel: $kernel, stride: $stride, padding: "${kernel // 2}", bias: false}
      - bn
      - relu
layers:
  - cbr: $width                 # short form: the block's one required parameter
  - cbr: {out: "${width * 2}", stride: 2}
    repeat: 2
  - global_avgpool
  - flatten
  - linear: 10
"""

SYMBOLIC_SPEC = """\
name: any_size
input: [3, H, W]
layers:
  - conv: {out: 16, kernel: 3, padding: 1}
  - relu
  - parallel:                   # downsample two ways and concatenate
      paths:
        - [maxpool: 2]
        - [conv: {out: 16, kernel: 3, stride: 2, padding: 1}]
      merge: concat
  - maxpool: 2
  - flatten
  - linear: 10
"""


def introduction() -> list[str]:
    out = [
        "# The netspec spec language",
        "",
        f"<!-- Generated by `{REGENERATE}` from the layer registry; do not edit by hand. -->",
        "",
        "A netspec spec is a YAML file describing a convolutional network as a list of layers. "
        "`netspec check SPEC` infers every shape statically — no PyTorch, no tensors — and prints, "
        "per layer, the output shape, the output-size formula with the numbers filled in, the "
        "parameters and the MACs. The same spec is then built into a `torch.nn.Module`, trained "
        "and exported to ONNX.",
        "",
        "Contents: [A spec file](#a-spec-file) · [Layer entries](#layer-entries) · "
        "[Parameters and expressions](#parameters-and-expressions) · [User blocks](#user-blocks) · "
        "[`include:`](#include) · [`train:`](#train) · [Symbolic input](#symbolic-input) · "
        "[Counting conventions](#counting-conventions) · [Layer reference](#layer-reference)",
        "",
        "## A spec file",
        "",
    ]
    out += _yaml_block(INTRO_SPEC) + [""]
    out += ["Top-level keys (nothing else is allowed):", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in SpecFile.model_fields.items():
        meaning = "; ".join(t for t in (field.description, TOP_LEVEL_NOTES.get(name)) if t)
        if name == "train":
            typ = "mapping"
        else:
            typ = type_text(SpecFile, name)
            if name in ("layers", "blocks", "vars"):
                typ = {"layers": "list of layers", "blocks": "mapping: name → block",
                       "vars": "mapping: name → value"}[name]
            if name == "input":
                typ = "list of 1–3 items"
        out.append(f"| `{name}` | {_cell(typ)} | {_cell(default_text(field))} | {_cell(meaning)} |")
    out.append("")
    return out


def entries_section() -> list[str]:
    out = [
        "## Layer entries",
        "",
        "Each item of `layers:` (and of every nested layer list) is one of:",
        "",
        "- a **bare name**: `- relu` — every argument takes its default;",
        "- the type with its **primary argument**: `- linear: 120`, `- maxpool: 2`, `- dropout: 0.5` "
        "(each layer's section names its primary argument under *Short form*);",
        "- the type with a **mapping** of arguments: `- conv: {out: 16, kernel: 3, padding: 1}` "
        "(flow style) or the same keys indented below `conv:` (block style).",
        "",
        "Arguments are checked strictly: unknown keys, wrong types (`kernel: \"3\"`, `bias: 1`) and "
        "out-of-range values are errors, all reported at once. Defaults are PyTorch's own.",
        "",
        "**Node keys** may sit beside the type key, in the same mapping:",
        "",
    ]
    out += field_table(NodeKeys, headers=("key", "type", "default", "meaning")) + [""]
    out += [
        "- A bare name is a YAML scalar and cannot carry keys: write `- relu:` (with a colon, "
        "i.e. `relu: null`) to add `name:` or `from:` to it.",
        "- Names are unique within one layer list. `from:` names an earlier layer of the *same* list, "
        "or `input` — the list's own input (the spec's input at top level; inside a block, a residual "
        "body or a parallel path, that list's input). References are checked before shapes.",
        "- A merge (`add`, `concat`, `mul`) needs `from:` with two or more names; any other layer "
        "takes exactly one input.",
        "- `repeat: N` stacks N copies, each with its own weights; `name:` then refers to the output "
        "of the last copy.",
        "- `trainable: false` freezes the node's parameters (for a block or macro: all of them); "
        "`check` counts them as non-trainable.",
        "",
        "For example:",
        "",
    ]
    spec = ENTRIES_SPEC
    out += _yaml_block(spec) + [""]
    report = check_text(spec, filename="entries.yaml")
    out += ["`netspec check` gives:", ""]
    out += _text_block([*report_rows(report), "", short_totals(report)]) + [""]
    return out


def expressions_section() -> list[str]:
    out = [
        "## Parameters and expressions",
        "",
        "`vars:` defines constants for the whole spec; a block's `params:` are its arguments. "
        "Inside `layers:`, `input:` and block bodies, strings are substituted:",
        "",
        "- `$name` as the whole value is replaced by the value itself, keeping its type: "
        "`out: $width` gives the integer 16, `kernel: $k` may give a list.",
        "- `${expr}` as the whole value evaluates integer arithmetic: `out: \"${width * 4}\"`, "
        "`padding: \"${kernel // 2}\"`.",
        "- Inside a longer string, `$name` and `${expr}` are interpolated as text; `$$` is a "
        "literal `$`.",
        "",
        "An expression may use integer literals, names of integer parameters or vars, `+`, `-`, "
        "`*`, `//` (floor division), `%`, `/` (exact division only: `${7 / 2}` is an error, with "
        "the hint to use `//`), unary minus, parentheses, and `min(…)` / `max(…)`. Everything else — "
        "`**`, comparisons, attribute access, indexing, other calls, strings, floats — is rejected "
        "with an error naming the construct. Expressions are parsed with Python's `ast` and walked "
        "by netspec; nothing is ever passed to `eval`. They are limited to 200 characters and to "
        "results of magnitude at most 2⁶².",
        "",
        "In a flow mapping `{…}` YAML reads `{` as syntax, so quote expressions there: "
        "`{out: \"${width * 2}\"}`. A plain `$name` needs no quotes.",
        "",
        "Names resolve in the innermost scope: a block's parameters, then `vars:`. A var may use "
        "the vars defined before it, and a block parameter's default may use vars. An unknown "
        "name is an error listing the names in scope.",
        "",
        "`--set name=value` (CLI) or `overrides=` (Python: `netspec.load(path, overrides=[\"width=32\"])`) "
        "replaces a var before anything is substituted; the value is parsed as YAML. Only names "
        "declared under `vars:` can be set.",
        "",
    ]
    return out


def blocks_section() -> list[str]:
    out = [
        "## User blocks",
        "",
        "`blocks:` defines reusable layer lists with parameters, called like built-in layers. "
        "Each block has:",
        "",
    ]
    from netspec.spec import BlockDef
    out += field_table(BlockDef, headers=("key", "type", "default", "meaning"),
                       notes={"description": "free text, for people"}) + [""]
    out += [
        "A parameter whose default is `required` must be given. A call takes a mapping of "
        "parameters (`- cbr: {out: 32, stride: 2}`); a block with exactly one required parameter "
        "also takes it alone (`- cbr: 32`); a block without required parameters may be written "
        "bare (`- stem`). Node keys (`name`, `from`, `repeat`, `trainable`) work on calls as on "
        "layers. A block's layers form their own list, so its `name:`s are local to each call. "
        "Block names cannot reuse a built-in layer or macro name, and a block cannot call itself, "
        "directly or through other blocks.",
        "",
    ]
    out += _yaml_block(BLOCKS_SPEC) + [""]
    report = check_text(BLOCKS_SPEC, filename="blocks_demo.yaml")
    out += ["`netspec check` gives:", ""]
    out += _text_block([*report_rows(report), "", short_totals(report)]) + [""]
    out += [
        "### `include:`",
        "",
        "`include: [path.yaml, …]` imports the `blocks:` of other files, resolved relative to the "
        "including file. An included file needs only `blocks:` (it may include others in turn); "
        "nothing else of it is imported. Include cycles, and two included files defining the same "
        "block name, are errors; a block defined in the including file itself replaces an "
        "included one of the same name. `specs/imagenet/resnet18.yaml` includes "
        "`specs/blocks/resnet.yaml` this way.",
        "",
    ]
    return out


def train_section() -> list[str]:
    out = [
        "## `train:`",
        "",
        "Optional defaults for `netspec train`; command-line flags override them.",
        "",
    ]
    out += field_table(TrainConfig, headers=("key", "type", "default", "meaning"), notes=TRAIN_NOTES) + [""]
    return out


def symbolic_section() -> list[str]:
    out = [
        "## Symbolic input",
        "",
        "Sizes in `input:` may be names: `input: [3, H, W]` (or `netspec check SPEC --input 3xHxW`). "
        "The channel count must stay a number. `check` then prints every shape, parameter count "
        "and MAC count as a formula in the names, and the conditions the sizes must meet: the "
        "smallest size every layer accepts, divisibility wherever two paths must agree, and, "
        "for a `linear` after `flatten`, which sizes share one weight shape. Use "
        "`global_avgpool` or `adaptive_avgpool` before the classifier to make a network accept "
        "every size. `ln` needs concrete sizes.",
        "",
    ]
    out += _yaml_block(SYMBOLIC_SPEC) + [""]
    report = check_text(SYMBOLIC_SPEC, filename="any_size.yaml")
    out += ["`netspec check any_size.yaml` gives:", ""]
    out += _text_block([*report_rows(report), "", *totals(report)]) + [""]
    try:
        check_text(SYMBOLIC_SPEC, filename="any_size.yaml", input="3x31x32")
        failure = "(no error)"
    except SpecError as e:
        failure = e.format()
    out += ["A size that breaks a condition fails at the layer concerned — "
            "`netspec check any_size.yaml --input 3x31x32`:", ""]
    out += _text_block(failure.splitlines()) + [""]
    return out


def conventions_section() -> list[str]:
    return [
        "## Counting conventions",
        "",
        "- **Shapes** exclude the batch dimension: `16×32×32` is C×H×W.",
        "- **params** are learnable weights and biases; `trainable: false` moves them to "
        "non-trainable. **buffers** are saved state that is not learnt (`bn`'s running mean, "
        "variance and batch count).",
        "- **MACs** count the multiply-accumulates of conv and linear layers (and of the two "
        "linears inside `se`) for one sample (batch 1). Activations, normalisation, pooling and "
        "merges count 0. **FLOPs = 2 × MACs.**",
        "- Memory figures assume float32 (4 bytes per element).",
        "",
    ]


def spec_language_markdown() -> str:
    """The full docs/spec-language.md text."""
    parts = [
        introduction(),
        entries_section(),
        expressions_section(),
        blocks_section(),
        train_section(),
        symbolic_section(),
        conventions_section(),
        reference(),
    ]
    lines = [line for part in parts for line in part]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8")
    sys.stdout.write(spec_language_markdown())
