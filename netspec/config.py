"""The optional `train:` section of a spec: defaults for `netspec train` (CLI flags override)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, confloat


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    data: Optional[str] = Field(None, description="mnist | fashion_mnist | cifar10 | cifar100 | digits | folder:PATH | synthetic")
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: PositiveFloat = 1e-3
    momentum: confloat(ge=0, lt=1) = 0.9
    weight_decay: confloat(ge=0) = 0.0
