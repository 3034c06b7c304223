"""`netspec.load`: read a spec file, validate it and expand it into a node tree."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints
from pydantic_core import PydanticCustomError
from typing_extensions import Annotated

from netspec.errors import Diagnostic, Mark, SpecError, did_you_mean
from netspec.lang.expand import IDENTIFIER, NODE_KEYS, Block, Expander, Identifier, Scope
from netspec.lang.exprs import SubstitutionError, substitute
from netspec.lang.init import parse_kind_rules, weighted_kinds
from netspec.lang.ir import INPUT_NAME, Node, Origin, Spec, parse_reference
from netspec.lang.macros import MACROS, LayerList
from netspec.lang.source import MAX_INT_LITERAL, YMap, key_mark_of, mark_of, parse_yaml
from netspec.lang.validation import validate
from netspec.layers import REGISTRY
from netspec.layers.base import describe
from netspec.reading import IncludeSources, UnreadableSource, include_root_for, read_source, shorten_name
from netspec.shapes.symbolic import Expr
from netspec.train.config import TrainConfig

__all__ = ["INPUT_NAME", "Spec", "SpecFile", "BlockDef", "load", "loads", "parse_input_text", "check_references"]


def _input_dims(value):
    if not isinstance(value, list) or len(value) not in (1, 2, 3):
        raise PydanticCustomError("input", "expected [C, H, W] (or [features]), got {got}", {"got": describe(value)})
    return value


SpecInit = Annotated[Any, PlainValidator(lambda v: parse_kind_rules(v, weighted_kinds()),
                                         json_schema_input_type=dict[str, Any])]


class BlockDef(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    params: dict[Identifier, Any] = Field(default_factory=dict, description=(
        "name: default, or `required`; a layer type (`act: relu`, or with arguments `act: {leaky_relu: 0.1}`) "
        "can be passed and placed as a layer with `- $act`"))
    layers: LayerList = Field(description="the block's layers; `$param` / `${expr}` substitute parameters, "
                              "`- $param` puts the layer type a parameter names")
    description: str = ""


class SpecFile(BaseModel):
    """The top level of a spec file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        description="the model's name (used for run directories and exported files)")
    description: str = ""
    input: Annotated[list, PlainValidator(_input_dims, json_schema_input_type=list[int | str])] = Field(
        description="[C, H, W] without the batch; H and W may be names (symbolic sizes)")
    layers: LayerList = Field(description="the network, in order")
    blocks: dict[Identifier, BlockDef] = Field(default_factory=dict, description="user macros")
    vars: dict[Identifier, Any] = Field(default_factory=dict, description="constants, overridable with --set")
    include: list[str] = Field(default_factory=list, description="files whose `blocks:` are imported")
    train: Optional[TrainConfig] = None
    labels: Optional[list[str]] = Field(None, description="class names, in output order")
    init: Optional[SpecInit] = Field(None, description="initialisation by layer type: {conv: kaiming_normal, ...}")


def load(path: str | Path, overrides: dict[str, Any] | list[str] | None = None, input: str | None = None,
         *, include_root: str | Path | None = None) -> Spec:
    """Parse and validate a spec file; raise `SpecError` listing every problem found.

    `overrides` sets `vars:` (a dict, or `["name=value", ...]` as given to `--set`);
    `input` replaces the spec's input shape (`"3x64x64"`, or `"3xHxW"` for symbolic sizes);
    `include_root` is the folder `include:` may read from (default: see `find_include_root`).
    """
    path = Path(path)
    display = _display_path(path)
    text = read_source(path, display)
    root = parse_yaml(text, shorten_name(display))
    sources = IncludeSources(include_root_for(include_root, path.parent))
    universal_newlines = text.replace("\r\n", "\n").replace("\r", "\n")  # as Path.read_text gave it
    return _load_tree(root, universal_newlines, display, path, overrides, input, sources)


def loads(text: str, filename: str = "<string>", overrides=None, input: str | None = None,
          base_dir: Path | None = None, *, include_root: str | Path | None = None) -> Spec:
    """Like `load`, from text (includes resolve against `base_dir`, default the cwd)."""
    root = parse_yaml(text, filename)
    fake = (base_dir or Path.cwd()) / filename
    sources = IncludeSources(include_root_for(include_root, fake.parent))
    return _load_tree(root, text, filename, fake, overrides, input, sources)


def _display_path(path: Path) -> str:
    try:
        # os.path.realpath, not Path.resolve: that raises RuntimeError on a symlink loop
        return str(Path(os.path.realpath(path)).relative_to(os.path.realpath(Path.cwd())))
    except (ValueError, OSError):
        return str(path)


