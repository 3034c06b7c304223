"""One harness for every registered layer and macro (the registry is the list).

For each kind's documented example: the static shape of every node equals the shape its
built module produces on a real tensor; static params and buffers equal the module's; and
the static MACs equal torch's FlopCounterMode / 2 (conv, linear: the matmul-like ops).
A new layer is tested here automatically.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import netspec
from netspec.cli.docgen import example_spec
from netspec.compile.compiler import build_with_report, compile_model
from netspec.lang.macros import MACROS
from netspec.layers import REGISTRY

KINDS = {**REGISTRY, **MACROS}


def runtime_shapes(model, report, modules, x):
    """Run `model` on `x`; return [(node, runtime shape without batch)] for every inferred node."""
    seen, handles = [], []
    for node in report.walk():
        def hook(module, args, output, node=node):
            seen.append((node, tuple(output.shape[1:])))
        handles.append(modules[node].register_forward_hook(hook))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_static_shapes_equal_runtime_shapes(kind):
    spec = netspec.loads(example_spec(KINDS[kind]), f"{kind}.yaml")
    report = netspec.check(spec)
    model, modules = compile_model(spec, report)
    x = torch.randn(2, *spec.input)
    seen = runtime_shapes(model.train(), report, modules, x)
    assert len({id(n) for n, _ in seen}) == sum(1 for _ in report.walk())
    for node, shape in seen:
        assert shape == tuple(report.shapes[node].output), f"{node.origin.path} {node.kind}"
    assert tuple(model(x).shape[1:]) == report.output


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_static_params_and_buffers_equal_the_module(kind):
    model, report = build_with_report(netspec.loads(example_spec(KINDS[kind]), f"{kind}.yaml"))
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report.buffers == sum(b.numel() for b in model.buffers())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_static_macs_equal_torch_flop_counter(kind):
    spec = netspec.loads(example_spec(KINDS[kind]), f"{kind}.yaml")
    model, report = build_with_report(spec)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.randn(1, *spec.input))
    assert counter.get_total_flops() == 2 * report.macs


def test_every_kind_is_exercised():
    assert {k for k in KINDS if KINDS[k].example} == set(KINDS)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_init_rules_reach_every_parameter_of_a_layer_that_has_them(kind):
    """A layer whose module owns parameters takes `init:` rules by its type, and the rule reaches each
    of them: biases the bias initializer, every other parameter the weight initializer."""
    from netspec.lang.init import weighted_kinds

    text = example_spec(REGISTRY[kind])
    plain = netspec.loads(text, f"{kind}.yaml")
    _, modules = compile_model(plain, netspec.check(plain))
    own = [m for node, m in modules.items() if node.kind == kind]
    owns_parameters = any(True for m in own for _ in m.parameters())
    assert (kind in weighted_kinds()) == owns_parameters
    if not owns_parameters:
        return
    rule = f"init:\n  {kind}: {{weight: {{constant: {{value: 0.25}}}}, bias: {{constant: {{value: -0.5}}}}}}\n"
    spec = netspec.loads(text.replace("layers:\n", rule + "layers:\n", 1), f"{kind}.yaml")
    _, modules = compile_model(spec, netspec.check(spec))
    for node, module in modules.items():
        if node.kind != kind:
            continue
        for sub in module.modules():
            for name, parameter in sub.named_parameters(recurse=False):
                expected = -0.5 if name == "bias" or name.endswith("_bias") else 0.25
                assert torch.all(parameter == expected), f"{kind}: {type(sub).__name__}.{name}"
