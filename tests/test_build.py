"""`netspec.build`: every spec compiles to a readable module that trains; init and freezing."""

from __future__ import annotations

import re

import pytest
import torch
from torch import fx, nn

import netspec
from netspec.compile.aux_modules import take_aux_outputs
from netspec.compile.modules import Residual
from tests.conftest import SPECS, spec_files
from tests.test_zoo import ZOO, reduced  # the zoo's reduced input sizes (64×64 unless one needs more)


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: str(p.relative_to(SPECS)))
def test_every_spec_builds_and_runs_forward_and_backward(path):
    torch.manual_seed(0)
    size = reduced(path.stem) if path.parent == ZOO else None  # keep the suite fast
    spec = netspec.load(path, input=f"3x{size}x{size}" if size else None)
    model = netspec.build(spec).train()
    x = torch.randn(2, *spec.input)
    out = model(x)
    assert tuple(out.shape) == (2, *netspec.check(spec).output)
    aux = take_aux_outputs(model)  # googlenet, inception_v3: the heads' outputs, in training only
    (out.square().mean() + sum(o.square().mean() for _, o in aux)).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_module_names_follow_the_spec():
    model = netspec.build(netspec.loads("""
name: named
input: [3, 16, 16]
blocks:
  stage:
    params: {out: required}
    layers: [conv: {out: $out, kernel: 3, padding: 1}, bn, relu]
layers:
  - stage: 8
    name: stem
  - residual: [conv: {out: 8, kernel: 3, padding: 1}]
  - global_avgpool
  - flatten
  - linear: 4
    name: head
""", "named.yaml"))
    names = [n for n, _ in model.named_children()]
    assert names == ["stem", "residual1", "global_avgpool2", "flatten3", "head"]
    assert isinstance(model.stem.conv0, nn.Conv2d) and isinstance(model.residual1, Residual)
    assert "(head): Linear(in_features=8, out_features=4, bias=True)" in str(model)


def test_from_edges_compile_to_generated_forward_code():
    model = netspec.build(netspec.loads("""
name: graph
input: [3, 8, 8]
layers:
  - conv: {out: 4, kernel: 1}
    name: a
  - conv: {out: 4, kernel: 3, padding: 1}
    from: input
    name: b
  - concat:
    from: [a, b]
""", "graph.yaml"))
    assert isinstance(model, fx.GraphModule)
    assert "torch.cat" not in model.code and "self.a(x)" in model.code and "self.concat2(a, b)" in model.code
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(model(x), torch.cat([model.a(x), model.b(x)], 1))


def test_trainable_false_freezes_parameters():
    model = netspec.build(netspec.loads(
        "name: f\ninput: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 3}\n    trainable: false\n"
        "  - flatten\n  - linear: 2\n", "f.yaml"))
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["conv0.weight", "conv0.bias"]


def test_init_by_type_and_per_node():
    torch.manual_seed(0)
    model = netspec.build(netspec.loads("""
name: init
input: [3, 8, 8]
init:
  conv: {weight: {constant: {value: 0.5}}, bias: zeros}
  linear: {normal: {std: 0.01}}
layers:
  - conv: {out: 4, kernel: 3}
  - bn:
    init: {weight: zeros, bias: ones}
  - residual:
      body: [conv: {out: 4, kernel: 3, padding: 1}]
    init: {conv: orthogonal}
  - flatten
  - linear: 2
""", "init.yaml"))
    assert torch.all(model.conv0.weight == 0.5) and torch.all(model.conv0.bias == 0)
    assert torch.all(model.bn1.weight == 0) and torch.all(model.bn1.bias == 1)
    inner = model.residual2.body.conv0.weight.flatten(1)
    assert torch.allclose(inner @ inner.T, torch.eye(4), atol=1e-5)  # rows orthonormal
    assert model.linear4.weight.std().item() < 0.05


def test_kaiming_matches_torch_for_the_same_seed():
    spec = "name: k\ninput: [3, 8, 8]\ninit:\n  conv: {kaiming_normal: {mode: fan_out, nonlinearity: relu}}\n" \
           "layers:\n  - conv: {out: 8, kernel: 3, bias: false}\n"
    torch.manual_seed(1)
    ours = netspec.build(netspec.loads(spec, "k.yaml")).conv0.weight
    torch.manual_seed(1)
    reference = nn.Conv2d(3, 8, 3, bias=False)
    nn.init.kaiming_normal_(reference.weight, mode="fan_out", nonlinearity="relu")
    assert torch.equal(ours, reference.weight)


