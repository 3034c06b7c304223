"""Moving weights in and out of netspec models.

- `load_partial(model, state_dict)`: the seeds' fine-tuning pattern — load every tensor whose
  name and shape match, and say what was skipped instead of raising.
- `check_fits(model, shapes, path)`: a checkpoint's tensors (names and shapes, read from its
  header) against the model built from the run's spec — before anything is loaded, so an
  edited spec is reported as such, listing the tensors, not as a torch size-mismatch traceback.
- `load_torchvision(model, source)`: copy a torchvision model's tensors into a netspec model
  built from the equivalent spec. Names differ (`layer1.0.conv1.weight` vs
  `basic_x2_1.basic0.residual0.body.conv0.weight`), so tensors are matched by structure: by
  module-registration order (which the specs follow) when every pair agrees in role (weight,
  bias, running_mean, ...) and shape, else by aligning the two (role, shape) sequences; every
  unmatched tensor is named on both sides.
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
    # matched by structure, not by name: ours, our shape, theirs, their shape (a new head)
    differing: list[tuple[str, tuple, str, tuple]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.differing)

    def summary(self) -> str:
        lines = [f"loaded {plural(len(self.loaded), 'tensor')}"]
        if self.differing:
            lines.append(f"kept the model's own initialisation for {len(self.differing)} with another shape: "
                         + ", ".join(f"{a} {tuple(sa)} ≠ {b} {tuple(sb)}" for a, sa, b, sb in self.differing[:5])
                         + (" …" if len(self.differing) > 5 else ""))
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


# Roles torch's own modules give their tensors; any other name (`class_token`, `layer_scale`,
# a custom module's `gamma`) is a free parameter, matched to another free parameter.
STANDARD_ROLES = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked",
                            "in_proj_weight", "in_proj_bias"})


@dataclass
class _Tensor:
    name: str
    tensor: torch.Tensor

    @property
    def role(self) -> str:
        return _role(self.name)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    def token(self) -> tuple[str, tuple[int, ...]]:
        """What must agree for two tensors to be the same one: role class and shape."""
        return (self.role if self.role in STANDARD_ROLES else "param"), self.shape

    def squeezed(self) -> tuple[int, ...]:
        """The shape without size-1 axes: a 1×1 conv's (o, i, 1, 1) is a linear's (o, i)."""
        return tuple(d for d in self.shape if d != 1)


def load_torchvision(model: nn.Module, source: nn.Module | dict[str, torch.Tensor], *,
                     strict: bool = True) -> LoadReport:
    """Copy a torchvision model's (or state dict's) tensors into `model`, matched by structure.

    First by registration order (the specs follow it): if every pair agrees in role and shape,
    that is the match. Otherwise the two sequences of (role, shape) are aligned (difflib's
    longest matching runs), and the tensors left over are paired in their relative order by
    (role, shape), then by role and shape without its size-1 axes (a 1×1 conv's weight meets a
    linear's, copied reshaped), free parameters (`class_token`, `layer_scale`) by shape alone — so
    a parameter registered first in torchvision and last in the spec still meets its counterpart.
    Each leftover is paired first where its top-level module's other tensors went, and a pair
    that lies outside that module is undone and paired again (strays: GoogLeNet's three
    same-shaped classifiers, ConvNeXt's layer scales one block off). Tensors still unpaired are
    listed on both sides: `differing` (ours, theirs: same role, other shape — a new head),
    `missing` (ours only), `unexpected` (theirs only).

    strict: raise StructureMismatch naming every unmatched tensor (both sides); otherwise copy
    what matched and report the rest (the model keeps its own initialisation for it).
    """
    theirs = source.state_dict() if isinstance(source, nn.Module) else dict(source)
    ours_list = [_Tensor(n, t) for n, t in model.state_dict().items()]
    theirs_list = [_Tensor(n, t) for n, t in theirs.items()]
    pairs, left_ours, left_theirs = _match(ours_list, theirs_list)
    report = LoadReport()
    copied = {}
    for i, j in sorted(pairs):
        our, their = ours_list[i], theirs_list[j]
        copied[our.name] = their.tensor.reshape(our.shape) if their.shape != our.shape else their.tensor
        report.loaded.append(f"{their.name} → {our.name}")
    report.differing, left_ours, left_theirs = _same_role_pairs(ours_list, theirs_list, left_ours, left_theirs)
    report.missing = [ours_list[i].name for i in left_ours]
    report.unexpected = [theirs_list[j].name for j in left_theirs]
    if strict and not report.complete:
        raise StructureMismatch(_mismatch_text(report, ours_list, theirs_list, left_ours, left_theirs))
    model.load_state_dict(copied, strict=False)
    return report


def _match(ours: list[_Tensor], theirs: list[_Tensor]) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """(pairs of indices, our leftovers, their leftovers)."""
    if len(ours) == len(theirs) and all(a.role == b.role and a.shape == b.shape for a, b in zip(ours, theirs)):
        return [(i, i) for i in range(len(ours))], [], []  # registration order: the common case
    import difflib

    a, b = [t.token() for t in ours], [t.token() for t in theirs]
    pairs, left_ours, left_theirs = [], [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            pairs += zip(range(i1, i2), range(j1, j2))
        else:
            left_ours += range(i1, i2)
            left_theirs += range(j1, j2)
    for attempt in range(4):  # pair the leftovers; undo the strays and pair them again
        _pair_leftovers(pairs, ours, theirs, left_ours, left_theirs)
        if attempt == 3:
            break
        pairs, strays = _coherent(pairs, ours, theirs)
        if not strays:
            break
        left_ours = sorted(left_ours + [i for i, _ in strays])
        left_theirs = sorted(left_theirs + [j for _, j in strays])
    return pairs, left_ours, left_theirs


def _pair_leftovers(pairs, ours, theirs, left_ours: list[int], left_theirs: list[int]) -> None:
    """Same role and shape, then without size-1 axes / free parameters by shape; each first
    where the tensor's module's other tensors went. Updates the lists in place."""
    home = _homes(pairs, ours, theirs)
    for loose, sibling in ((False, True), (False, False), (True, True), (True, False)):
        for i in list(left_ours):
            j = next((j for j in left_theirs if _fits(ours[i], theirs[j], loose)
                      and (not sibling or _near(_path(theirs[j].name), home.get(_top(ours[i].name), ())))),
                     None)
            if j is not None:
                pairs.append((i, j))
                left_ours.remove(i)
                left_theirs.remove(j)


# A pair is a stray when its tensor lies outside the module where most (this share) of the
# tensors of its top-level module went: GoogLeNet's three (1000, 1024) classifiers (two
# auxiliary, registered last by torchvision) and ConvNeXt's layer scales (registered first in
# each block by torchvision, last by the spec) would otherwise pair with a neighbour's by shape.
MAJORITY = 0.75


def _path(name: str) -> tuple[str, ...]:
    """The modules holding the tensor, outermost first."""
    return tuple(name.split(".")[:-1])


def _majority_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The deepest module that holds at least MAJORITY of `paths`."""
    from collections import Counter

    for depth in range(max(map(len, paths), default=0), 0, -1):
        counts = Counter(path[:depth] for path in paths if len(path) >= depth)
        prefix, count = counts.most_common(1)[0] if counts else ((), 0)
        if count >= MAJORITY * len(paths):
            return prefix
    return ()


def _homes(pairs, ours, theirs) -> dict[str, tuple[str, ...]]:
    """Our top-level module → their module holding most of its paired tensors' counterparts."""
    groups: dict[str, list[tuple[str, ...]]] = {}
    for i, j in pairs:
        groups.setdefault(_top(ours[i].name), []).append(_path(theirs[j].name))
    return {top: _majority_prefix(paths) for top, paths in groups.items()}


def _coherent(pairs, ours, theirs):
    """(pairs kept, strays): a stray's tensor lies outside the module its top-level module's other
    tensors went to — on our side, or on theirs."""
    home_ours, home_theirs = _homes(pairs, ours, theirs), _homes([(j, i) for i, j in pairs], theirs, ours)
    kept, strays = [], []
    for i, j in pairs:
        a, b = _path(ours[i].name), _path(theirs[j].name)
        near = _near(b, home_ours[_top(ours[i].name)]) and _near(a, home_theirs[_top(theirs[j].name)])
        (kept if near else strays).append((i, j))
    return kept, strays


def _near(path: tuple[str, ...], home: tuple[str, ...]) -> bool:
    """In the home module's parent (a sibling of the home: a block's layer scale beside its
    layers), and in the same top-level module; anywhere when there is no home."""
    common = next((k for k, (x, y) in enumerate(zip(path, home)) if x != y), min(len(path), len(home)))
    return not home or common >= max(len(home) - 1, 1)


def _top(name: str) -> str:
    return name.split(".", 1)[0] if "." in name else ""


def _fits(our: _Tensor, their: _Tensor, loose: bool) -> bool:
    if our.token() == their.token():
        return True
    roles = our.token()[0], their.token()[0]
    return loose and (roles[0] == roles[1] or "param" in roles) and our.squeezed() == their.squeezed()


def _same_role_pairs(ours, theirs, left_ours, left_theirs):
    """Unmatched tensors of the same role, paired in order: (ours, our shape, theirs, their shape)."""
    differing, rest_theirs, rest_ours = [], list(left_theirs), []
    for i in left_ours:
        j = next((j for j in rest_theirs if theirs[j].role == ours[i].role), None)
        if j is None:
            rest_ours.append(i)
        else:
            rest_theirs.remove(j)
            differing.append((ours[i].name, ours[i].shape, theirs[j].name, theirs[j].shape))
    return differing, rest_ours, rest_theirs


def _mismatch_text(report: LoadReport, ours, theirs, left_ours, left_theirs) -> str:
    problems = [f"{a} {_shape(sa)} does not line up with {b} {_shape(sb)}" for a, sa, b, sb in report.differing]
    problems += [f"{ours[i].name} {_shape(ours[i].shape)} does not line up with any tensor of the source"
                 for i in left_ours]
    problems += [f"{_short(theirs[j].name)} {_shape(theirs[j].shape)} (source) does not line up with any tensor "
                 f"of the model" for j in left_theirs]
    more = f"; and {len(problems) - MAX_LISTED_TENSORS} more" if len(problems) > MAX_LISTED_TENSORS else ""
    return (f"{plural(len(problems), 'tensor')} unmatched ({len(report.loaded)} of {len(ours)} matched): "
            + "; ".join(problems[:MAX_LISTED_TENSORS]) + more)


def _role(name: str) -> str:
    return name.rsplit(".", 1)[-1]
