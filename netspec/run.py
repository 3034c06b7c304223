"""A run directory, loaded once per command, and what a command exports or benchmarks.

`Run` is what `netspec train` wrote (netspec/train/rundir.py describes the files): config.json,
the spec as trained (parsed once, when first used), the checkpoints and the model card they
carry. Resume, eval, export, infer and bench all read a run through it. `load_source` turns a
spec or a run into the format-neutral `Source` every exporter takes: a model in eval mode and its
model card (netspec.modelcard). `netspec.load_run` (netspec/predict.py) is the Python API's run:
this Run with a `predict` that classifies images as `netspec infer` does.

Everything in a run directory may come from someone else: each problem is an error naming the
file (a RunError for the run, a ModelFileError for a weights file), never an internal error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from netspec.errors import Diagnostic, NetspecError, OptionError, RunError
from netspec.modelcard import ModelCard

WEIGHTS = ("best", "last")  # the weights files a run holds: <name>.safetensors


@dataclass
class Run:
    """A run directory: its config, its spec as trained and, once `load_weights` is called, a
    model with the chosen weights and their model card."""

    directory: Path
    config: dict  # config.json, checked
    overrides: list[str] = field(default_factory=list)  # the `--set` values it was trained with
    weights: str | None = None
    model: Any = None  # torch.nn.Module in eval mode, after load_weights
    meta: dict = field(default_factory=dict)  # of the weights file: epoch, step, labels, mean/std, ...
    card: ModelCard | None = None

    def __repr__(self) -> str:  # not the dataclass's: that prints the whole config and model
        return f"{type(self).__name__}({str(self.directory)!r}, weights={self.weights!r})"

    @classmethod
    def open(cls, run_dir: Path, where: str = "eval", overrides: list[str] | None = None) -> "Run":
        """The run at `run_dir` (its config.json read and checked; the spec when first used)."""
        from netspec.train.rundir import read_config

        run_dir = Path(run_dir)
        if not is_run_dir(run_dir):
            raise RunError.at(None, where, f"{run_dir} is not a netspec run directory (no config.json)")
        config = read_config(run_dir)
        return cls(run_dir, config, config.get("overrides", overrides or []))

    @cached_property
    def spec(self):
        """The run's own copy of its spec, parsed once."""
        from netspec.train.rundir import load_run_spec

        return load_run_spec(self.directory, self.overrides)

    def checkpoint(self, weights: str) -> Path:
        return checkpoint_path(self.directory, weights)

    def exported_models(self, suffix: str) -> list[Path]:
        return exported_models(self.directory, suffix)

    @property
    def labels(self) -> list[str] | None:
        """The class of each output, as training mapped them (saved with the weights)."""
        return self.card.labels if self.card else None

    @property
    def trained_on(self) -> str:
        return str(self.config["train"].get("data"))

    def load_weights(self, weights: str = "best") -> "Run":
        """Build the spec's model and load `weights` into it, checked: the file's header and model
        card, and that its tensors fit the spec. Returns the run itself."""
        import netspec
        from netspec.compile.weights import SpecMismatch
        from netspec.train.checkpoint import damaged, is_intact, load_weights, read_checked

        check_weights_name(weights)
        path = self.checkpoint(weights)
        if not path.exists():
            raise RunError.at(None, "--weights", f"{path} does not exist", "the run has no checkpoint yet")
        spec = self.spec
        model = netspec.build(spec)
        channels = spec.input[0]
        try:
            meta = read_checked(path, model, channels)
            model.load_state_dict(load_weights(path))
        except NetspecError as error:
            other = WEIGHTS[1 - WEIGHTS.index(weights)]
            if isinstance(error, SpecMismatch) or not is_intact(self.checkpoint(other), model, channels):
                raise  # the spec does not fit (every checkpoint alike), or nothing else is intact
            d = error.diagnostics[0]
            raise type(error)([Diagnostic(d.mark, d.where, d.message, f"{other}.safetensors is intact: "
                                          f"use --weights {other}")]) from None
        stored = ModelCard.from_checkpoint(meta, path, channels)
        labels, scores = stored.labels, model.netspec["output"]
        if labels is not None and [len(labels)] != list(scores):
            raise damaged(path, f"its metadata names {len(labels)} classes for {'×'.join(map(str, scores))} outputs")
        self.weights, self.model, self.meta = weights, model.eval(), meta
        # labels: the classes training mapped the outputs to, which training checked against
        # the spec's `labels:`
        self.card = ModelCard.of_spec(spec, labels, stored.mean, stored.std, stored.normalize)
        return self

    def validation_data(self, data_name: str | None = None, data_root: str | None = None):
        """The validation split (of the training dataset unless `data_name`), normalised as in
        training: with the mean/std saved with the weights, not recomputed."""
        from netspec.data import load_data

        train = self.config["train"]
        root = data_root or train.get("data_root")
        data = load_data(data_name or train["data"], self.spec.input, Path(root) if root else None, val_only=True)
        data.mean, data.std = tuple(self.card.mean), tuple(self.card.std)
        return data


