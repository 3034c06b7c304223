"""The layers MobileNetV3, EfficientNet and ConvNeXt need, each against torchvision's own module on the
same weights: `se` (both forms, hidden width, activation, gate), `stochastic_depth` (train vs eval, the
same random draws), `layer_scale`, `ln` over the channels / the last axis, `permute`, and `linear` along
one axis (while a `linear` on a map without `over:` stays the flatten error)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torch import nn  # noqa: E402
from torchvision.models._utils import _make_divisible  # noqa: E402
from torchvision.models.convnext import CNBlock, LayerNorm2d  # noqa: E402
from torchvision.ops import Permute, SqueezeExcitation, StochasticDepth  # noqa: E402

import netspec  # noqa: E402
from netspec.compile.compiler import build_with_report  # noqa: E402
from netspec.compile.weights import load_torchvision  # noqa: E402
from netspec.layers.se import make_divisible  # noqa: E402


def model_of(layers: str, input_shape=(16, 6, 6)):
    text = f"name: t\ninput: {list(input_shape)}\nlayers:\n" + "".join(f"  {line}\n" for line in layers.splitlines())
    model, report = build_with_report(netspec.loads(text, "t.yaml"))
    return model, report


def check_error(layers: str, input_shape=(16, 6, 6)) -> str:
    text = f"name: t\ninput: {list(input_shape)}\nlayers:\n" + "".join(f"  {line}\n" for line in layers.splitlines())
    with pytest.raises(netspec.SpecError) as info:
        netspec.check(netspec.loads(text, "t.yaml"))
    return str(info.value)


def randomise(module: nn.Module) -> None:
    """Weights far from their initial values, so that a swapped or missed tensor shows."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p))


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


# -- se -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, squeeze, act, gate", [
    ("{reduction: 4, divisor: 8, gate: hardsigmoid, form: conv}", _make_divisible(16 // 4, 8), nn.ReLU, nn.Hardsigmoid),
    ("{hidden: 3, act: silu, form: conv}", 3, nn.SiLU, nn.Sigmoid),
    ("{reduction: 2, form: conv}", 8, nn.ReLU, nn.Sigmoid),
])
def test_se_conv_form_is_torchvision_squeeze_excitation(args, squeeze, act, gate):
    model, report = model_of(f"- se: {args}")
    theirs = SqueezeExcitation(16, squeeze, activation=act, scale_activation=gate)
    randomise(theirs)
    assert report.params == params(theirs) == params(model)
    shapes = [tuple(t.shape) for t in model.state_dict().values()]
    assert shapes == [tuple(t.shape) for t in theirs.state_dict().values()]
    assert load_torchvision(model, theirs).complete
    x = torch.randn(2, 16, 6, 6)
    assert torch.equal(model.eval()(x), theirs.eval()(x))
    se = model[0]
    assert [name for name, _ in se.named_children()] == [name for name, _ in theirs.named_children()]
    assert type(se.activation) is act and type(se.scale_activation) is gate


def test_se_linear_form_defaults_are_the_seeds_selayer():
    model, report = model_of("- se: 4")
    se = model[0]
    assert isinstance(se.fc1, nn.Linear) and se.fc1.out_features == 4
    assert type(se.relu) is nn.ReLU and type(se.gate) is nn.Sigmoid
    assert report.params == 16 * 4 + 4 + 4 * 16 + 16 == params(model)
    x = torch.randn(2, 16, 6, 6)
    s = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean(dim=(2, 3))))))
    torch.testing.assert_close(model.eval()(x), x * s[:, :, None, None], rtol=0, atol=1e-6)


def test_se_linear_form_takes_an_activation_and_a_gate():
    model, _ = model_of("- se: {reduction: 4, act: silu, gate: hardsigmoid}")
    se = model[0]
    assert type(se.relu) is nn.SiLU and type(se.gate) is nn.Hardsigmoid
    x = torch.randn(2, 16, 6, 6)
    s = nn.functional.hardsigmoid(se.fc2(nn.functional.silu(se.fc1(x.mean(dim=(2, 3))))))
    torch.testing.assert_close(model.eval()(x), x * s[:, :, None, None], rtol=0, atol=1e-6)


