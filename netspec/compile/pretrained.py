"""Pretrained weights from torchvision: `--init-from torchvision:ResNet18_Weights.IMAGENET1K_V1`.

The name is any that `torchvision.models.get_weight` accepts. The file comes through torch's own
code and cache: torch.hub's `download_url_to_file` into `$TORCH_HOME/hub/checkpoints/<the URL's
file name>` when it is not there yet (with the hash its name carries checked), then
`weights.get_state_dict(...)` (torch.hub's `load_state_dict_from_url`, which reads that cached file).

Loading is safe and bounded: the cached file must be a regular file no larger than its weights
can be (8 bytes per parameter torchvision lists, plus slack), and it is read with
`weights_only=True` — torch.hub's own default is False, which would run any pickle a replaced
file holds. The tensors are mapped into the spec's model by structure
(`netspec.compile.weights.load_torchvision`, not strict): what does not fit (a new head after
`--set classes=N`) keeps the spec's own initialisation and is reported by name, both sides.
"""

from __future__ import annotations

import difflib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import urlparse

from netspec.errors import ModelFileError, OptionError

PREFIX = "torchvision:"
FLAG = "--init-from"
BYTES_PER_PARAM = 8  # torchvision's files are float32 (4); room for float64
SLACK_BYTES = 64 * 2**20  # pickle framing, buffers (BatchNorm statistics) beyond the parameters
MAX_BYTES_UNKNOWN = 4 * 2**30  # weights that do not say their size: above the largest (ViT-H/14, 2.5 GB)
MIN_FITTING = 0.5  # fewer of the model's tensors loaded than this: the weights are another network's


def is_pretrained(source: Any) -> bool:
    return isinstance(source, str | os.PathLike) and str(source).startswith(PREFIX)


@dataclass
class Pretrained:
    """What `--init-from torchvision:NAME` loaded into a model."""

    name: str  # as given, without the prefix
    weights: Any  # torchvision.models.WeightsEnum member
    path: Path  # the cached file
    report: Any  # netspec.compile.weights.LoadReport

    @property
    def categories(self) -> list[str] | None:
        categories = self.weights.meta.get("categories")
        return list(categories) if categories else None

    def normalisation(self) -> tuple[list[float], list[float]] | None:
        """The mean and std torchvision's own transforms for these weights use, if they say."""
        try:
            transform = self.weights.transforms()
        except Exception:  # not every weights' transform builds without arguments (video, flow)
            return None
        mean, std = getattr(transform, "mean", None), getattr(transform, "std", None)
        return (list(mean), list(std)) if mean is not None and std is not None else None

    def note(self) -> str:
        r = self.report
        total = len(r.loaded) + len(r.missing) + len(r.differing)
        text = f"init from {PREFIX}{self.name} ({self.path}): loaded {len(r.loaded)} of {total} tensors"
        if r.differing:
            text += (f"; kept the spec's own initialisation for {len(r.differing)} whose shape differs: "
                     + ", ".join(f"{a} {_shape(sa)} ≠ {b} {_shape(sb)}" for a, sa, b, sb in r.differing))
        if r.missing:
            text += f"; {len(r.missing)} not in the weights (left as initialised): " + _names(r.missing)
        if r.unexpected:
            text += f"; {len(r.unexpected)} of the weights unused: " + _names(r.unexpected)
        return text


def initialise(model, source: str, progress: bool | None = None) -> Pretrained:
    """Load `torchvision:NAME` into `model` (see the module's docstring); raises OptionError for a
    bad name, a failed download or weights of another network, ModelFileError for a bad file."""
    from netspec.compile.weights import load_torchvision

    name = str(source)[len(PREFIX):]
    weights = resolve(name)
    path = fetch(weights, sys.stderr.isatty() if progress is None else progress)
    report = load_torchvision(model, load(weights, path), strict=False)
    own = len(report.loaded) + len(report.missing) + len(report.differing)
    if len(report.loaded) < MIN_FITTING * own:
        raise OptionError.at(None, FLAG, f"{PREFIX}{name} does not fit this spec: only {len(report.loaded)} of "
                             f"its {own} tensors line up with the weights' "
                             f"{len(report.loaded) + len(report.unexpected) + len(report.differing)}",
                             "choose the weights of the network the spec describes")
    return Pretrained(name, weights, path, report)


