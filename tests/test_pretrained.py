"""`--init-from torchvision:NAME` without a network: a torchvision state dict saved under
torchvision's own file name in a temporary TORCH_HOME cache is what torch.hub then reads; the
weights arrive in the spec's model by structure, a new head keeps the spec's own initialisation
and is reported by name on both sides. And `load_torchvision`'s robust matching."""

from __future__ import annotations

import re
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

import netspec
from netspec.compile.pretrained import cache_file, resolve
from netspec.compile.weights import StructureMismatch, load_torchvision
from tests.conftest import SPECS

NAME = "ResNet18_Weights.IMAGENET1K_V1"
INIT = f"torchvision:{NAME}"


def zoo_spec(name: str) -> Path:
    """specs/torchvision/<name>.yaml (specs/imagenet/ before the move)."""
    for folder in ("torchvision", "imagenet"):
        if (SPECS / folder / f"{name}.yaml").exists():
            return SPECS / folder / f"{name}.yaml"
    raise FileNotFoundError(name)


def small_copy(name: str, root: Path, size: int = 32) -> Path:
    """The zoo spec with a size×size input, in a project of its own under `root` (its includes
    copied beside it at the same relative places): quick to train."""
    spec = zoo_spec(name)
    target = root / "project" / "zoo" / spec.name
    target.parent.mkdir(parents=True)
    (root / "project" / "netspec.toml").write_text("")
    text = spec.read_text()
    flow = re.search(r"(?m)^include:\s*\[([^\]]*)\]", text)
    block = re.search(r"(?m)^include:\s*\n((?:\s+-\s*\S+\s*\n)+)", text)
    includes = [i.strip(" '\"") for i in flow.group(1).split(",")] if flow else \
        re.findall(r"-\s*(\S+)", block.group(1)) if block else []
    for include in includes:
        copy = (target.parent / include).resolve()
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text((spec.parent / include).read_text())
    text, count = re.subn(r"(?m)^input: \[3, \d+, \d+\]", f"input: [3, {size}, {size}]", text)
    assert count == 1
    target.write_text(text)
    return target


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A fresh TORCH_HOME for one test, with downloads failing as on a machine without a network."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    return home


@pytest.fixture
def cached(torch_home) -> dict[str, torch.Tensor]:
    """resnet18's state dict (fixed seed, non-trivial BatchNorm statistics) in the cache, under
    torchvision's own file name."""
    torch.manual_seed(1234)
    reference = torchvision.models.resnet18(weights=None)
    for module in reference.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state = reference.state_dict()
    path = torch_home / "hub" / "checkpoints" / Path(resolve(NAME).url).name
    assert path == cache_file(resolve(NAME))
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_train_setup_loads_the_weights_and_keeps_the_specs_own_head(cached, tmp_path):
    from netspec.progress import Progress
    from netspec.train.setup import prepare

    spec = small_copy("resnet18", tmp_path, size=16)  # small synthetic images: quick to make
    setup = prepare(spec, {"data": "synthetic", "epochs": 1}, ["classes=10"], tmp_path / "run", False, INIT,
                    Progress(enabled=False))
    try:
        note = next(note for note in setup.notes if note.startswith(f"init from {INIT}"))
        assert "loaded 120 of 122 tensors" in note and str(cache_file(resolve(NAME))) in note
        assert re.search(r"head\w*\.\w+\.weight \(10, 512\) ≠ fc\.weight \(1000, 512\)", note), note
        assert re.search(r"head\w*\.\w+\.bias \(10\) ≠ fc\.bias \(1000\)", note), note
        ours = {n: t.cpu() for n, t in setup.bare_model.state_dict().items()}
    finally:
        setup.release()
    assert len(ours) == len(cached)
    pairs = list(zip(ours.items(), cached.items()))
    for (a, x), (b, y) in pairs[:-2]:  # everything but the head arrived, BatchNorm statistics too
        assert torch.equal(x, y), (a, b)
    torch.manual_seed(0)  # the spec's own initialisation, seeded as training seeds it
    fresh = netspec.build(netspec.load(spec, overrides=["classes=10"])).state_dict()
    for (a, x), _ in pairs[-2:]:
        assert x.shape[0] == 10 and torch.equal(x, fresh[a]), a


def test_netspec_train_init_from_torchvision_end_to_end(cached, tmp_path, cli):
    spec = small_copy("resnet18", tmp_path, size=16)
    run = tmp_path / "run"
    result = cli("train", spec, "--init-from", INIT, "--set", "classes=10", "--data", "synthetic", "--epochs", "1",
                 "--optimizer", "sgd", "--lr", "1e-12", "--momentum", "0", "--weight-decay", "0",
                 "--batch-size", "512", "--out", run)
    assert result.code == 0, result.err
    text = result.out + result.err
    assert f"init from {INIT}" in text and "loaded 120 of 122 tensors" in text and "≠ fc.weight (1000, 512)" in text
    trained = load_file(str(run / "last.safetensors"))
    order = list(netspec.build(netspec.load(spec, overrides=["classes=10"])).state_dict())
    convs = [(a, b) for a, b in zip(order, cached) if cached[b].dim() == 4]
    for a, b in convs:  # lr 1e-12: one epoch moves them by ~1e-12
        assert torch.allclose(trained[a], cached[b], atol=1e-6), (a, b)