def _load_tree(root: Any, text: str, display: str, path: Path, overrides, input_override, sources) -> Spec:
    diagnostics: list[Diagnostic] = []
    if not isinstance(root, YMap):
        first = next((i for i, line in enumerate(text.splitlines(), 1)
                      if line.strip() and not line.lstrip().startswith("#")), 1)
        where_mark = getattr(root, "mark", Mark(display, first, 1))
        raise SpecError.at(where_mark, "",
                           f"a spec is a mapping with `name`, `input` and `layers`, got {describe(root)}")
    header = validate(SpecFile, root, "", root.mark, diagnostics)
    if header is None:
        raise SpecError(diagnostics)
    stack = (Path(os.path.realpath(path)),)
    blocks = _collect_blocks(root, header, path, sources, diagnostics, stack)
    values = _resolve_vars(root, header, _parse_overrides(overrides), diagnostics)
    dims, symbols = _resolve_input(root, header, values, input_override, diagnostics)
    expander = Expander(blocks, values)
    top = expander.sequence(header.layers, Origin(root.mark, ""), "layers", Scope(values), label=header.name)
    diagnostics += expander.diagnostics
    if not expander.budget_exceeded:
        check_references(top, diagnostics, expander.failed_names)
    if diagnostics:
        raise SpecError(diagnostics)
    return Spec(header.name, dims, top, path, text, values, header.train, header.labels,
                root.value_marks.get("input"), symbols, header.init or {}, included=sources.read)


# -- blocks and include ---------------------------------------------------------------------------

def _collect_blocks(root: YMap, header: SpecFile, path: Path, sources: IncludeSources,
                    diagnostics: list[Diagnostic], stack: tuple) -> dict[str, Block]:
    blocks: dict[str, Block] = {}
    includes = root.get("include", [])
    for i, name in enumerate(header.include):
        mark = mark_of(includes, i, root.mark)
        target, problem = sources.admit(path, name, stack)
        if problem is not None:
            diagnostics.append(Diagnostic(mark, f"include[{i}]", *problem))
            continue
        if target is None:  # the include budget ran out earlier: that was reported once
            continue
        sub_root = _read_include(target, (path, name), mark, f"include[{i}]", sources, diagnostics)
        if sub_root is _UNREAD:
            continue
        sub_header = validate(_IncludedFile, sub_root, "", getattr(sub_root, "mark", mark), diagnostics) \
            if isinstance(sub_root, YMap) else None
        if sub_header is None:
            if not isinstance(sub_root, YMap):
                diagnostics.append(Diagnostic(mark, f"include[{i}]", f"`{name}` is not a mapping with `blocks:`"))
            elif isinstance(sub_root.get("blocks"), dict):
                # already reported: using these blocks must not add "unknown layer type" errors
                for block_name in sub_root["blocks"]:
                    blocks.setdefault(block_name, Block(block_name, {}, None, None, broken=True))
            continue
        included = _collect_blocks(sub_root, sub_header, target, sources, diagnostics, (*stack, target))
        for block_name, block in included.items():
            if block_name in blocks:
                first = blocks[block_name].mark
                diagnostics.append(Diagnostic(block.mark, f"blocks.{block_name}",
                                              f"block `{block_name}` is also defined at {first}"))
            blocks[block_name] = block
    own = root.get("blocks") or {}
    for block_name, definition in header.blocks.items():
        mark = key_mark_of(own, block_name)
        if block_name in REGISTRY or block_name in MACROS or block_name in NODE_KEYS:
            diagnostics.append(Diagnostic(mark, f"blocks.{block_name}",
                                          f"block name `{block_name}` is already a built-in layer or key",
                                          "choose another name"))
            continue
        params_yaml = own[block_name].get("params") if isinstance(own[block_name], dict) else None
        params = {p: (params_yaml[p] if isinstance(params_yaml, dict) else v) for p, v in definition.params.items()}
        marks = {p: mark_of(params_yaml, p, mark) for p in params} if isinstance(params_yaml, YMap) else {}
        blocks[block_name] = Block(block_name, params, own[block_name]["layers"], mark, param_marks=marks)
    return blocks


_UNREAD = object()