@pytest.mark.parametrize("text, message", [
    ("init:\n  conv: kaiming_norml\n", "unknown initializer `kaiming_norml` (did you mean `kaiming_normal`?)"),
    ("init:\n  relu: zeros\n", "`relu` is not a layer type with weights"),
    ("init:\n  conv: {normal: {std: -1}}\n", "`normal`: std: input should be greater than 0"),
])
def test_bad_init_is_a_spec_error(text, message):
    with pytest.raises(netspec.SpecError, match=re.escape(message)):
        netspec.loads(f"name: b\ninput: [3, 8, 8]\n{text}layers:\n  - conv: {{out: 4, kernel: 3}}\n", "b.yaml")


def test_fan_initializer_on_a_vector_weight_points_at_the_layer():
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(netspec.loads("name: b\ninput: [3, 8, 8]\nlayers:\n  - bn:\n    init: kaiming_normal\n",
                                    "b.yaml"))
    assert str(info.value).startswith("b.yaml:4:5: error: layers[0] bn init: `kaiming_normal` needs a weight")


def test_symbolic_input_cannot_be_built():
    with pytest.raises(netspec.SpecError, match="cannot build with symbolic sizes H, W"):
        netspec.build(netspec.load(SPECS / "lenet.yaml", input="1xHxW"))


def test_the_documented_init_example_builds():
    from netspec.cli.docgen.guide import INIT_SPEC

    model = netspec.build(netspec.loads(INIT_SPEC, "init_demo.yaml"))
    assert torch.all(model.residual3.body.bn1.weight == 0)


class SeedSELayer(nn.Module):
    """Seed 003's SELayer, verbatim apart from the commented-out prints."""

    def __init__(self, channel, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.relu = nn.ReLU(inplace=True)
        self.FC1 = nn.Linear(channel, channel // reduction)
        self.FC2 = nn.Linear(channel // reduction, channel)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        out = self.avg_pool(x)
        out = out.view(x.size(0), -1)
        out = self.FC1(out)
        out = self.relu(out)
        out = self.FC2(out)
        out = self.sigmoid(out)
        return out.view(out.size(0), out.size(1), 1, 1) * x


def test_se_matches_the_seed_selayer():
    from netspec.compile.weights import load_torchvision

    torch.manual_seed(0)
    seed = SeedSELayer(64, 16)
    model = netspec.build(netspec.loads("name: se\ninput: [64, 8, 8]\nlayers:\n  - se: 16\n", "se.yaml"))
    assert load_torchvision(model, seed).complete
    x = torch.randn(3, 64, 8, 8)
    assert torch.allclose(model(x), seed(x), atol=1e-6)


def test_node_names_that_are_module_attributes_still_build():
    model = netspec.build(netspec.loads(
        "name: n\ninput: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 3}\n    name: forward\n"
        "  - relu:\n    name: graph\n  - conv: {out: 4, kernel: 1}\n    from: graph\n", "n.yaml"))
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 4, 6, 6)
    assert [n for n, _ in model.named_children()] == ["forward_", "graph_", "conv2"]


def test_the_compiler_maps_every_inferred_node_to_its_module():
    from netspec.compile.compiler import build_with_report, compile_model
    from netspec.lang.ir import walk

    spec = netspec.load(SPECS / "torchvision" / "resnet18.yaml", input="3x64x64")  # `shortcut: auto` blocks
    written = list(walk(spec.root))
    report = netspec.check(spec)
    assert list(walk(spec.root)) == written  # inference keys results by node; it never edits the IR
    model, modules = compile_model(spec, report)
    nodes = list(report.walk())
    assert nodes[0] is spec.root and modules[spec.root] is model
    assert set(modules) == set(nodes) == set(report.shapes)
    assert set(written) < set(nodes)  # plus the `shortcut: auto` projections inference made
    projections = [report.shapes[n].shortcut for n in written if report.shapes[n].shortcut is not None]
    assert projections and all(isinstance(modules[p], nn.Sequential) for p in projections)
    assert build_with_report(spec, report)[1] is report  # a report the caller has is used, not re-checked