def test_export_with_pretrained_weights_labels_them_with_imagenet_categories(cached, tmp_path, cli):
    from netspec.run import load_source

    source = load_source(zoo_spec("resnet18"), init_from=INIT)
    assert source.card.labels == resolve(NAME).meta["categories"]
    assert source.card.normalize and source.card.mean == [0.485, 0.456, 0.406]
    assert "loaded 122 of 122 tensors" in source.notes[0]
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(cached)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (source.model(x) - model.eval()(x)).abs().max().item() <= 1e-4

    small = small_copy("resnet18", tmp_path)
    result = cli("export", small, "--onnx", "--init-from", INIT, "--set", "classes=10", "-o", tmp_path / "r.onnx")
    assert result.code == 0, result.err
    assert "loaded 120 of 122 tensors" in result.out and "≠ fc.weight (1000, 512)" in result.out
    assert (tmp_path / "r.onnx").is_file()


@pytest.mark.parametrize("name, suggestion", [
    ("ResNet18_Weights.IMAGENET1K_V9", "torchvision:ResNet18_Weights.IMAGENET1K_V1"),
    ("resnet18_weights.imagenet1k_v1", "torchvision:ResNet18_Weights.IMAGENET1K_V1?"),
    ("resnet18", "torchvision:ResNet18_Weights.DEFAULT"),
])
def test_a_bad_name_is_refused_with_a_suggestion(torch_home, tmp_path, cli, name, suggestion):
    small = small_copy("resnet18", tmp_path, size=16)
    for command in (("train", small, "--set", "classes=10", "--data", "synthetic", "--out", tmp_path / "run"),
                    ("export", zoo_spec("resnet18"), "--onnx", "-o", tmp_path / "r.onnx")):
        result = cli(*command, "--init-from", f"torchvision:{name}")
        assert result.code == 2, result.err
        assert "--init-from" in result.err and f"did you mean {suggestion}" in result.err
        assert "Traceback" not in result.err
    assert not (tmp_path / "run").exists() and not (tmp_path / "r.onnx").exists()


def test_without_a_network_the_error_names_the_url_and_the_cache_file(torch_home, tmp_path, cli):
    weights = resolve(NAME)
    small = small_copy("resnet18", tmp_path, size=16)
    for command in (("train", small, "--set", "classes=10", "--data", "synthetic", "--out", tmp_path / "run"),
                    ("export", zoo_spec("resnet18"), "--onnx", "-o", tmp_path / "r.onnx")):
        result = cli(*command, "--init-from", INIT)
        assert result.code == 2, result.err
        line = next(line for line in result.err.splitlines() if line.startswith("error:"))
        assert "--init-from" in line and weights.url in line and str(cache_file(weights)) in line
        assert "Traceback" not in result.err
    assert not (tmp_path / "run").exists()
    assert list(cache_file(weights).parent.iterdir()) == []  # no partial download left behind


def test_a_cached_file_is_loaded_safely_and_bounded(torch_home, tmp_path, cli):
    import pickle

    path = cache_file(resolve(NAME))
    path.parent.mkdir(parents=True)

    class Boom:
        def __reduce__(self):
            return (print, ("code ran",))

    with open(path, "wb") as f:
        pickle.dump({"x": Boom()}, f, protocol=2)
    result = cli("export", zoo_spec("resnet18"), "--onnx", "--init-from", INIT, "-o", tmp_path / "r.onnx")
    assert result.code == 2 and "cannot be read as torchvision weights" in result.err
    assert "code ran" not in result.out + result.err
    with open(path, "wb") as f:  # far more bytes than 11.7 M parameters can take
        f.truncate(8 * resolve(NAME).meta["num_params"] + 65 * 2**20)
    result = cli("export", zoo_spec("resnet18"), "--onnx", "--init-from", INIT, "-o", tmp_path / "r.onnx")
    assert result.code == 2 and "more than" in result.err and str(path) in result.err


def test_weights_of_another_network_are_refused(torch_home, tmp_path, cli):
    path = cache_file(resolve(NAME))
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    result = cli("export", zoo_spec("resnet18"), "--onnx", "--init-from", INIT, "-o", tmp_path / "r.onnx")
    assert result.code == 2 and "does not fit this spec" in result.err


# -- load_torchvision's matching -------------------------------------------------------------------

