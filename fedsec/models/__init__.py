"""Models: a registry of builders plus any Hugging Face model by name or path."""

from __future__ import annotations

import torch
from torch import nn

from fedsec.config import ConfigError, DataConfig, ModelConfig
from fedsec.data import Splits
from fedsec.models import causal_lm, cnn, seq2seq, text  # noqa: F401  (register the builders)
from fedsec.models.registry import MODELS
from fedsec.resources import check_pretrained


def build_model(cfg: ModelConfig, data: DataConfig, splits: Splits, seed: int) -> nn.Module:
    """Build the model of ``model.name``; ``seed`` fixes every random initialisation."""
    torch.manual_seed(seed)
    if cfg.quantization != "none" and splits.modality != "instruction":
        raise ConfigError(f"model.quantization={cfg.quantization} is for instruction tuning of causal LMs; "
                          f"data.name={data.name} is {splits.modality} data")
    if cfg.name in MODELS:
        model = MODELS[cfg.name](cfg, data, splits)
    else:
        check_pretrained(cfg.name, list(MODELS))
        if splits.modality == "translation":
            model = seq2seq.pretrained_translator(cfg.name, cfg, data)
        elif splits.modality == "instruction":
            model = causal_lm.pretrained_instruction_model(cfg.name, cfg, data)
        else:
            model = text.pretrained(cfg.name, cfg, data, splits)
    if cfg.gradient_checkpointing and not any(getattr(m, "gradient_checkpointing", False) is True
                                              for m in model.modules()):
        raise ConfigError(f"model.gradient_checkpointing=true: model.name={cfg.name} does not checkpoint "
                          "(Hugging Face classifiers and causal LMs do); set it to false")
    if cfg.extra_classifier:
        add_extra_classifier(model)
    return model


def add_extra_classifier(model: nn.Module) -> None:
    """Give ``model`` a second head ``extra`` beside ``fc`` (PyTorch's default ``nn.Linear``
    initialisation, as RedGrape's official ``bias_attractor``).

    ``model(...)`` (inference, evaluation) keeps using ``fc`` alone; a training
    step that wants the sum computes ``fc(h) + extra(h)`` from ``model.features``.
    """
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear) or not hasattr(model, "features"):
        raise ConfigError("model.extra_classifier needs a model whose features() feed a linear `fc` head "
                          "(e.g. model.name=cnn)")
    model.extra = nn.Linear(fc.in_features, fc.out_features)


__all__ = ["MODELS", "add_extra_classifier", "build_model"]
