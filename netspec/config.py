"""The optional `train:` section of a spec: defaults for `netspec train` (CLI flags override)."""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, confloat


class Augment(BaseModel):
    """Per-batch augmentation, applied on the training device."""

    model_config = ConfigDict(extra="forbid", strict=True)

    pad: NonNegativeInt = Field(0, description="zero-pad by this many pixels, then random-crop back (CIFAR: 4)")
    flip: bool = Field(False, description="random horizontal flip (not for digits!)")
    normalize: bool = Field(True, description="subtract the training set's per-channel mean, divide by its std")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    data: Optional[str] = Field(None, description="mnist | fashion_mnist | cifar10 | cifar100 | digits | folder:PATH | synthetic")
    data_root: Optional[str] = Field(None, description="where datasets are downloaded (default ~/.cache/netspec)")
    epochs: PositiveInt = Field(10, description="passes over the training data")
    batch_size: PositiveInt = Field(128, description="samples per optimiser step (global, over all processes)")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adam", description="the optimiser")
    lr: PositiveFloat = Field(1e-3, description="peak learning rate")
    momentum: confloat(ge=0, lt=1) = Field(0.9, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD)")
    weight_decay: confloat(ge=0) = Field(0.0, description="L2 penalty (decoupled for adamw)")
    schedule: Literal["none", "step", "cosine", "onecycle", "warmup"] = Field(
        "none", description="learning-rate schedule over the whole run")
    step_size: PositiveInt = Field(30, description="`step`: epochs between decays")
    gamma: confloat(gt=0, le=1) = Field(0.1, description="`step`: decay factor")
    warmup_epochs: confloat(ge=0) = Field(0.0, description="linear warm-up from 0 (any schedule; `warmup` = warm-up then constant)")
    label_smoothing: confloat(ge=0, lt=1) = Field(0.0, description="cross-entropy label smoothing")
    augment: Augment = Field(default_factory=Augment, description="per-batch augmentation")
    seed: int = Field(0, description="seeds weights, data order and augmentation")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available")
    amp: Literal["none", "bf16", "fp16"] = Field("none", description="mixed precision (fp16 needs CUDA)")
    channels_last: Union[bool, Literal["auto"]] = Field(
        "auto", description="NHWC memory format; auto = on when the spec has convolutions (faster on CPU and GPU)")
    compile: bool = Field(False, description="torch.compile the model")
    workers: NonNegativeInt = Field(2, description="DataLoader workers (image folders only)")
    checkpoint_every: NonNegativeInt = Field(0, description="also checkpoint every N steps (0: each epoch end)")
