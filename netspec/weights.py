"""Moving weights in and out of netspec models.

- `load_partial(model, state_dict)`: the seeds' fine-tuning pattern — load every tensor whose
  name and shape match, and say what was skipped instead of raising.
- `load_torchvision(model, source)`: copy a torchvision model's tensors into a netspec model
  built from the equivalent spec. Names differ (`layer1.0.conv1.weight` vs
  `basic_x2_1.basic0.residual0.body.conv0.weight`), so tensors are matched by structure: both
  state dicts list tensors in module-registration order, which the specs follow; each pair
  must have the same shape and role (weight, bias, running_mean, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


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
        lines = [f"loaded {len(self.loaded)} tensors"]
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
