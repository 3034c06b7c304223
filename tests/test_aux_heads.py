"""Auxiliary heads (`aux`): in the loss in training, absent in eval and in the exported graph;
GoogLeNet and Inception v3 with their heads equal torchvision's default constructors."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import onnx
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import netspec
from netspec.compile.aux_modules import AuxHead, aux_heads
from netspec.compile.compiler import build_with_report
from netspec.compile.weights import load_torchvision
from netspec.errors import SpecError
from netspec.exporters.onnx import export_onnx, load_source
from netspec.train.loop import Trainer
from tests.conftest import SPECS, nontrivial_batchnorm

SMALL = """\
name: aux_small
input: [3, 16, 16]
vars: {classes: 5}
layers:
  - conv: {out: 8, kernel: 3, padding: 1}
  - bn
  - relu
  - aux:
      weight: 0.3
      layers:
        - conv: {out: 4, kernel: 1}
        - relu
        - global_avgpool
        - flatten
        - linear: $classes
  - conv: {out: 8, kernel: 3, stride: 2, padding: 1}
  - relu
  - aux:
      weight: 0.5
      layers: [global_avgpool, flatten, {linear: $classes}]
  - global_avgpool
  - flatten
  - linear: $classes
"""
HEAD_PARAMS = (8 * 4 + 4) + (4 * 5 + 5) + (8 * 5 + 5)
HEAD_MACS = 16 * 16 * 8 * 4 + 4 * 5 + 8 * 5


def small(text: str = SMALL):
    return netspec.loads(text, "aux_small.yaml")


def test_check_counts_head_params_but_not_its_macs():
    report = netspec.check(small())
    without = netspec.check(netspec.loads(
        "name: plain\ninput: [3, 16, 16]\nlayers:\n  - conv: {out: 8, kernel: 3, padding: 1}\n  - bn\n  - relu\n"
        "  - conv: {out: 8, kernel: 3, stride: 2, padding: 1}\n  - relu\n  - global_avgpool\n  - flatten\n"
        "  - linear: 5\n", "plain.yaml"))
    assert report.params == without.params + HEAD_PARAMS
    assert report.macs == without.macs  # eval-mode MACs: the heads never run there
    aux_rows = [r for r in report.rows if r.kind == "aux"]
    assert [r.label for r in aux_rows] == ["aux (weight 0.3, training only)", "aux (weight 0.5, training only)"]
    assert sum(r.params for r in aux_rows) == HEAD_PARAMS
    assert f"{16 * 16 * 8 * 4 + 4 * 5} MACs in training only" in aux_rows[0].formula
    head_leaves = [r for r in report.rows if r.leaf and "training only" in r.formula]
    assert len(head_leaves) == 3 and all(r.macs == 0 for r in head_leaves)  # conv, linear, linear
    assert sum(int(r.formula.rsplit("[aux: ", 1)[1].split()[0]) for r in head_leaves) == HEAD_MACS
    assert aux_rows[0].output == (8, 16, 16)  # passes its input through


def test_a_head_not_ending_in_the_class_scores_is_a_located_shape_error():
    text = SMALL.replace("        - linear: $classes\n", "        - linear: 7\n", 1)
    with pytest.raises(SpecError) as error:
        netspec.check(small(text))
    message = str(error.value)
    assert "aux_small.yaml:8:" in message and "the aux head gives 7 but the main output is 5" in message


def _model():
    torch.manual_seed(0)
    model, _ = build_with_report(small())
    return model


def test_heads_run_in_training_and_not_in_eval():
    model = _model()
    heads = aux_heads(model)
    assert [h.weight for h in heads] == [0.3, 0.5]
    x = torch.randn(4, 3, 16, 16)
    model.train()(x)
    assert [tuple(h.output.shape) for h in heads] == [(4, 5), (4, 5)]
    calls = []
    for h in heads:
        h.head.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        out = model.eval()(x)
    assert calls == [] and all(h.output is None for h in heads) and out.shape == (4, 5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_a_training_step_minimises_main_plus_weighted_aux_losses(smoothing):
    torch.manual_seed(1)
    model = _model().train()
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 5, (6,))
    # the expected gradient, by hand: CE(main) + 0.3·CE(aux1) + 0.5·CE(aux2), run through hooks on the heads
    outputs = []
    hooks = [h.head.register_forward_hook(lambda m, i, o: outputs.append(o)) for h in aux_heads(model)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model(x)
    expected = (F.cross_entropy(logits, y, label_smoothing=smoothing)
                + 0.3 * F.cross_entropy(outputs[0], y, label_smoothing=smoothing)
                + 0.5 * F.cross_entropy(outputs[1], y, label_smoothing=smoothing))
    want = torch.autograd.grad(expected, list(model.parameters()))
    for h in hooks:
        h.remove()
    model.load_state_dict(state)  # BatchNorm's running stats as before the manual pass
    # netspec's own step (Trainer.train_step) with a learning rate of 0: the gradients stay to read
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    trainer = SimpleNamespace(
        config=SimpleNamespace(label_smoothing=smoothing, batch_size=6, clip_grad=None), model=model,
        optimizer=optimizer,
        scaler=None, process=SimpleNamespace(device=torch.device("cpu"), amp_dtype=None, world=1))
    trainer._logged_loss = lambda loss, lg, yy: Trainer._logged_loss(trainer, loss, lg, yy)
    logged, step_logits = Trainer.train_step(trainer, model, x, y)
    for got, wanted in zip((p.grad for p in model.parameters()), want):
        torch.testing.assert_close(got, wanted)
    # the logged train loss is plain CE of the main output (docs: train and val losses compare)
    torch.testing.assert_close(logged, F.cross_entropy(step_logits, y))
    assert all(h.output is None for h in aux_heads(model))  # taken by the loss, not kept


def test_the_exported_graph_has_no_aux_ops(tmp_path):
    path = tmp_path / "aux_small.yaml"
    path.write_text(SMALL)
    source = load_source(path)
    report = export_onnx(source, tmp_path / "model.onnx")
    assert report.max_abs_diff <= 1e-4 and report.top1_agreement == 1.0
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    ops = [n.op_type for n in graph.node]
    # main path only: 2 convs (BatchNorm folded or not), 1 Gemm; the heads' conv and 2 Gemms are gone
    assert ops.count("Conv") == 2 and ops.count("Gemm") + ops.count("MatMul") == 1, ops
    assert len(graph.output) == 1 and graph.output[0].type.tensor_type.shape.dim[1].dim_value == 5
    stored = sum(int(torch.tensor(list(t.dims)).prod()) if t.dims else 1 for t in graph.initializer)
    assert stored < sum(p.numel() for p in source.model.parameters()) - HEAD_PARAMS + 64


def _torchvision(name: str) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = getattr(torchvision.models, name)(weights=None, init_weights=False)
    return nontrivial_batchnorm(model).eval()


@pytest.mark.parametrize("name, params", [("googlenet", 13_004_888), ("inception_v3", 27_161_264)])
def test_params_equal_torchvision_default_constructor_with_aux_heads(name, params):
    report = netspec.check(netspec.load(SPECS / "torchvision" / f"{name}.yaml"))
    reference = _torchvision(name)
    assert reference.aux_logits and not reference.transform_input
    assert report.params == sum(p.numel() for p in reference.parameters()) == params
    assert report.buffers == sum(b.numel() for b in reference.buffers())


def _forward_order(state: dict, after: dict[str, str]) -> dict:
    """torchvision's GoogLeNet registers aux1/aux2 after inception5b, but runs them after 4a/4d; the
    spec lists them where they run. Three tensors (aux1.fc2, aux2.fc2, fc: 1000×1024 each) have the
    same role and shape, so registration order is what tells them apart: give it in forward order."""
    keys = [k for k in state if k.split(".")[0] not in after.values()]
    ordered, previous = [], None
    for key in keys:
        module = key.split(".")[0]
        if previous in after and module != previous:
            ordered += [k for k in state if k.split(".")[0] == after[previous]]
        ordered.append(key)
        previous = module
    return {k: state[k] for k in ordered}


@pytest.mark.parametrize("name, size", [("googlenet", 64), pytest.param("inception_v3", 299, marks=pytest.mark.slow)])
def test_eval_outputs_equal_torchvision_after_weight_transfer(name, size):
    torch.manual_seed(0)
    reference = _torchvision(name)
    text = (SPECS / "torchvision" / f"{name}.yaml").read_text()
    spec = netspec.loads(text.replace("input: [3, 224, 224]", f"input: [3, {size}, {size}]"), f"{name}.yaml")
    model = netspec.build(spec).eval()
    state = reference.state_dict()
    if name == "googlenet":
        state = _forward_order(state, {"inception4a": "aux1", "inception4d": "aux2"})
    report = load_torchvision(model, state)
    assert report.complete and len(report.loaded) == len(reference.state_dict())
    assert sum(isinstance(m, AuxHead) for m in model.modules()) == (2 if name == "googlenet" else 1)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert (ours - theirs).abs().max() <= 1e-4 * theirs.abs().max()
    # in training both give their aux outputs too (dropout off, so they compare)
    for module in [*model.modules(), *reference.modules()]:
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    model.train(), reference.train()
    with torch.no_grad():
        main, *aux = reference(x)
        ours = model(x)
    ours_aux = [h.output for h in aux_heads(model)]
    aux = [a for a in aux if a is not None][::-1] if name == "googlenet" else aux  # (logits, aux2, aux1)
    assert len(ours_aux) == len(aux) and all(a is not None for a in ours_aux)
    for a, b in zip([ours, *ours_aux], [main, *aux]):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()
