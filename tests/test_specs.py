"""The shipped specs: their parameter counts and MACs are the published / torchvision figures."""

from __future__ import annotations

import pytest

import netspec
from tests.conftest import SPECS, spec_files

# (spec, params, MACs at the spec's input or None, relative MAC tolerance)
TORCHVISION = {
    "torchvision/vgg11.yaml": (132_863_336, 7.609e9),
    "torchvision/vgg11_bn.yaml": (132_868_840, 7.609e9),
    "torchvision/vgg16.yaml": (138_357_544, 15.47e9),
    "torchvision/resnet18.yaml": (11_689_512, 1.814e9),
    "torchvision/resnet34.yaml": (21_797_672, 3.664e9),
    "torchvision/resnet50.yaml": (25_557_032, 4.089e9),
    "torchvision/googlenet.yaml": (13_004_888, 1.498e9),  # aux heads: params, not eval MACs
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_specs_match_torchvision_figures(name):
    params, macs = TORCHVISION[name]
    report = netspec.check(netspec.load(SPECS / name))
    assert report.params == params
    assert report.macs == pytest.approx(macs, rel=0.005)
    assert report.output == (1000,)


def test_resnet_and_vgg_macs_are_torchvisions_published_gflops():
    # torchvision's model cards: resnet18 1.81, resnet50 4.09, vgg16 15.47 GFLOPS (multiply-adds)
    reports = {n: netspec.check(netspec.load(SPECS / "torchvision" / f"{n}.yaml"))
               for n in ("resnet18", "resnet50", "vgg16")}
    assert reports["resnet18"].macs == pytest.approx(1.814e9, rel=0.005)
    assert reports["resnet50"].macs == pytest.approx(4.089e9, rel=0.005)
    assert reports["vgg16"].macs == pytest.approx(15.47e9, rel=0.005)


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_param_counts_equal_torchvision_models(name):
    """Independent of the literals above: build torchvision's model and count."""
    import torch
    import torchvision

    stem = name.split("/")[1].removesuffix(".yaml")
    kwargs = {"init_weights": False} if stem == "googlenet" else {}  # its default constructor: aux heads
    with torch.device("meta"):  # shapes only: nothing allocated, no init cost
        model = getattr(torchvision.models, stem)(weights=None, **kwargs)
    report = netspec.check(netspec.load(SPECS / name))
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.buffers == sum(b.numel() for b in model.buffers())


TUTORIALS = {
    # spec: (params, output)
    "lenet.yaml": (61_706, (10,)),
    "mnist_cnn.yaml": (260 + 1_820 + 2000 * 500 + 500 + 5_010, (10,)),
    "cnn_bn.yaml": (448 + 32 + 4_640 + 64 + 2048 * 10 + 10, (10,)),
    "vgg11.yaml": (9_231_114, (10,)),  # torchvision vgg11_bn features + Linear(512, 10)
    "resnet_cifar.yaml": (195_738, (10,)),  # the seed's ResNet(ResidualBlock, [2, 2, 2])
    "se_resnet_cifar.yaml": (197_320, (10,)),
}


@pytest.mark.parametrize("name", sorted(TUTORIALS))
def test_tutorial_specs(name):
    params, output = TUTORIALS[name]
    report = netspec.check(netspec.load(SPECS / name))
    assert report.params == params
    assert report.output == output


def test_mnist_cnn_infers_the_2000_features_the_tutorial_computed_by_hand():
    report = netspec.check(netspec.load(SPECS / "mnist_cnn.yaml"))
    flatten = next(r for r in report.rows if r.kind == "flatten")
    assert flatten.output == (2000,)


def test_every_shipped_spec_checks_and_starts_with_a_schema_comment():
    files = spec_files()
    assert len(files) >= 13
    for path in files:
        assert path.read_text().startswith("# yaml-language-server: $schema="), path
        netspec.check(netspec.load(path))
