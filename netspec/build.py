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

import torch
from torch import fx, nn

from netspec.errors import SpecError
from netspec.graph import LayerNode, ParallelNode, ResidualNode, SeqNode
from netspec.infer import Inferred, check
from netspec.init import apply_init
from netspec.modules import Parallel, Residual
from netspec.spec import Spec, load


def build(spec: Spec | str | Path) -> nn.Module:
    """Build the torch.nn.Module for a spec (a loaded `Spec` or a path).

    The module's submodules are named after the spec: `name:` where given, else the layer
    type and position (`conv0`, `relu1`, `basic4` for a block). `model.netspec` holds the
    spec's name, input shape, labels and hash.
    """
    if not isinstance(spec, Spec):
        spec = load(spec)
    if spec.symbols:
        raise SpecError.at(spec.input_mark, "input",
                           f"cannot build with symbolic sizes {', '.join(spec.symbols)}",
                           "give concrete sizes: `input: [C, H, W]` or --input CxHxW")
    report = check(spec)
    model = _compile_seq(report.tree, spec.name)
    apply_init(model, report.tree, spec.init)
    model.netspec = {"name": spec.name, "input": list(spec.input), "labels": spec.labels,
                     "sha256": spec.sha256, "output": list(report.output)}
    return model


def compile_node(inferred: Inferred) -> nn.Module:
    node = inferred.node
    if isinstance(node, LayerNode):
        module = node.layer.build(inferred.inputs, inferred.output)
    elif isinstance(node, SeqNode):
        module = _compile_seq(inferred, node.label)
    elif isinstance(node, ResidualNode):
        shortcut = _compile_seq(inferred.shortcut, "shortcut") if inferred.shortcut else nn.Identity()
        module = Residual(_compile_seq(inferred.children[0], "body"), shortcut)
    elif isinstance(node, ParallelNode):
        module = Parallel([_compile_seq(p, f"path{i}") for i, p in enumerate(inferred.children)], node.merge)
    else:
        raise TypeError(f"cannot compile {node!r}")
    if not inferred.trainable:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    inferred.module = module
    return module


def _compile_seq(inferred: Inferred, label: str) -> nn.Module:
    names = _module_names(inferred)
    modules = [compile_node(child) for child in inferred.children]
    is_chain = all(child.sources == [i - 1] for i, child in enumerate(inferred.children))
    if is_chain:
        return nn.Sequential(OrderedDict(zip(names, modules)))
    return _graph_module(inferred, names, modules, label)


def _graph_module(inferred: Inferred, names: list[str], modules: list[nn.Module], label: str) -> fx.GraphModule:
    """A list with `from:` edges: a GraphModule whose generated forward calls each submodule once."""
    root = nn.Module()
    for name, module in zip(names, modules):
        root.add_module(name, module)
    graph = fx.Graph()
    values = {-1: graph.placeholder("x")}
    for i, (name, child) in enumerate(zip(names, inferred.children)):
        values[i] = graph.call_module(name, tuple(values[s] for s in child.sources))
    graph.output(values[len(modules) - 1])
    return fx.GraphModule(root, graph, class_name=_identifier(label).title().replace("_", "") or "Graph")


def _module_names(inferred: Inferred) -> list[str]:
    names, used = [], set()
    for i, child in enumerate(inferred.children):
        name = child.node.name or f"{_identifier(child.node.kind)}{i}"
        while name in used:
            name += "_"
        used.add(name)
        names.append(name)
    return names


def _identifier(text: str) -> str:
    return re.sub(r"\W+", "_", text.replace("×", "_x")).strip("_")
