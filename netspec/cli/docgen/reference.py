"""The layer reference: one section per registered layer and macro, grouped by family."""

from __future__ import annotations

from netspec.cli.docgen.fields import _yaml_block, check_block, example_spec, field_table, short_form
from netspec.lang.macros import MACROS
from netspec.layers import REGISTRY

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
    filename = f"{kind}_example.yaml"
    out += [f"**Example** (`{filename}`):", ""]
    out += _yaml_block(example_spec(cls)) + [""]
    out += check_block(example_spec(cls), filename)
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


