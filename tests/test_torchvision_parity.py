"""netspec's ImageNet specs are torchvision's models: same tensors in, same outputs out."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import netspec
from netspec.compile.weights import StructureMismatch, load_torchvision
from tests.conftest import SPECS, nontrivial_batchnorm

MODELS = ["vgg11", "vgg11_bn", "vgg16", "resnet18", "resnet34", "resnet50", "googlenet"]


def torchvision_model(name: str) -> nn.Module:
    kwargs = {"init_weights": True} if name == "googlenet" else {}  # its default constructor: aux heads
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    return nontrivial_batchnorm(model).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_outputs_match_torchvision_after_copying_weights(name):
    torch.manual_seed(0)
    reference = torchvision_model(name)
    model = netspec.build(SPECS / "torchvision" / f"{name}.yaml").eval()
    report = load_torchvision(model, reference)
    assert report.complete, report.summary()
    assert len(report.loaded) == len(reference.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert ours.shape == theirs.shape == (2, 1000)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_structure_mismatch_names_both_tensors():
    model = netspec.build(SPECS / "torchvision" / "resnet18.yaml")
    with pytest.raises(StructureMismatch, match=r"does not line up with"):
        load_torchvision(model, torchvision.models.resnet34(weights=None))


def test_partial_state_dict_reports_what_it_skipped():
    """The seeds' fine-tuning pattern: load what fits, say what did not."""
    from netspec.compile.weights import load_partial

    source = netspec.build(SPECS / "torchvision" / "resnet18.yaml")
    target = netspec.build(netspec.load(SPECS / "torchvision" / "resnet18.yaml", overrides=["classes=10"]))
    state = source.state_dict()
    state["extra.weight"] = torch.zeros(3)
    report = load_partial(target, state)
    head = [n for n in target.state_dict() if n.startswith("head")]
    assert {n for n, _, _ in report.mismatched} == set(head)
    assert report.unexpected == ["extra.weight"]
    assert not report.missing
    assert "skipped 2 with another shape" in report.summary()
    body = next(n for n in target.state_dict() if n.endswith("conv0.weight"))
    assert torch.equal(target.state_dict()[body], source.state_dict()[body])


def test_gradients_match_torchvision_in_training_mode():
    """The compiler's in-place ReLUs and residual adds must not change a single gradient."""
    torch.manual_seed(0)
    reference = torchvision_model("resnet18").train()
    model = netspec.build(SPECS / "torchvision" / "resnet18.yaml").train()
    load_torchvision(model, reference)
    x = torch.randn(2, 3, 64, 64)
    for m in (model, reference):
        m(x).logsumexp(1).sum().backward()
    ours = [p.grad for p in model.parameters()]
    theirs = [p.grad for p in reference.parameters()]
    assert len(ours) == len(theirs)
    assert max((a - b).abs().max().item() for a, b in zip(ours, theirs)) <= 1e-5