class Holder(nn.Module):
    """A module whose one tensor is a free parameter (a class token, a layer scale)."""

    def __init__(self, name: str, shape: tuple[int, ...]):
        super().__init__()
        self.register_parameter(name, nn.Parameter(torch.randn(shape)))


class Tokens(nn.Module):
    """torchvision's order (ViT, ConvNeXt): a free parameter registered before the modules that
    use it — the class token before the patch projection, the layer scale before its block."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.class_token = nn.Parameter(torch.randn(1, 1, 8))
        self.proj = nn.Conv2d(3, 8, 4)
        self.block = nn.Sequential(Holder("layer_scale", (8, 1, 1)), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1))
        self.head = nn.Linear(8, classes)


class TokensReordered(nn.Module):
    """The same tensors in the spec's order (each where it is used), the free ones named otherwise."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 4)
        self.token = Holder("token", (1, 1, 8))
        self.block = nn.Sequential(nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1), Holder("gamma", (8, 1, 1)))
        self.head = nn.Linear(8, classes)


def test_tensors_registered_in_another_order_are_matched_by_role_and_shape():
    source, target = Tokens(), TokensReordered()
    report = load_torchvision(target, source)
    assert report.complete
    assert next(iter(source.state_dict())) == "class_token" and next(iter(target.state_dict())) == "proj.weight"
    assert torch.equal(target.token.token, source.class_token)
    assert torch.equal(target.block[2].gamma, source.block[0].layer_scale)
    assert torch.equal(target.block[0].running_mean, source.block[1].running_mean)
    assert torch.equal(target.proj.weight, source.proj.weight)
    assert torch.equal(target.head.weight, source.head.weight)


def test_a_new_head_is_named_on_both_sides():
    source, target = Tokens(), TokensReordered(classes=3)
    with pytest.raises(StructureMismatch, match=re.escape("head.weight (3, 8) does not line up with head.weight "
                                                          "(5, 8)")):
        load_torchvision(target, source)
    before = target.head.weight.detach().clone()
    report = load_torchvision(target, source, strict=False)
    assert report.differing == [("head.weight", (3, 8), "head.weight", (5, 8)),
                                ("head.bias", (3,), "head.bias", (5,))]
    assert torch.equal(target.head.weight, before) and torch.equal(target.token.token, source.class_token)


def test_extra_tensors_are_named_with_their_side():
    source, target = torchvision.models.resnet34(weights=None), netspec.build(zoo_spec("resnet18"))
    with pytest.raises(StructureMismatch) as error:
        load_torchvision(target, source)
    assert "(source) does not line up with any tensor of the model" in str(error.value)
    assert "layer" in str(error.value)
    report = load_torchvision(target, source, strict=False)
    assert not report.missing and not report.differing and report.unexpected


def test_a_one_by_one_conv_meets_a_linear():
    conv = nn.Sequential(nn.Conv2d(16, 4, 1), nn.ReLU(), nn.Conv2d(4, 16, 1))
    linear = nn.Sequential(nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 16), nn.Identity())
    report = load_torchvision(linear, conv)
    assert report.complete
    assert torch.equal(linear[0].weight, conv[0].weight.reshape(4, 16))


def test_googlenets_auxiliary_classifiers_meet_their_own_counterparts():
    """torchvision registers aux1 and aux2 after inception5b, the spec where they branch off: three
    (1000, 1024) classifiers that shape alone would pair with one another."""
    spec = zoo_spec("googlenet")
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, init_weights=False).eval()
    model = netspec.build(spec).eval()
    report = load_torchvision(model, reference)
    assert report.complete
    ours = dict(line.split(" → ") for line in report.loaded)
    top = {name: ours[name].split(".", 1)[0] for name in ("aux1.fc2.weight", "aux2.fc2.weight", "fc.weight",
                                                         "aux1.conv.conv.weight", "aux2.conv.conv.weight")}
    assert top["aux1.fc2.weight"] == top["aux1.conv.conv.weight"] != top["aux2.fc2.weight"]
    assert top["aux2.fc2.weight"] == top["aux2.conv.conv.weight"] != top["fc.weight"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert (out[0] if isinstance(out, tuple) else out).sub(reference(x)).abs().max().item() <= 1e-5


def test_convnexts_layer_scales_stay_in_their_own_blocks():
    """torchvision registers each block's layer scale before the block's layers, the spec after
    them: by order alone each would pair with the next block's."""
    torch.manual_seed(0)
    reference = torchvision.models.convnext_tiny(weights=None).eval()
    for name, tensor in reference.state_dict().items():
        if name.endswith("layer_scale"):
            tensor.uniform_(0.5, 1.5)  # distinct per block (torchvision starts them all at 1e-6)
    model = netspec.build(netspec.load(zoo_spec("convnext_tiny"), input="3x32x32")).eval()
    assert load_torchvision(model, reference).complete
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        theirs = reference(x)
        assert (model(x) - theirs).abs().max().item() <= 1e-4 * theirs.abs().max().item()
