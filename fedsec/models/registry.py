"""Model registry: config name -> builder ``(ModelConfig, DataConfig, Splits) -> nn.Module``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fedsec.config import DataConfig, ModelConfig
from fedsec.data import Splits
from fedsec.registry import MODELS

ModelBuilder = Callable[[ModelConfig, DataConfig, Splits], nn.Module]
__all__ = ["MODELS", "ModelBuilder"]
