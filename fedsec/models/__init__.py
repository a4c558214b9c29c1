"""Models: a registry of builders plus any Hugging Face model by name or path."""

from __future__ import annotations

import torch
from torch import nn

from fedsec.config import DataConfig, ModelConfig
from fedsec.data import Splits
from fedsec.models import cnn, text  # noqa: F401  (register the builders)
from fedsec.models.registry import MODELS


def build_model(cfg: ModelConfig, data: DataConfig, splits: Splits, seed: int) -> nn.Module:
    """Build the model of ``model.name``; ``seed`` fixes every random initialisation."""
    torch.manual_seed(seed)
    if cfg.name in MODELS:
        return MODELS[cfg.name](cfg, data, splits)
    return text.pretrained(cfg.name, cfg, data, splits)


__all__ = ["MODELS", "build_model"]
