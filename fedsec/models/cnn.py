"""A small CNN for image datasets (digits 8x8, CIFAR 32x32); all parameters train."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from fedsec.config import ConfigError, DataConfig, ModelConfig
from fedsec.data import Splits
from fedsec.models.registry import MODELS
from fedsec.registry import Traits


class SmallCNN(nn.Module):
    """conv(32) -> pool -> conv(64) -> adaptive pool 2x2 -> fc(128) -> fc(classes)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4, 128),
            nn.ReLU(),
        )
        self.fc = nn.Linear(128, num_classes)

    @staticmethod
    def featurize(ds: Dataset) -> dict[str, torch.Tensor]:
        """Images as float tensors (N, C, H, W) scaled to [0, 1]."""
        images = np.stack([np.asarray(img, dtype=np.float32) for img in ds[:]["image"]])
        if images.ndim == 3:  # (N, H, W): grey
            images = images[:, None]
        elif images.shape[-1] in (1, 3):  # (N, H, W, C): PIL order
            images = images.transpose(0, 3, 1, 2)
        if images.max() > 1.0:
            images = images / 255.0
        return {"pixel_values": torch.from_numpy(np.ascontiguousarray(images))}

    hidden_size = 128

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.fc(self.body(pixel_values))

    def features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features, class logits)."""
        hidden = self.body(pixel_values)
        return hidden, self.fc(hidden)


@MODELS.register("cnn", traits=Traits(modalities=frozenset({"image"}), provides=frozenset({"features", "linear_head"})))
def cnn(cfg: ModelConfig, data: DataConfig, splits: Splits) -> SmallCNN:
    """The small CNN; it has no PEFT variant."""
    if cfg.peft != "none":
        raise ConfigError("model.name='cnn' trains all its parameters: set model.peft=none")
    if splits.modality != "image":
        raise ConfigError(f"model.name='cnn' needs an image dataset, not data.name='{data.name}'")
    channels = SmallCNN.featurize(splits.train.select([0]))["pixel_values"].shape[1]
    return SmallCNN(channels, splits.num_classes)
