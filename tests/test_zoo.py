"""The torchvision zoo: every `specs/torchvision/<builder>.yaml` is `torchvision.models.<builder>(weights=None)`.

One harness, parametrised over the folder (a new spec is picked up by adding its file):

- params and buffers: the library's `check` (what `netspec check --json` prints) against the
  torchvision model itself, built on the meta device (nothing allocated) where the builder allows;
- eval outputs: torchvision's tensors copied in by `load_torchvision`, then both models on the
  same input, max |diff| ≤ 1e-4 × the output's scale, at a reduced input size where the
  architecture allows it (REDUCED_SIZE);
- MACs at torchvision's evaluation size (its first weights' `transforms().crop_size`) equal
  `weights.meta["_ops"]`, the GFLOPS column of torchvision's model table (multiply-accumulates),
  to its printed precision (3 decimals): metadata only, nothing is downloaded;
- ONNX export through the library (`load_source` + `netspec.exporters.onnx.export`), whose own
  verification compares onnxruntime with eager PyTorch;
- `netspec check` end to end (import + check in a child, CPU time) under 0.5 s.

Outputs are compared for every spec in the default selection (each under ~3 s, the big ones
included, at 64×64); exports, 5–60 s each, only for FAST_EXPORT there, the rest as `slow` (which
`make test` still runs). tests/test_export.py leaves the zoo to this file.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import netspec
from netspec.compile.weights import load_torchvision
from tests.conftest import ROOT, SPECS
from tests.test_check_budgets import run_check

ZOO = SPECS / "torchvision"
STEMS = sorted(p.stem for p in ZOO.glob("*.yaml"))

SMALL = 64  # the reduced input for outputs and export
# Architectures that need more than SMALL×SMALL: Inception v3's aux head (Mixed_6e → 5×5 avg-pool/3
# → 5×5 conv) needs Mixed_6e at 17×17, i.e. the full 299×299 input.
REDUCED_SIZE = {"inception_v3": 299}
# torchvision builders whose input size is a constructor argument: at a reduced size the reference is
# built for it (ViT's position embedding has (H/16)·(W/16) + 1 rows; the spec's follows the input).
SIZED_BUILDERS = {"vit_b_16": "image_size", "vit_b_32": "image_size", "vit_l_16": "image_size"}

# Exports take 5–60 s each under load (torch's exporter, then onnxruntime): a few families run in the
# default selection (Fire modules, residual blocks, channel split/shuffle, squeeze-excitation with
# hardsigmoid), every other spec's export is `slow`.
FAST_EXPORT = {"squeezenet1_1", "resnet18", "shufflenet_v2_x1_0", "mobilenet_v3_small"}

CHECK_SECONDS = 0.5


def slow_unless(fast: set[str]) -> list:
    return [s if s in fast else pytest.param(s, marks=pytest.mark.slow) for s in STEMS]


def spec_path(stem: str):
    return ZOO / f"{stem}.yaml"


def reduced(stem: str) -> int:
    return REDUCED_SIZE.get(stem, SMALL)


def torchvision_model(stem: str, size: int | None = None) -> nn.Module:
    kwargs = {SIZED_BUILDERS[stem]: size} if size is not None and stem in SIZED_BUILDERS else {}
    with warnings.catch_warnings():  # googlenet / inception_v3: "init_weights will default to False"
        warnings.simplefilter("ignore", FutureWarning)
        return getattr(torchvision.models, stem)(weights=None, **kwargs)


def perturb(model: nn.Module, size: int) -> nn.Module:
    """Make every tensor matter in eval mode. Every parameter initialised to a constant (biases and
    norm weights at 0/1, ConvNeXt's layer scale at 1e-6, ViT's class token and zero head) gets
    random values, so that a tensor copied to the wrong place, or a branch scaled away, changes the
    output; then BatchNorm's running statistics are those of a random batch (not 0/1, and not
    arbitrary either: arbitrary statistics in a deep net make the output independent of the input)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and bool((p == p.flatten()[0]).all()):
                if p.flatten()[0] == 0:
                    p.uniform_(-0.2, 0.2)
                else:
                    p.uniform_(0.5, 1.5)
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # the cumulative average: after one batch, that batch's statistics
        model.train()(torch.randn(4, 3, size, size))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return model.eval()


def eval_size(stem: str) -> tuple[int, float]:
    """torchvision's evaluation crop and its `_ops` (GMACs) for the builder's first weights."""
    weights = list(torchvision.models.get_model_weights(stem))[0]
    crop = weights.transforms().crop_size
    return int(crop[0]), float(weights.meta["_ops"])


def test_the_zoo_has_the_issue_s_builders():
    required = {"alexnet", "vgg11_bn", "resnet18", "resnext50_32x4d", "wide_resnet50_2", "densenet121",
                "squeezenet1_1", "googlenet"}
    assert required <= set(STEMS)
    assert all(s in torchvision.models.list_models(torchvision.models) for s in STEMS)  # stem = builder name