def _read_include(target: Path, named: tuple[Path, str], mark: Mark, where: str, sources: IncludeSources,
                  diagnostics: list[Diagnostic]) -> Any:
    """The parsed tree of an admitted include (`named`: the including file and the name it gives),
    or _UNREAD after reporting why not; the text read is kept in `sources.read`.

    Problems with the file as a whole are reported at `mark` (the include line); problems
    inside it (bad YAML, control characters) where they are in it."""
    try:
        text = read_source(target, _display_path(target))
        problem = sources.charge(text)
        if problem is not None:
            diagnostics.append(Diagnostic(mark, where, *problem))
            return _UNREAD
        sources.read[(str(named[0]), named[1])] = (target, text)
        return parse_yaml(text, shorten_name(_display_path(target)))
    except UnreadableSource as e:
        diagnostics.append(Diagnostic(mark, where, f"`{shorten_name(named[1])}`: {e.reason}", e.hint))
    except SpecError as e:
        diagnostics += [d if d.mark else Diagnostic(mark, where, d.message) for d in e.diagnostics]
    return _UNREAD


class _IncludedFile(SpecFile):
    """An included file contributes only `blocks:`; the rest may be absent."""

    name: Optional[str] = None  # type: ignore[assignment]
    input: Optional[list] = None  # type: ignore[assignment]
    layers: Optional[LayerList] = None  # type: ignore[assignment]


# -- vars, --set, input ---------------------------------------------------------------------------

def _parse_overrides(overrides) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not re.match(IDENTIFIER, name.strip()):
            raise SpecError.at(None, "--set", f"expected name=value, got `{item}`")
        parsed[name.strip()] = parse_yaml(value, "--set") if value.strip() else ""
    return parsed


def _resolve_vars(root: YMap, header: SpecFile, overrides: dict, diagnostics: list[Diagnostic]) -> dict[str, Any]:
    vars_yaml = root.get("vars") or YMap(root.mark)
    for name in overrides:
        if name not in header.vars:
            hint = did_you_mean(name, header.vars) or (
                "declare it under `vars:` first" if not header.vars else f"vars: {', '.join(header.vars)}")
            diagnostics.append(Diagnostic(None, "--set", f"`{name}` is not a var of this spec", hint))
    values: dict[str, Any] = {}
    for name in header.vars:
        raw = overrides[name] if name in overrides else vars_yaml[name]
        try:
            values[name] = substitute(raw, values)
        except SubstitutionError as e:
            diagnostics.append(Diagnostic(mark_of(vars_yaml, name), f"vars.{name}", str(e), e.hint))
    return values


def parse_input_text(text: str) -> list:
    """`3x64x64` → [3, 64, 64]; names stay text. Only ASCII digits are a number (`²`.isdigit() is
    true, int('²') fails) and only up to MAX_INT_LITERAL (before Python's 4,300-digit limit)."""
    parts = [p.strip() for p in re.split(r"[x×,]", text) if p.strip()]
    dims = []
    for part in parts:
        if re.fullmatch(r"[0-9]+", part):
            if len(part.lstrip("0")) > 19 or int(part) > MAX_INT_LITERAL:
                raise SpecError.at(None, "--input", f"size `{shorten_name(part)}` is too large",
                                   "expected C×H×W like 3x64x64 (or 3xHxW)")
            dims.append(int(part))
        else:
            dims.append(part)
    return dims


def _resolve_input(root: YMap, header: SpecFile, values: dict, override: str | None,
                   diagnostics: list[Diagnostic]) -> tuple[tuple, list[str]]:
    mark = root.value_marks.get("input")
    raw = parse_input_text(override) if override else root["input"]
    where = "--input" if override else "input"
    try:
        raw = substitute(raw, values)
    except SubstitutionError as e:
        diagnostics.append(Diagnostic(mark, where, str(e), e.hint))
        return (), []
    if not isinstance(raw, list) or not 1 <= len(raw) <= 3:
        diagnostics.append(Diagnostic(None if override else mark, where,
                                      f"expected C×H×W (or features), got {override or describe(raw)}"))
        return (), []
    dims, symbols = [], []
    for i, d in enumerate(raw):
        item_mark = mark if override else mark_of(root["input"], i, mark)
        if isinstance(d, int) and not isinstance(d, bool) and d >= 1:
            dims.append(d)
        elif isinstance(d, str) and re.match(IDENTIFIER, d) and i > 0:
            dims.append(Expr.symbol(d))
            symbols.append(d)
        else:
            what = "channels" if i == 0 else "a size"
            diagnostics.append(Diagnostic(None if override else item_mark, where,
                                          f"{what} must be a positive integer"
                                          f"{'' if i == 0 else ' or a name like H'}, got {describe(d)}"))
    return tuple(dims), symbols


# -- `name:` / `from:` ---------------------------------------------------------------------------