def resolve(name: str):
    """The weights enum member `torchvision.models.get_weight(name)` gives, or an OptionError with
    a did-you-mean."""
    from torchvision.models import get_weight

    try:
        return get_weight(name)
    except (ValueError, KeyError, AttributeError, TypeError):
        pass
    shown = ascii(name[:80])[1:-1]
    raise OptionError.at(None, FLAG, f"torchvision has no weights named {shown}", _suggestion(name))


def _suggestion(name: str) -> str:
    import torchvision.models as models

    names = weight_names()
    builder = name.lower().replace("-", "_")
    if builder in models.list_models():  # a builder's name: its default weights
        return f"did you mean {PREFIX}{models.get_model_weights(builder).__name__}.DEFAULT?"
    lowered = {n.lower(): n for n in names}
    if name.lower() in lowered:  # the case is all that differs
        return f"did you mean {PREFIX}{lowered[name.lower()]}?"
    close = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=3, cutoff=0.6)]
    if close:
        return "did you mean " + " or ".join(PREFIX + c for c in close) + "?"
    return "a name as torchvision.models.get_weight takes it, e.g. torchvision:ResNet18_Weights.IMAGENET1K_V1"


def weight_names() -> list[str]:
    """Every `Enum.VALUE` name get_weight accepts (aliases such as DEFAULT included)."""
    import inspect

    import torchvision.models as models
    from torchvision.models import WeightsEnum

    modules = [models] + [m for _, m in inspect.getmembers(models, inspect.ismodule)
                          if str(getattr(m, "__file__", "")).endswith("__init__.py")]
    names = set()
    for module in modules:
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, WeightsEnum) and cls is not WeightsEnum:
                names.update(f"{cls.__name__}.{member}" for member in cls.__members__)
    return sorted(names)


def cache_file(weights) -> Path:
    """Where torch.hub keeps these weights: `$TORCH_HOME/hub/checkpoints/<the URL's file name>`."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def fetch(weights, progress: bool = False) -> Path:
    """The cached file of `weights`, downloaded by torch.hub first if it is not there."""
    import torch.hub

    path = cache_file(weights)
    if os.path.lexists(path):
        return path
    match = torch.hub.HASH_REGEX.search(path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"downloading {weights.url} to {path}", file=sys.stderr)
        torch.hub.download_url_to_file(weights.url, str(path), match.group(1) if match else None, progress=progress)
    except (URLError, OSError, RuntimeError, ValueError) as error:  # offline, refused, disk full, bad hash
        reason = getattr(error, "reason", None) or error
        raise OptionError.at(None, FLAG, f"cannot download {weights.url} ({str(reason).splitlines()[0][:160]}); "
                             f"without a network, place that file at {path}") from None
    return path


def load(weights, path: Path) -> dict:
    """The state dict in the cached file: a regular file within its size bound, read with
    weights_only=True through torchvision's `get_state_dict`; each problem a ModelFileError."""
    import torch

    again = "delete it to download it again, or place the right file there"
    try:
        info = os.stat(path)
    except OSError as error:
        raise ModelFileError.at(None, str(path), f"cannot read the cached weights ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ModelFileError.at(None, str(path), "the cached weights are not a regular file", again)
    params = weights.meta.get("num_params")
    limit = BYTES_PER_PARAM * params + SLACK_BYTES if isinstance(params, int) else MAX_BYTES_UNKNOWN
    if info.st_size > limit:
        raise ModelFileError.at(None, str(path), f"the cached weights are {info.st_size:,} bytes, more than "
                                f"{limit:,} for {params or 'these'} parameters", again)
    try:
        state = weights.get_state_dict(progress=False, weights_only=True, map_location="cpu")
    except Exception as error:  # noqa: BLE001 — a damaged or hostile file: UnpicklingError, EOFError, RuntimeError...
        detail = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise ModelFileError.at(None, str(path), f"cannot be read as torchvision weights ({detail})", again) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ModelFileError.at(None, str(path), "not a state dict (names → tensors)", again)
    return state


def _shape(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _names(names: list[str], shown: int = 5) -> str:
    return ", ".join(ascii(n[:80])[1:-1] for n in names[:shown]) + (" …" if len(names) > shown else "")
