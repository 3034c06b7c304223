"""Importing this package registers every layer type in `REGISTRY`."""

from netspec.layers import activation, conv, linear, merge, misc, norm, pool, se  # noqa: F401
from netspec.layers.base import REGISTRY, InferContext, Layer, LayerInfo, Shape

__all__ = ["REGISTRY", "InferContext", "Layer", "LayerInfo", "Shape"]
