"""The optional `train:` section of a spec: defaults for `netspec train` (CLI flags override)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, confloat, conint

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


def _finite(**bounds):
    """A float in bounds; inf and nan are refused (pydantic allows them by default)."""
    return confloat(allow_inf_nan=False, **bounds)


class Augment(BaseModel):
    """Per-batch augmentation, applied on the training device."""

    model_config = ConfigDict(extra="forbid", strict=True)

    pad: conint(ge=0, le=MAX_PAD) = Field(0, description="zero-pad by this many pixels, then random-crop back (CIFAR: 4)")
    flip: bool = Field(False, description="random horizontal flip (not for digits!)")
    normalize: bool = Field(True, description="subtract the training set's per-channel mean, divide by its std")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    data: Optional[str] = Field(None, description="mnist | fashion_mnist | cifar10 | cifar100 | digits | folder:PATH | synthetic")
    data_root: Optional[str] = Field(None, description="where datasets are downloaded (default ~/.cache/netspec)")
    epochs: conint(gt=0, le=MAX_EPOCHS) = Field(10, description="passes over the training data")
    batch_size: conint(gt=0, le=MAX_BATCH_SIZE) = Field(128, description="samples per optimiser step (global, over all processes)")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adam", description="the optimiser")
    lr: _finite(gt=0, le=MAX_LR) = Field(1e-3, description="peak learning rate")
    momentum: _finite(ge=0, lt=1) = Field(0.9, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD)")
    weight_decay: _finite(ge=0, le=MAX_WEIGHT_DECAY) = Field(0.0, description="L2 penalty (decoupled for adamw)")
    schedule: Literal["none", "step", "cosine", "onecycle", "warmup"] = Field(
        "none", description="learning-rate schedule over the whole run")
    step_size: conint(gt=0, le=MAX_EPOCHS) = Field(30, description="`step`: epochs between decays")
    gamma: _finite(gt=0, le=1) = Field(0.1, description="`step`: decay factor")
    warmup_epochs: _finite(ge=0, le=MAX_EPOCHS) = Field(0.0, description="linear warm-up from 0 (any schedule; `warmup` = warm-up then constant)")
    label_smoothing: _finite(ge=0, lt=1) = Field(0.0, description="cross-entropy label smoothing")
    augment: Augment = Field(default_factory=Augment, description="per-batch augmentation")
    seed: conint(ge=0, le=MAX_SEED) = Field(0, description="seeds weights, data order and augmentation")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available")
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="mixed precision (fp16 needs CUDA)")
    channels_last: Union[bool, Literal["auto"]] = Field(
        "auto", description="NHWC memory format; auto = on when the spec has convolutions (faster on CPU and GPU)")
    compile: bool = Field(False, description="torch.compile the model")
    workers: conint(ge=0, le=MAX_WORKERS) = Field(2, description="DataLoader workers (image folders only)")
    checkpoint_every: conint(ge=0, le=MAX_STEPS) = Field(0, description="also checkpoint every N steps (0: each epoch end)")
