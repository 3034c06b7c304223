"""Importing this package registers every layer type in `REGISTRY`."""

from netspec.layers import activation, channels, conv, linear, merge, misc, norm, pool, se, tokens  # noqa: F401
from netspec.layers.base import REGISTRY, InferContext, Layer, LayerInfo, Shape

__all__ = ["REGISTRY", "InferContext", "Layer", "LayerInfo", "Shape"]
