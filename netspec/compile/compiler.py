"""`netspec.build`: compile a checked spec into a torch.nn.Module.

The compiler walks the IR (netspec.lang.ir) with the shapes static inference found for each
node (`Report.shapes`), so every module is built with the shapes `check` printed. Each node
kind's own `compile` makes its module — a layer's `build`, `Residual`, `Parallel`, and for a
list nn.Sequential or, when it uses `from:`, a torch.fx GraphModule (generated forward code);
the compiler supplies what they share: `init:` rules, `trainable:`, module names, and the
node → module mapping it returns.
"""

from __future__ import annotations

import operator
import re
from collections import OrderedDict

from torch import fx, nn

from netspec.compile.modules import Residual
from netspec.errors import SpecError
from netspec.lang.init import Rule, apply_rule
from netspec.lang.ir import Node, Spec
from netspec.shapes.inference import check
from netspec.shapes.report import Report

Rules = dict  # layer type → netspec.lang.init.Rule, the rules in force at a node


def build_with_report(spec: Spec, report: Report | None = None) -> tuple[nn.Module, Report]:
    """(model, report): the module for a loaded spec and the static report it was compiled from
    (`report`, when the caller has already checked `spec`; else it is checked here)."""
    _require_concrete(spec)
    if report is None:
        report = check(spec)
    model, _ = compile_model(spec, report)
    return model, report


def build(spec: Spec) -> nn.Module:
    """Build the torch.nn.Module for a loaded spec (`netspec.build` also takes a path).

    Submodules are named after the spec: `name:` where given, else the layer type and its
    position in the list (`conv0`, `relu1`, `basic4` for a block). `model.netspec` holds the
    spec's name, input and output shapes, labels and hash.
    """
    return build_with_report(spec)[0]


def compile_model(spec: Spec, report: Report) -> tuple[nn.Module, dict[Node, nn.Module]]:
    """(model, modules): the module for `spec` built from its `report`, and the module of every
    inferred node (`report.walk()`), which tests and tools hook."""
    _require_concrete(spec)
    compiler = Compiler(report)
    model = compiler.node(report.root, spec.init)
    model.netspec = {"name": spec.name, "input": list(spec.input), "output": list(report.output),
                     "labels": spec.labels, "sha256": spec.sha256}
    return model, compiler.modules


def _require_concrete(spec: Spec) -> None:
    if spec.symbols:
        raise SpecError.at(spec.input_mark, "input", f"cannot build with symbolic sizes {', '.join(spec.symbols)}",
                           "give concrete sizes: `input: [C, H, W]` or --input CxHxW")


class Compiler:
    """What every node kind's `compile` shares; `modules` collects node → module as they are built."""

    def __init__(self, report: Report):
        self.shapes = report.shapes
        self.modules: dict[Node, nn.Module] = {}

    def node(self, node: Node, rules: Rules) -> nn.Module:
        """The module of `node`, with the `init:` rules in force and `trainable:` applied."""
        if isinstance(node.init, dict):
            rules = {**rules, **node.init}
        shapes = self.shapes[node]
        module = node.compile(self, shapes, rules)
        if not shapes.trainable:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        self.modules[node] = module
        return module

    def initialise(self, module: nn.Module, node: Node, rules: Rules) -> None:
        """Apply the layer's own `init:` rule, else the rule for its type in force here."""
        rule = node.init if isinstance(node.init, Rule) else rules.get(node.kind)
        if rule is None:
            return
        try:
            apply_rule(module, rule)
        except ValueError as e:
            raise SpecError.at(node.origin.mark, f"{node.origin.path} {node.kind} init", str(e)) from None

    def chain(self, names: list[str], modules: list[nn.Module]) -> nn.Sequential:
        """A list where each item reads the previous one."""
        _work_in_place(modules)
        return nn.Sequential(OrderedDict(zip(names, modules)))

    def graph(self, kind: str, names: list[str], modules: list[nn.Module], sources: list[list[int]]) -> fx.GraphModule:
        """A list with `from:` edges: the generated forward calls each submodule once, in order."""
        root = nn.Module()
        for name, module in zip(names, modules):
            root.add_module(name, module)
        graph = fx.Graph()
        values = {-1: graph.placeholder("x")}
        for i, (name, reads) in enumerate(zip(names, sources)):
            for s in reads:  # `from: NAME.k` of a split: its output stacks the parts, part k is out[:, k]
                if isinstance(s, tuple) and s not in values:
                    values[s] = graph.call_function(operator.getitem, (values[s[0]], (slice(None), s[1])))
            values[i] = graph.call_module(name, tuple(values[s] for s in reads))
        graph.output(values[len(modules) - 1])
        class_name = _identifier(kind).title().replace("_", "") or "Graph"
        return fx.GraphModule(root, graph, class_name=class_name)

    def module_names(self, nodes: list[Node]) -> list[str]:
        """Submodule names: `name:` where given, else the kind and the position (`conv0`, `basic4`)."""
        names, used = [], set()
        for i, node in enumerate(nodes):
            kind = _identifier(node.kind)
            name = node.name or (f"{kind}{i}" if kind[-1:].isalpha() else f"{kind}_{i}")
            while name in used or name in _RESERVED:
                name += "_"
            used.add(name)
            names.append(name)
        return names


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


# Attribute names of the containers: a submodule called `forward` or `graph` would shadow them.
_RESERVED = frozenset(dir(nn.Sequential)) | frozenset(dir(fx.GraphModule))


def _identifier(text: str) -> str:
    return re.sub(r"\W+", "_", text.replace("×", "_x")).strip("_")