def check_references(parent: Node, diagnostics: list[Diagnostic], failed: set[str] = frozenset()) -> None:
    """Names are unique among the items of a layer list; `from:` names an earlier item of the same
    list, or `input`. Checked for the children of every node (a residual's body and shortcut, a
    parallel's paths never carry names or `from:`), depth first.

    `failed` holds names of nodes that already failed validation; references to them are not
    reported a second time."""
    items = parent.children()
    if not items:
        return
    defined: dict[str, Node] = {}
    later = {n.name: n for n in items if n.name}
    for previous, node in zip((None, *items), items):
        where = f"{node.origin.path} {node.kind}"
        _check_split_read(previous, node, where, diagnostics)
        for reference in node.sources or []:
            source, part = parse_reference(reference)
            if source in defined:
                _check_part(defined[source], reference, part, node, where, diagnostics)
            if source == INPUT_NAME or source in defined or source in failed:
                if source == INPUT_NAME and part is not None:
                    diagnostics.append(Diagnostic(node.from_mark, where, f"`from: {reference}`: `input` is one "
                                                  "tensor, not a split", "write `from: input`"))
                continue
            if source == node.name or (source in later and source not in defined):
                target = later[source]
                line = target.origin.mark.line if target.origin.mark else '?'
                diagnostics.append(Diagnostic(node.from_mark, where, f"`from: {source}` refers to a layer at or after "
                                              f"this one (line {line})", "`from:` can only name earlier layers"))
            else:
                hint = did_you_mean(source, [*defined, INPUT_NAME]) or \
                    "`from:` names a layer of the same list (set with `name:`), or `input`"
                diagnostics.append(Diagnostic(node.from_mark, where, f"`from: {source}` names no earlier layer here",
                                              hint))
        _check_arity(node, where, diagnostics)
        if node.name:
            if node.name == INPUT_NAME:
                diagnostics.append(Diagnostic(node.origin.mark, where, "`input` is reserved for the list's input"))
            elif node.name in defined:
                first = defined[node.name].origin.mark
                diagnostics.append(Diagnostic(node.origin.mark, where, f"name `{node.name}` is already used "
                                              f"(line {first.line if first else '?'})"))
            defined[node.name] = node
        check_references(node, diagnostics, failed)


def _check_part(target: Node, reference: str, part: int | None, node: Node, where: str,
                diagnostics: list[Diagnostic]) -> None:
    """`from: NAME.i` reads output i of a split; a split is read only that way."""
    name, parts = target.name, target.parts
    valid = ", ".join(f"`{name}.{i}`" for i in range(min(parts or 0, 8))) + (", …" if (parts or 0) > 8 else "")
    if parts is None and part is not None:
        diagnostics.append(Diagnostic(node.from_mark, where, f"`from: {reference}`: `{name}` is a {target.kind} "
                                      "with one output, not a split", f"write `from: {name}`"))
    elif parts is not None and part is None:
        diagnostics.append(Diagnostic(node.from_mark, where, f"`from: {reference}`: `{name}` is a split with "
                                      f"{parts} outputs; read one of them", f"write one of {valid}"))
    elif parts is not None and part >= parts:
        diagnostics.append(Diagnostic(node.from_mark, where, f"`from: {reference}`: split `{name}` has outputs "
                                      f"0 to {parts - 1}, not {part}", f"write one of {valid}"))


def _check_split_read(previous: Node | None, node: Node, where: str, diagnostics: list[Diagnostic]) -> None:
    """A split's outputs are read with `from: NAME.i`, never by the next item implicitly (at the end of
    a list, what the list gives is the parts stacked, as its row shows)."""
    if previous is not None and previous.parts is not None and node.sources is None:
        name = previous.name or "parts"
        diagnostics.append(Diagnostic(node.origin.mark, where, f"this reads the split before it (line "
                                      f"{previous.origin.mark.line if previous.origin.mark else '?'}), which has "
                                      f"{previous.parts} outputs", f"read one: `from: {name}.0`"
                                      + ("" if previous.name else f" (and give the split `name: {name}`)")))


def _check_arity(node: Node, where: str, diagnostics: list[Diagnostic]) -> None:
    variadic = node.arity is None
    count = len(node.sources) if node.sources is not None else 1
    if variadic and count < 2:
        diagnostics.append(Diagnostic(node.origin.mark, where, f"{node.kind} combines two or more inputs",
                                      "name them: `from: [a, b]`"))
    elif not variadic and count != 1:
        diagnostics.append(Diagnostic(node.from_mark or node.origin.mark, where,
                                      f"{node.kind} takes one input, `from:` lists {count}",
                                      "merge them first with `add`, `concat` or `mul`"))
