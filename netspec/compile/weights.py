"""Moving weights in and out of netspec models.

- `load_partial(model, state_dict)`: the seeds' fine-tuning pattern — load every tensor whose
  name and shape match, and say what was skipped instead of raising.
- `check_fits(model, shapes, path)`: a checkpoint's tensors (names and shapes, read from its
  header) against the model built from the run's spec — before anything is loaded, so an
  edited spec is reported as such, listing the tensors, not as a torch size-mismatch traceback.
- `load_torchvision(model, source)`: copy a torchvision model's tensors into a netspec model
  built from the equivalent spec. Names differ (`layer1.0.conv1.weight` vs
  `basic_x2_1.basic0.residual0.body.conv0.weight`), so tensors are matched by structure: both
  state dicts list tensors in module-registration order, which the specs follow; each pair
  must have the same shape and role (weight, bias, running_mean, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from netspec.errors import Diagnostic, RunError
from netspec.progress import plural

# Tensors named in a "spec no longer matches" error; a wholly different spec differs in
# hundreds, and the first few say what happened.
MAX_LISTED_TENSORS = 8


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the source
    unexpected: list[str] = field(default_factory=list)  # in the source, not in the model
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # name, model shape, source shape

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        lines = [f"loaded {plural(len(self.loaded), 'tensor')}"]
        if self.mismatched:
            lines.append(f"skipped {len(self.mismatched)} with another shape: " + ", ".join(
                f"{n} {tuple(a)} ≠ {tuple(b)}" for n, a, b in self.mismatched[:5])
                + (" …" if len(self.mismatched) > 5 else ""))
        for label, names in (("not in the source (left as initialised)", self.missing),
                             ("in the source but not the model (ignored)", self.unexpected)):
            if names:
                lines.append(f"{len(names)} {label}: " + ", ".join(names[:5]) + (" …" if len(names) > 5 else ""))
        return "\n".join(lines)


def load_partial(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> LoadReport:
    """Load the tensors of `state_dict` that match `model` by name and shape; report the rest."""
    own = model.state_dict()
    report = LoadReport()
    usable = {}
    for name, tensor in state_dict.items():
        if name not in own:
            report.unexpected.append(name)
        elif own[name].shape != tensor.shape:
            report.mismatched.append((name, tuple(own[name].shape), tuple(tensor.shape)))
        else:
            usable[name] = tensor
            report.loaded.append(name)
    report.missing = [n for n in own if n not in state_dict]
    model.load_state_dict(usable, strict=False)
    return report


class SpecMismatch(RunError):
    """The run's spec builds a model whose tensors are not those of the checkpoint."""


def check_fits(model: nn.Module, shapes: dict[str, tuple[int, ...]], path: Path) -> None:
    """Raise SpecMismatch listing each tensor whose name or shape differs (name, checkpoint
    shape, model shape), at most MAX_LISTED_TENSORS of them."""
    own = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    problems = [f"{name}: checkpoint {_shape(shapes[name])}, model {_shape(own[name])}"
                for name in own if name in shapes and shapes[name] != own[name]]
    problems += [f"{name}: missing from the checkpoint (model {_shape(own[name])})"
                 for name in own if name not in shapes]
    problems += [f"{_short(name)}: unexpected (checkpoint {_shape(shapes[name])}, not in the model)"
                 for name in shapes if name not in own]
    if not problems:
        return
    listed = "; ".join(problems[:MAX_LISTED_TENSORS])
    more = f"; and {len(problems) - MAX_LISTED_TENSORS} more" if len(problems) > MAX_LISTED_TENSORS else ""
    differ = "differs" if len(problems) == 1 else "differ"
    raise SpecMismatch([Diagnostic(
        None, str(path), f"the spec no longer matches the checkpoint: {plural(len(problems), 'tensor')} {differ}: "
        f"{listed}{more}",
        f"was {Path(path).parent / 'spec.yaml'} edited after training? restore it, or start a new run "
        f"(--init-from {Path(path).parent} loads the tensors that still fit)")])


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _short(name: str) -> str:
    """A tensor name read from a file, for a message: escaped, not too long."""
    text = ascii(name)[1:-1]
    return text if len(text) <= 80 else text[:77] + "..."


class StructureMismatch(ValueError):
    """The two models' tensors do not line up."""


def load_torchvision(model: nn.Module, source: nn.Module | dict[str, torch.Tensor]) -> LoadReport:
    """Copy a torchvision model's (or state dict's) tensors into `model`, matched by structure.

    Raises StructureMismatch at the first pair whose role or shape differs, naming both
    tensors; tensors left over on either side are reported, not copied.
    """
    theirs = source.state_dict() if isinstance(source, nn.Module) else dict(source)
    ours = model.state_dict()
    report = LoadReport()
    pairs = list(zip(ours.items(), theirs.items()))
    copied = {}
    for (our_name, our_tensor), (their_name, their_tensor) in pairs:
        if _role(our_name) != _role(their_name) or our_tensor.shape != their_tensor.shape:
            raise StructureMismatch(
                f"{our_name} {tuple(our_tensor.shape)} does not line up with {their_name} "
                f"{tuple(their_tensor.shape)} (tensor {len(copied)} of {len(ours)})")
        copied[our_name] = their_tensor
        report.loaded.append(f"{their_name} → {our_name}")
    report.missing = list(ours)[len(pairs):]
    report.unexpected = list(theirs)[len(pairs):]
    model.load_state_dict(copied, strict=False)
    return report


def _role(name: str) -> str:
    return name.rsplit(".", 1)[-1]