@pytest.mark.parametrize("stem", STEMS)
def test_params_and_buffers_equal_torchvision(stem):
    report = netspec.check(netspec.load(spec_path(stem)))
    try:
        with torch.device("meta"):  # shapes only: nothing allocated, no init cost
            model = torchvision_model(stem)
    except NotImplementedError:  # regnet's builder reads tensor values while constructing
        model = torchvision_model(stem)
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.buffers == sum(b.numel() for b in model.buffers())
    assert report.output == (1000,)


@pytest.mark.parametrize("stem", STEMS)
def test_eval_outputs_equal_torchvision_after_load_torchvision(stem):
    size = reduced(stem)
    torch.manual_seed(0)
    reference = perturb(torchvision_model(stem, size), size)
    model = netspec.build(netspec.load(spec_path(stem), input=f"3x{size}x{size}")).eval()
    report = load_torchvision(model, reference)
    assert report.complete, report.summary()
    assert len(report.loaded) == len(reference.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert isinstance(ours, torch.Tensor) and ours.shape == theirs.shape == (2, 1000)
    scale = theirs.abs().max().item()
    assert (theirs[0] - theirs[1]).abs().max().item() > 1e-3 * scale > 0  # the outputs depend on the input
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4 * scale, f"max |diff| = {diff:.3g}, output scale {scale:.3g}"


@pytest.mark.parametrize("stem", STEMS)
def test_macs_at_the_evaluation_size_are_torchvisions_ops(stem):
    crop, ops = eval_size(stem)
    report = netspec.check(netspec.load(spec_path(stem), input=f"3x{crop}x{crop}"))
    assert abs(report.macs / 1e9 - ops) <= 0.0005 + 1e-9, f"{report.macs / 1e9:.4f} GMACs, torchvision {ops}"


@pytest.mark.parametrize("stem", slow_unless(FAST_EXPORT))
def test_exports_to_onnx_with_parity(stem, tmp_path):
    from netspec.exporters.onnx import export
    from netspec.run import load_source

    size = reduced(stem)
    source = load_source(spec_path(stem), input=f"3x{size}x{size}")
    report = export(source, tmp_path / f"{stem}.onnx")
    assert report.max_abs_diff <= 1e-4 and report.top1_agreement == 1.0
    assert (tmp_path / f"{stem}.onnx").is_file()


@pytest.mark.parametrize("stem", STEMS)
def test_check_end_to_end_is_fast(stem):
    code, out, err, elapsed = run_check(spec_path(stem))
    assert code == 0, err
    assert "output 1000" in out
    assert elapsed < CHECK_SECONDS, f"netspec check took {elapsed:.2f} s of CPU"


# -- the tutorial's 101-class network (seed 002) ------------------------------------------------

class SeedNet(nn.Module):
    """Seed 002's `Net`, as the tutorial writes it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=3, out_channels=32, kernel_size=(3, 3))
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 54 * 54, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 101)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        x = x.view(-1, 64 * 54 * 54)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def test_net101_is_the_tutorial_network():
    report = netspec.check(netspec.load(SPECS / "net101.yaml"))
    assert report.params == 47_841_317 and report.output == (101,)
    assert next(r for r in report.rows if r.kind == "flatten").output == (64 * 54 * 54,)
    torch.manual_seed(0)
    reference = SeedNet().eval()
    model = netspec.build(SPECS / "net101.yaml").eval()
    assert sum(p.numel() for p in reference.parameters()) == report.params
    assert load_torchvision(model, reference).complete
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() <= 1e-5


def test_resnet34_for_the_tutorial_s_101_classes():
    report = netspec.check(netspec.load(ZOO / "resnet34.yaml", overrides=["classes=101"]))
    with torch.device("meta"):
        model = torchvision.models.resnet34(weights=None, num_classes=101)
    assert report.output == (101,) and report.params == sum(p.numel() for p in model.parameters())


# -- docs/zoo.md --------------------------------------------------------------------------------

def test_docs_zoo_table_is_current():
    """docs/zoo.md's table is benchmarks/zoo_table.py's output: one row per zoo spec, and its static
    columns (params, evaluation size, GMACs, torchvision's `_ops`) are what the specs give today."""
    text = (ROOT / "docs" / "zoo.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 8:
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == STEMS, "regenerate: .venv/bin/python benchmarks/zoo_table.py --parity"
    for stem, cells in rows.items():
        crop, ops = eval_size(stem)
        report = netspec.check(netspec.load(spec_path(stem)))
        at_eval = netspec.check(netspec.load(spec_path(stem), input=f"3x{crop}x{crop}"))
        expected = [f"{report.params:,}", "=", str(crop), f"{at_eval.macs / 1e9:.3f}", f"{ops:.3f}", "="]
        assert cells[1:7] == expected, stem
