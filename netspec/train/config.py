"""The optional `train:` section of a spec: defaults for `netspec train` (CLI flags override)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, confloat, conint, field_validator, model_validator
from pydantic_core import PydanticCustomError

from netspec.errors import OptionError
from netspec.progress import plural

# Bounds on every setting, from a spec's `train:` and from `netspec train` flags alike (a flag's
# error names the flag). Each keeps a typo from becoming a fork bomb, an allocation the machine
# cannot make or a run that never ends; each is far beyond any real training.
MAX_EPOCHS = 100_000  # ImageNet recipes use ~600; also bounds warmup_epochs and step_size
MAX_BATCH_SIZE = 65_536  # the exported models' dynamic batch axis has the same upper bound
MAX_LR = 100.0  # every optimiser here diverges long before; catches `1e3` typed for `1e-3`
MAX_WEIGHT_DECAY = 10.0  # usual values are 1e-5..0.3; above 10 the weights are zeroed each step
MAX_PAD = 64  # augmentation pads every batch on the device: the padded copy grows with (H + 2·pad)²
MAX_SEED = 2**32 - 1  # numpy's seed range; seed·1,000,003 + epoch must stay inside torch's 64 bits
MAX_WORKERS = 64  # DataLoader workers are processes: more is a fork bomb, not a speed-up
MAX_STEPS = 10**9  # checkpoint_every: more steps than any run takes
MAX_CLIP_GRAD = 1e6  # clip_grad: usual values are 0.1..10; catches a unit or exponent typo

# The optimisers' own default weight decay (torch's): AdamW's decoupled decay is part of what it is.
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 0.01}


def _finite(**bounds):
    """A float in bounds; inf and nan are refused (pydantic allows them by default)."""
    return confloat(allow_inf_nan=False, **bounds)


class Augment(BaseModel):
    """Per-batch augmentation, applied on the training device."""

    model_config = ConfigDict(extra="forbid", strict=True)

    pad: conint(ge=0, le=MAX_PAD) = Field(
        0, description="zero-pad by this many pixels, then random-crop back (CIFAR: 4)")
    flip: bool = Field(False, description="random horizontal flip (not for digits!)")
    normalize: bool = Field(True, description="subtract the training set's per-channel mean, divide by its std")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    data: Optional[str] = Field(
        None, description="mnist | fashion_mnist | cifar10 | cifar100 | digits | folder:PATH | synthetic")
    data_root: Optional[str] = Field(None, description="where datasets are downloaded (default ~/.cache/netspec)")
    epochs: conint(gt=0, le=MAX_EPOCHS) = Field(10, description="passes over the training data")
    batch_size: conint(gt=0, le=MAX_BATCH_SIZE) = Field(
        128, description="samples per optimiser step (global, over all processes)")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adam", description="the optimiser")
    lr: _finite(gt=0, le=MAX_LR) = Field(1e-3, description="peak learning rate")
    momentum: _finite(ge=0, lt=1) = Field(0.9, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (sgd with momentum > 0)")
    weight_decay: Optional[_finite(ge=0, le=MAX_WEIGHT_DECAY)] = Field(
        None, description="L2 penalty (decoupled for adamw); default: the optimiser's own (torch's): 0 for sgd and "
        "adam, 0.01 for adamw")
    schedule: Literal["none", "step", "cosine", "onecycle", "warmup"] = Field(
        "none", description="learning-rate schedule, per step, equal to torch's: `step` = StepLR, `cosine` = "
        "CosineAnnealingLR to 0, `onecycle` = OneCycleLR with its defaults (momentum not cycled), `warmup` = "
        "the warm-up, then constant")
    step_size: conint(gt=0, le=MAX_EPOCHS) = Field(
        30, description="`step`: epochs between decays (counted after the warm-up)")
    gamma: _finite(gt=0, le=1) = Field(0.1, description="`step`: decay factor")
    warmup_epochs: _finite(ge=0, le=MAX_EPOCHS) = Field(
        0.0, validate_default=True, description="linear warm-up over W = warmup_epochs × steps per epoch steps "
        "(rounded, halves up), from peak/W to the peak; then the schedule from its start (torch's "
        "SequentialLR(LinearLR, ...)); not with `onecycle`, which warms up on its own")
    label_smoothing: _finite(ge=0, lt=1) = Field(
        0.0, description="cross-entropy label smoothing; the optimiser minimises the smoothed loss, while the "
        "train and validation losses logged are both plain cross-entropy")
    augment: Augment = Field(default_factory=Augment, description="per-batch augmentation")
    seed: conint(ge=0, le=MAX_SEED) = Field(0, description="seeds weights, data order and augmentation")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available")
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="mixed precision (fp16 needs CUDA)")
    channels_last: Union[bool, Literal["auto"]] = Field(
        "auto", description="NHWC memory format; auto = on when the spec has convolutions (faster on CPU and GPU)")
    compile: bool = Field(False, description="torch.compile the model")
    workers: conint(ge=0, le=MAX_WORKERS) = Field(2, description="DataLoader workers (image folders only)")
    checkpoint_every: conint(ge=0, le=MAX_STEPS) = Field(
        0, description="also checkpoint every N steps (0: each epoch end)")
    tensorboard: bool = Field(
        False, description="write TensorBoard event files in RUN/tensorboard: per epoch the losses, accuracies "
        "(top-5 with ≥ 10 classes) and learning rate; the train loss every --log-every steps")
    log_every: conint(ge=0, le=MAX_STEPS) = Field(
        50, description="with --tensorboard: log the train loss every N optimiser steps (0: per epoch only)")
    patience: conint(ge=0, le=MAX_EPOCHS) = Field(
        0, description="stop early once N epochs in a row bring no better validation accuracy (0: never); "
        "a resumed run continues the count")
    clip_grad: Optional[_finite(gt=0, le=MAX_CLIP_GRAD)] = Field(
        None, description="clip the gradients' total L2 norm to X before each optimiser step (torch's "
        "clip_grad_norm_; unscaled first with --amp fp16); default: no clipping")

    @model_validator(mode="after")
    def _optimizers_own_weight_decay(self) -> "TrainConfig":
        """weight_decay None → the optimiser's default, without marking it as given: a spec's
        `train:` section that leaves it out must still let `--optimizer adamw` bring AdamW's."""
        if self.weight_decay is None:
            self.weight_decay = DEFAULT_WEIGHT_DECAY[self.optimizer]
            self.model_fields_set.discard("weight_decay")
        return self

    # The checks below compare settings with each other, so they run only on the settings a run
    # trains with (complete_config); a spec's `train:` alone may be completed by flags.
    @field_validator("nesterov")
    @classmethod
    def _nesterov_needs_sgd_momentum(cls, nesterov: bool, info: ValidationInfo) -> bool:
        if nesterov and _complete(info, "optimizer", "momentum"):
            if info.data["optimizer"] != "sgd":
                raise _conflict(f"Nesterov momentum is for sgd; the optimiser is {info.data['optimizer']}")
            if info.data["momentum"] == 0:
                raise _conflict("Nesterov momentum needs momentum > 0 (torch's SGD refuses it with 0)")
        return nesterov

    @field_validator("warmup_epochs")
    @classmethod
    def _warmup_fits_the_schedule(cls, warmup: float, info: ValidationInfo) -> float:
        if not _complete(info, "schedule", "epochs"):
            return warmup
        schedule, epochs = info.data["schedule"], info.data["epochs"]
        if schedule == "onecycle" and warmup:
            raise _conflict("`onecycle` warms up on its own (the first 30 % of the run, as torch's OneCycleLR); "
                            "drop the warm-up, or use schedule cosine with it")
        if schedule == "warmup" and not warmup:
            raise _conflict("schedule `warmup` needs its length: warmup_epochs > 0 (--warmup-epochs N)")
        if warmup > epochs:
            raise _conflict(f"a warm-up of {warmup:g} epochs is longer than the run ({plural(epochs, 'epoch')})")
        return warmup


COMPLETE = "complete"  # the validation context of a run's settings


def complete_config(settings: dict) -> TrainConfig:
    """The settings a run trains with (a spec's `train:` merged with the flags), checked
    against each other too. Raises pydantic's ValidationError."""
    return TrainConfig.model_validate(settings, context={COMPLETE: True})


def _complete(info: ValidationInfo, *needed: str) -> bool:
    """Validating a run's settings, and the fields compared with passed their own checks."""
    return bool(info.context and info.context.get(COMPLETE)) and all(k in info.data for k in needed)


def _conflict(message: str) -> PydanticCustomError:
    return PydanticCustomError("conflicting_settings", message)


def check_processes(batch_size: int, processes: int) -> None:
    """Every process of a distributed run needs at least one sample of each global batch."""
    if batch_size < processes:
        raise OptionError.at(None, "--batch-size", f"batch size {batch_size} is smaller than the {processes} "
                             "processes: each takes a share of every global batch",
                             "raise --batch-size or lower --nproc")