def is_run_dir(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").exists()


def checkpoint_path(run_dir: Path, weights: str) -> Path:
    """`best` or `last` → the weights file in the run."""
    return Path(run_dir) / f"{weights}.safetensors"


def exported_models(run_dir: Path, suffix: str) -> list[Path]:
    """The model files of one format (`.onnx`) exported into the run, by name."""
    return sorted(p for p in Path(run_dir).iterdir() if p.suffix == suffix and p.is_file())


def load_run(run_dir: Path, weights: str = "best") -> Run:
    """A run directory with its `weights` loaded: config.json, the spec as trained, and the
    weights file (whose tensors must fit that spec). Each problem is an error naming the file."""
    check_weights_name(weights)  # before anything is read, as the option it is
    return Run.open(run_dir).load_weights(weights)


def check_weights_name(weights) -> None:
    """`best` or `last`, else an OptionError for --weights (the `weights=` argument in Python)."""
    if weights not in WEIGHTS:
        raise OptionError.at(None, "--weights", f"expected one of {', '.join(WEIGHTS)}, got {ascii(str(weights)[:40])}")


@dataclass
class Source:
    """What is exported: the model (eval mode) and its model card; `run` when it was trained."""

    model: Any  # torch.nn.Module
    card: ModelCard
    run: Run | None = None
    notes: list[str] = field(default_factory=list)  # how its weights were had (--init-from)
    spec: Any = None  # the Spec it was built from (a run's own copy for a run)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def input_shape(self) -> list:
        return self.card.input_shape

    def validation_images(self, count: int):
        """Up to `count` uint8 validation images of the run (None for a spec), or the reason
        they cannot be had as a NetspecError."""
        import numpy as np

        if self.run is None:
            return None
        data = self.run.validation_data()
        if hasattr(data.val, "images"):
            return data.val.images[:count].numpy()
        return np.stack([data.val[i][0].numpy() for i in range(min(count, len(data.val)))])


def load_source(path: Path, weights: str = "best", seed: int = 0, input: str | None = None,
                init_from: str | None = None, set_vars: list[str] | None = None) -> Source:
    """A spec (weights from its `init:`, seeded, or from `init_from` = torchvision:NAME; `input`
    and `set_vars` may override its size and vars) or a run directory (its trained weights)."""
    import torch

    import netspec
    from netspec.train.classes import check_spec_labels

    path = Path(path)
    if path.is_dir():
        if init_from is not None:
            raise OptionError.at(None, "--init-from", f"{path} is a run directory, which exports its own weights",
                                 "--init-from torchvision:NAME is for a spec")
        for option, given in (("--input", input), ("--set", set_vars)):
            if given:  # a run's model is the one it trained: its size and vars are its own
                raise OptionError.at(None, option, f"{path} is a run directory, whose model keeps the input and "
                                     "vars it was trained with", f"{option} is for a spec")
        run = load_run(path, weights)
        return Source(run.model, run.card, run, spec=run.spec)
    spec = netspec.load(path, overrides=set_vars or [], input=input)
    torch.manual_seed(seed)
    model, constraints = _build_spec(spec, path, set_vars)
    labels = check_spec_labels(spec, tuple(model.netspec["output"]))
    if init_from is None:
        return Source(model, ModelCard.of_spec(spec, labels, input_constraints=constraints), spec=spec)
    return _pretrained_source(spec, model, labels, init_from, constraints)


def _build_spec(spec, path: Path, set_vars: list[str] | None):
    """(model, input constraints): a symbolic spec (`input: [3, H, W]`) is built at one allowed
    size, which gives every size the same weights (netspec.exporters.dynamic refuses a spec whose
    weights depend on the sizes); its card's constraints say which sizes the model takes."""
    import netspec

    if not spec.symbols:
        return netspec.build(spec).eval(), None
    from netspec.exporters.dynamic import of_spec

    dynamic = of_spec(spec)
    concrete = netspec.load(path, overrides=set_vars or [], input="x".join(map(str, dynamic.example)))
    return netspec.build(concrete).eval(), dynamic.record()


def _pretrained_source(spec, model, labels: list[str] | None, init_from: str,
                       constraints: dict | None = None) -> Source:
    """The spec's model with torchvision's pretrained weights; the model card's labels are the
    weights' categories when the spec names none and the output width is their count, its
    preprocessing torchvision's mean and std for them."""
    from netspec.compile.pretrained import initialise, is_pretrained

    if not is_pretrained(init_from):
        raise OptionError.at(None, "--init-from", f"expected torchvision:NAME, got {ascii(str(init_from)[:80])}",
                             "to export trained weights, export the run directory")
    loaded = initialise(model, init_from)
    model.eval()
    categories, output = loaded.categories, list(model.netspec["output"])
    if labels is None and categories and output == [len(categories)]:
        labels = categories
    mean, std = loaded.normalisation() or (None, None)
    if mean is not None and len(mean) != spec.input[0]:  # another number of channels: not its statistics
        mean, std = None, None
    card = ModelCard.of_spec(spec, labels, mean, std, normalize=mean is not None, input_constraints=constraints)
    return Source(model, card, notes=[loaded.note()], spec=spec)
