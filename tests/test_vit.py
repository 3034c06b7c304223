"""ViT from YAML: `specs/torchvision/vit_b_16.yaml` is torchvision's vit_b_16, and the token layers
(tokens, class_token, pos_embedding, attention, mlp, token_ln, select_token) behave as torch's."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import netspec
from netspec.compile.token_modules import SelfAttention
from netspec.compile.weights import load_torchvision
from tests.conftest import SPECS

VIT = SPECS / "torchvision" / "vit_b_16.yaml"

SMALL = """\
name: small_vit
input: [3, 32, 32]
blocks:
  encoder_layer:
    params: {heads: 4, mlp: 64}
    layers:
      - residual: [{token_ln: {eps: 1.0e-6}}, {attention: {heads: $heads}}, {dropout: 0.0}]
      - residual: [{token_ln: {eps: 1.0e-6}}, {mlp: $mlp}]
layers:
  - conv: {out: 32, kernel: 8, stride: 8}
  - tokens
  - class_token
  - pos_embedding
  - encoder_layer:
    repeat: 2
  - token_ln: {eps: 1.0e-6}
  - select_token: 0
  - linear: 10
"""


def test_params_and_macs_equal_torchvision_at_224():
    report = netspec.check(netspec.load(VIT))
    reference = torchvision.models.vit_b_16(weights=None)
    assert report.params == sum(p.numel() for p in reference.parameters()) == 86_567_656
    # torchvision's GFLOPS column counts multiply-accumulates, attention scores and weighted sums included
    ops = torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.meta["_ops"]
    assert ops == 17.564
    assert round(report.macs / 1e9, 3) == ops
    assert report.output == (1000,)


@pytest.mark.parametrize("size", [32, pytest.param(224, marks=pytest.mark.slow)])
def test_outputs_equal_torchvision_after_load_torchvision(size):
    """At 32×32 in the suite (torchvision's image_size=32: 4 patches + the class token), at 224 in
    the slow run: every tensor mapped by role and shape, and the eval outputs equal."""
    torch.manual_seed(0)
    reference = torchvision.models.vit_b_16(weights=None, image_size=size).eval()
    with torch.no_grad():
        for parameter in reference.parameters():  # the class token is zeros, the head zeros: make both count
            parameter.normal_(0, 0.05)
    model = netspec.build(netspec.load(VIT, input=f"3x{size}x{size}")).eval()
    report = load_torchvision(model, reference)
    assert report.complete, report.summary()
    assert len(report.loaded) == len(reference.state_dict()) == len(model.state_dict()) == 152
    pairs = dict(line.split(" → ") for line in report.loaded)
    assert pairs["class_token"].endswith(".class_token")
    assert pairs["conv_proj.weight"] == "conv0.weight"
    assert pairs["encoder.pos_embedding"].endswith(".pos_embedding")
    assert pairs["encoder.layers.encoder_layer_11.self_attention.in_proj_weight"].endswith(".in_proj_weight")
    assert pairs["heads.head.weight"].endswith("linear8.weight")
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert ours.shape == theirs.shape == (2, 1000)
    scale = theirs.abs().max().item()
    assert scale > 0.1
    assert (ours - theirs).abs().max().item() <= 1e-4 * scale


def test_position_embedding_follows_the_input(cli):
    report = netspec.check(netspec.load(VIT, input="3x64x64"))
    embedding = next(row for row in report.rows if row.label == "pos_embedding")
    assert embedding.output == (17, 768) and embedding.params == 17 * 768  # (64/16)² + 1 tokens
    assert report.params == 86_567_656 - (197 - 17) * 768
    result = cli("check", VIT, "--input", "3x64x64")
    assert result.code == 0, result.err
    assert "17×768" in result.out


def test_attention_macs_are_counted_and_labelled():
    spec = netspec.loads(SMALL, "small.yaml")
    report = netspec.check(spec)
    attention = next(row for row in report.rows if row.label.startswith("attention"))
    length, dim = 17, 32
    assert attention.output == (length, dim)
    assert attention.macs == 3 * length * dim**2 + 2 * length**2 * dim + length * dim**2
    assert "in_proj 3·L·D² 52,224" in attention.formula and "scores L²·D 9,248" in attention.formula
    assert "weighted sum L²·D 9,248" in attention.formula and "out_proj L·D² 17,408" in attention.formula
    model = netspec.build(spec).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert counter.get_total_flops() == 2 * report.macs


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("training", [False, True])
def test_self_attention_equals_torch_multihead_attention(bias, training):
    """SelfAttention's forward (matmuls, so FlopCounterMode and ONNX see them) against
    nn.MultiheadAttention's own forward, eval fast path and training path, same parameters."""
    torch.manual_seed(0)
    ours = SelfAttention(48, 6, bias=bias).train(training)
    theirs = nn.MultiheadAttention(48, 6, bias=bias, batch_first=True).train(training)
    theirs.load_state_dict(ours.state_dict())
    if bias:
        with torch.no_grad():
            ours.in_proj_bias.normal_()
            theirs.in_proj_bias.copy_(ours.in_proj_bias)
    x = torch.randn(3, 11, 48)
    with torch.no_grad():
        expected = theirs(x, x, x, need_weights=False)[0]
        assert (ours(x) - expected).abs().max().item() < 1e-5


def test_small_vit_exports_to_onnx_with_parity(tmp_path, cli):
    (tmp_path / "small.yaml").write_text(SMALL)
    result = cli("export", tmp_path / "small.yaml", "--onnx", "--output", tmp_path / "small.onnx")
    assert result.code == 0, result.err
    assert "parity" in result.out and (tmp_path / "small.onnx").exists()


@pytest.mark.parametrize("layers, message", [
    ("- conv: {out: 30, kernel: 8, stride: 8}\n- tokens\n- attention: 4", "heads=4 does not divide the token width 30"),
    ("- conv: {out: 32, kernel: 8, stride: 8}\n- attention: 4", "attention needs an L×D token sequence"),
    ("- conv: {out: 32, kernel: 8, stride: 8}\n- tokens\n- select_token: 16", "needs more than 16 tokens"),
    ("- conv: {out: 32, kernel: 8, stride: 8}\n- tokens\n- tokens", "tokens needs a C×H×W feature map"),
    ("- conv: {out: 32, kernel: 8, stride: 8}\n- tokens\n- linear: 10", "linear needs a vector"),
])
def test_token_shape_errors(layers, message):
    text = "name: bad\ninput: [3, 32, 32]\nlayers:\n" + "".join(f"  {line}\n" for line in layers.splitlines())
    with pytest.raises(netspec.SpecError, match=message):
        netspec.check(netspec.loads(text, "bad.yaml"))


def test_position_embedding_needs_a_concrete_length():
    text = ("name: sym\ninput: [3, H, W]\nlayers:\n  - conv: {out: 8, kernel: 4, stride: 4}\n"
            "  - tokens\n  - pos_embedding\n")
    with pytest.raises(netspec.SpecError, match="pos_embedding needs a concrete sequence length"):
        netspec.check(netspec.loads(text, "sym.yaml"))