@pytest.mark.parametrize("channels", [16, 24, 40, 72, 96, 120, 240, 480, 576, 672, 960, 3, 1000])
def test_se_divisor_is_torchvision_make_divisible(channels):
    assert make_divisible(channels // 4, 8) == _make_divisible(channels // 4, 8)
    _, report = model_of("- se: {reduction: 4, divisor: 8}", (channels, 2, 2))
    hidden = _make_divisible(channels // 4, 8)
    assert report.params == 2 * channels * hidden + hidden + channels


def test_se_width_given_two_ways_is_an_error():
    assert "not both" in check_error("- se: {hidden: 4, reduction: 4}")
    assert "not both" in check_error("- se: {hidden: 4, divisor: 8}")


# -- stochastic depth -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_is_torchvisions_in_training_and_the_identity_in_eval(mode):
    model, report = model_of(f"- stochastic_depth: {{p: 0.5, mode: {mode}}}")
    theirs = StochasticDepth(0.5, mode)
    assert report.params == 0
    x = torch.randn(64, 16, 6, 6)
    assert torch.equal(model.eval()(x), x)
    torch.manual_seed(1)
    ours = model.train()(x)
    torch.manual_seed(1)
    assert torch.equal(ours, theirs.train()(x))
    per_sample = ours.flatten(1)
    kept = (per_sample == 0).all(dim=1)
    assert kept.any() and (~kept).any() if mode == "row" else kept.all() or (~kept).all()
    survivors = ~kept
    torch.testing.assert_close(per_sample[survivors], (x.flatten(1) * 2)[survivors])


def test_stochastic_depth_zero_and_one():
    x = torch.randn(8, 16, 6, 6)
    assert torch.equal(model_of("- stochastic_depth: 0")[0].train()(x), x)
    assert torch.equal(model_of("- stochastic_depth: 1")[0].train()(x), torch.zeros_like(x))
    assert "p" in check_error("- stochastic_depth: 1.5")


# -- ConvNeXt: ln over channels, permute, linear over the last axis, layer scale ----------------------

CNBLOCK = """- residual:
    body:
      - conv: {out: 16, kernel: 7, padding: 3, groups: 16}
      - permute: [0, 2, 3, 1]
      - ln: {over: last, eps: 1e-6}
      - linear: {out: 64, over: last}
      - gelu
      - linear: {out: 16, over: last}
      - permute: [0, 3, 1, 2]
      - layer_scale: 1e-6
      - stochastic_depth: {p: 0.3, mode: row}
    shortcut: identity"""


def test_cnblock_equals_torchvision():
    model, report = model_of(CNBLOCK, (16, 9, 9))
    theirs = CNBlock(16, layer_scale=1e-6, stochastic_depth_prob=0.3)
    assert report.params == params(theirs) == params(model)
    assert torch.equal(model.state_dict()["residual0.body.layer_scale7.layer_scale"], theirs.layer_scale.detach())
    randomise(theirs)
    # torchvision's state dict lists CNBlock.layer_scale (the block's own parameter) before block.*;
    # ours lists it where the layer is, after the body's other tensors: same name and shape, another place
    state = theirs.state_dict()
    reordered = {k: v for k, v in state.items() if k != "layer_scale"} | {"layer_scale": state["layer_scale"]}
    assert load_torchvision(model, reordered).complete
    x = torch.randn(2, 16, 9, 9)
    assert torch.equal(model.eval()(x), theirs.eval()(x))
    model.train()
    torch.manual_seed(3)
    ours = model(x)
    torch.manual_seed(3)
    assert torch.equal(ours, theirs.train()(x))


def test_ln_over_channels_is_convnext_layernorm2d():
    model, report = model_of("- ln: {over: channels, eps: 1e-6}", (16, 5, 7))
    theirs = LayerNorm2d(16, eps=1e-6)
    randomise(theirs)
    assert report.params == 32 == params(model)
    assert load_torchvision(model, theirs).complete
    x = torch.randn(2, 16, 5, 7) * 3 + 1
    assert torch.equal(model(x), theirs(x))


def test_ln_over_last_and_over_all():
    model, report = model_of("- permute: [0, 2, 3, 1]\n- ln: {over: last}", (16, 5, 7))
    assert report.output == (5, 7, 16) and report.params == 32
    x = torch.randn(2, 16, 5, 7)
    norm = nn.LayerNorm(16)
    norm.load_state_dict(model[1].state_dict())
    assert torch.equal(model(x), norm(x.permute(0, 2, 3, 1)))
    assert model_of("- ln", (16, 5, 7))[1].params == 2 * 16 * 5 * 7


def test_permute_is_torchvision_permute():
    model, report = model_of("- permute: [0, 3, 1, 2]", (4, 5, 6))
    assert report.output == (6, 4, 5)
    x = torch.randn(2, 4, 5, 6)
    assert torch.equal(model(x), Permute([0, 3, 1, 2])(x))
    assert "moves the batch axis" in check_error("- permute: [1, 0, 2, 3]", (4, 5, 6))
    assert "not an order" in check_error("- permute: [0, 2, 1]", (4, 5, 6))
    assert "not an order" in check_error("- permute: [0, 1, 1, 2]", (4, 5, 6))


def test_linear_over_an_axis_only_when_asked():
    message = check_error("- linear: 10", (4, 5, 6))
    assert "linear needs a vector" in message and "flatten" in message
    model, report = model_of("- linear: {out: 3, over: channels}", (4, 5, 6))
    assert report.output == (3, 5, 6) and report.params == 15 and report.macs == 12 * 30
    x = torch.randn(2, 4, 5, 6)
    linear = nn.Linear(4, 3)
    linear.load_state_dict(model[0].state_dict())
    torch.testing.assert_close(model(x), linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), rtol=0, atol=0)
    model, report = model_of("- linear: {out: 3, over: last, bias: false}", (4, 5, 6))
    assert report.output == (4, 5, 3) and report.params == 18 and report.macs == 18 * 20
    assert torch.equal(model(x), x @ model[0].weight.T)


def test_layer_scale_shapes():
    model, report = model_of("- layer_scale: 0.5", (16, 5, 5))
    assert report.params == 16 and tuple(model[0].layer_scale.shape) == (16, 1, 1)
    x = torch.randn(2, 16, 5, 5)
    assert torch.equal(model(x), x * 0.5)
    model, report = model_of("- flatten\n- linear: 7\n- layer_scale: 2", (16, 5, 5))
    assert report.params == 16 * 25 * 7 + 7 + 7 and tuple(model[2].layer_scale.shape) == (7,)
    assert torch.equal(model(x), model[:2](x) * 2)
