"""Everything a process needs for one experiment, built once and cached.

Server and clients each call :func:`get_experiment` with the same config; the
data are loaded, the test split held out and the partitions drawn
deterministically from ``run.seed``, so every process agrees on them without
shipping data. A client featurizes only its own partition.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from fedsec.config import Config
from fedsec.data import labels_of, load_splits, partition
from fedsec.models import build_model
from fedsec.registry import RELEASES

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

Batch = dict[str, torch.Tensor]
T = TypeVar("T")


class Experiment:
    """Data, partitions and a model instance for one config."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.splits = load_splits(cfg.data, cfg.run.seed)
        self.train_split, self.parts = partition(
            self.splits.train, cfg.data, cfg.federation.num_clients, self.splits.num_classes, cfg.run.seed
        )
        model_cfg = cfg.model
        release = RELEASES[cfg.attack.release]
        if release is not None:  # every process starts from the same (e.g. weight-poisoned) release
            model_cfg = dataclasses.replace(cfg.model, name=str(release(cfg, self.splits)))
        self.model: nn.Module = build_model(model_cfg, cfg.data, self.splits, cfg.run.seed)
        self._cache: dict[Hashable, Any] = {}

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @functools.cached_property
    def class_counts(self) -> torch.Tensor:
        """Training samples per class over all partitions (after any long-tail cut)."""
        return torch.bincount(torch.as_tensor(labels_of(self.train_split)), minlength=self.num_classes)

    @functools.cached_property
    def full_model_bytes(self) -> int:
        """Bytes of every parameter and buffer of the model, trainable or frozen."""
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())

    def featurize(self, ds: Dataset) -> Batch:
        """Model inputs plus ``labels`` for a dataset."""
        data = self.model.featurize(ds)
        data["labels"] = torch.as_tensor(np.asarray(ds[:]["label"]), dtype=torch.long)
        return data

    def client_dataset(self, partition_id: int) -> Dataset:
        """The raw rows of one client's partition."""
        if not 0 <= partition_id < len(self.parts):
            raise ValueError(f"partition id {partition_id} outside 0..{len(self.parts) - 1}")
        return self.train_split.select(self.parts[partition_id])

    def client_data(self, partition_id: int) -> Batch:
        """One client's featurized training data (cached)."""
        return self.cached(("client-data", partition_id), lambda: self.featurize(self.client_dataset(partition_id)))

    @functools.cached_property
    def test_data(self) -> Batch:
        """The featurized, held-out test split."""
        return self.featurize(self.splits.test)

    def cached(self, key: Hashable, build: Callable[[], T]) -> T:
        """Memoise derived data (e.g. a client's poisoned, filtered rows) in this process."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]


@functools.lru_cache(maxsize=2)
def _cached(cfg_json: str) -> Experiment:
    return Experiment(Config.from_json(cfg_json))


def get_experiment(cfg: Config) -> Experiment:
    """The process-wide experiment for ``cfg``."""
    return _cached(cfg.to_json())
