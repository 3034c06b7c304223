"""`netspec.build`: compile a checked spec into a torch.nn.Module.

The compiler walks the tree that static inference produced (`netspec.infer.Inferred`), so
every module is built with the shapes `check` printed. Each layer's own `build` makes its
module; containers become real modules: nn.Sequential for plain lists, `Residual`,
`Parallel`, and a torch.fx GraphModule (generated forward code) for lists that use `from:`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

from torch import fx, nn

from netspec.errors import SpecError
from netspec.graph import LayerNode, ParallelNode, ResidualNode, SeqNode
from netspec.infer import Inferred, check
from netspec.init import Rule, apply_rule
from netspec.modules import Parallel, Residual
from netspec.spec import Spec, load

Rules = dict  # layer type → netspec.init.Rule, the rules in force at a node


def build_with_report(spec: Spec | str | Path):
    """(model, report): the module and the static report it was compiled from; every node of
    `report.tree` has `.module` set to its torch module."""
    if not isinstance(spec, Spec):
        spec = load(spec)
    if spec.symbols:
        raise SpecError.at(spec.input_mark, "input", f"cannot build with symbolic sizes {', '.join(spec.symbols)}",
                           "give concrete sizes: `input: [C, H, W]` or --input CxHxW")
    report = check(spec)
    model = compile_seq(report.tree, spec.init)
    model.netspec = {"name": spec.name, "input": list(spec.input), "output": list(report.output),
                     "labels": spec.labels, "sha256": spec.sha256}
    return model, report


def build(spec: Spec | str | Path) -> nn.Module:
    """Build the torch.nn.Module for a spec (a loaded `Spec` or a path).

    Submodules are named after the spec: `name:` where given, else the layer type and its
    position in the list (`conv0`, `relu1`, `basic4` for a block). `model.netspec` holds the
    spec's name, input and output shapes, labels and hash.
    """
    return build_with_report(spec)[0]


def compile_node(inferred: Inferred, rules: Rules) -> nn.Module:
    node = inferred.node
    if isinstance(node.init, dict):
        rules = {**rules, **node.init}
    if isinstance(node, LayerNode):
        module = node.layer.build(inferred.inputs, inferred.output)
        _initialise(module, node.init if isinstance(node.init, Rule) else rules.get(node.kind), inferred)
    elif isinstance(node, SeqNode):
        module = compile_seq(inferred, rules)
    elif isinstance(node, ResidualNode):
        shortcut = compile_seq(inferred.shortcut, rules) if inferred.shortcut else nn.Identity()
        module = Residual(compile_seq(inferred.children[0], rules), shortcut)
    elif isinstance(node, ParallelNode):
        merge = inferred.merge.build([p.output for p in inferred.children], inferred.output)
        module = Parallel([compile_seq(path, rules) for path in inferred.children], merge)
    else:
        raise TypeError(f"cannot compile {node!r}")
    if not inferred.trainable:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    inferred.module = module  # lets tests and tools hook the module of any row
    return module


def _initialise(module: nn.Module, rule: Rule | None, inferred: Inferred) -> None:
    if rule is None:
        return
    try:
        apply_rule(module, rule)
    except ValueError as e:
        origin = inferred.node.origin
        raise SpecError.at(origin.mark, f"{origin.path} {inferred.node.kind} init", str(e)) from None


def compile_seq(inferred: Inferred, rules: Rules) -> nn.Module:
    """A layer list: nn.Sequential when each node reads the previous one, else a GraphModule."""
    names = _module_names(inferred)
    modules = [compile_node(child, rules) for child in inferred.children]
    if all(child.sources == [i - 1] for i, child in enumerate(inferred.children)):
        _work_in_place(modules)
        inferred.module = nn.Sequential(OrderedDict(zip(names, modules)))
    else:
        inferred.module = _graph_module(inferred, names, modules)
    return inferred.module


# Modules whose backward needs only their input (and weights), never their output: a ReLU
# right after one may overwrite that output, as torchvision's inplace=True ReLUs do.
_OUTPUT_NOT_SAVED = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, Residual)


def _work_in_place(chain: list[nn.Module]) -> None:
    """In a plain chain each output has exactly one reader, so ReLUs after conv/bn/linear/residual
    and a residual's final add can work in place — the memory traffic hand-written PyTorch
    (torchvision) saves. Never for a list's first module: its input may have other readers."""
    for previous, module in zip(chain, chain[1:]):
        if type(module) is nn.ReLU and isinstance(previous, _OUTPUT_NOT_SAVED):
            module.inplace = True
    for module in chain:
        if isinstance(module, Residual):
            body = module.body
            last = body[-1] if isinstance(body, nn.Sequential) and len(body) else None
            module.add_in_place = isinstance(last, _OUTPUT_NOT_SAVED)


def _graph_module(inferred: Inferred, names: list[str], modules: list[nn.Module]) -> fx.GraphModule:
    """A list with `from:` edges: the generated forward calls each submodule once, in order."""
    root = nn.Module()
    for name, module in zip(names, modules):
        root.add_module(name, module)
    graph = fx.Graph()
    values = {-1: graph.placeholder("x")}
    for i, (name, child) in enumerate(zip(names, inferred.children)):
        values[i] = graph.call_module(name, tuple(values[s] for s in child.sources))
    graph.output(values[len(modules) - 1])
    class_name = _identifier(inferred.node.kind).title().replace("_", "") or "Graph"
    return fx.GraphModule(root, graph, class_name=class_name)


# Attribute names of the containers: a submodule called `forward` or `graph` would shadow them.
_RESERVED = frozenset(dir(nn.Sequential)) | frozenset(dir(fx.GraphModule))


def _module_names(inferred: Inferred) -> list[str]:
    names, used = [], set()
    for i, child in enumerate(inferred.children):
        kind = _identifier(child.node.kind)
        name = child.node.name or (f"{kind}{i}" if kind[-1:].isalpha() else f"{kind}_{i}")
        while name in used or name in _RESERVED:
            name += "_"
        used.add(name)
        names.append(name)
    return names


def _identifier(text: str) -> str:
    return re.sub(r"\W+", "_", text.replace("×", "_x")).strip("_")
