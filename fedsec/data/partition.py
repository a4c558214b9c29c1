"""Client partitions of the training split, built on flwr-datasets partitioners.

- ``iid``: shuffled equal shards (``IidPartitioner`` on a seeded shuffle);
- ``dirichlet``: per class, client shares ~ Dir(alpha) (``DirichletPartitioner``);
- ``pathological``: each client holds ``classes_per_client`` classes
  (``PathologicalPartitioner``);
- ``longtail``: the training split is first cut to a long-tailed class
  distribution, n_c = floor(n_max * IF^(-c / (C - 1))) for classes c = 0..C-1
  (n_max the size of the smallest class, IF = ``imbalance_factor``), then split
  with ``DirichletPartitioner``;
- ``natural``: client i holds the rows of label i (``NaturalIdPartitioner``), e.g.
  one language pair per client in translation.
"""

from __future__ import annotations

import warnings

import numpy as np
from datasets import Dataset
from flwr_datasets.partitioner import (
    DirichletPartitioner,
    IidPartitioner,
    NaturalIdPartitioner,
    PathologicalPartitioner,
)
from flwr_datasets.partitioner.partitioner import Partitioner

from fedsec.config import ConfigError, DataConfig
from fedsec.data.registry import labels_of

_INDEX = "__fedsec_index"


def longtail_counts(class_counts: list[int], imbalance_factor: float) -> list[int]:
    """Per-class sizes decaying geometrically from the head to the tail class."""
    num_classes = len(class_counts)
    head = min(class_counts)
    if num_classes == 1:
        return [head]
    return [
        max(1, int(head * imbalance_factor ** (-c / (num_classes - 1)))) for c in range(num_classes)
    ]


def make_longtail(ds: Dataset, num_classes: int, imbalance_factor: float, seed: int) -> Dataset:
    """Subsample ``ds`` to the long-tailed class sizes of :func:`longtail_counts`."""
    labels = labels_of(ds)
    counts = [int((labels == c).sum()) for c in range(num_classes)]
    if min(counts) == 0:
        raise ConfigError("data.partitioner='longtail' needs every class in the training split")
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(np.flatnonzero(labels == c), n, replace=False)
        for c, n in enumerate(longtail_counts(counts, imbalance_factor))
    ]
    return ds.select(np.sort(np.concatenate(keep)))


def _partitioner(cfg: DataConfig, num_clients: int, seed: int) -> Partitioner:
    if cfg.partitioner == "iid":
        return IidPartitioner(num_partitions=num_clients)
    if cfg.partitioner == "pathological":
        return PathologicalPartitioner(
            num_partitions=num_clients,
            partition_by="label",
            num_classes_per_partition=cfg.classes_per_client,
            class_assignment_mode=cfg.class_assignment,
            seed=seed,
        )
    return DirichletPartitioner(
        num_partitions=num_clients,
        partition_by="label",
        alpha=cfg.alpha,
        min_partition_size=cfg.min_partition_size,
        self_balancing=False,
        seed=seed,
    )


def _natural(indexed: Dataset, num_clients: int, num_classes: int) -> list[np.ndarray]:
    """Client i gets the rows of label i."""
    if num_clients != num_classes:
        raise ConfigError(f"data.partitioner='natural' gives one client per label: set federation.num_clients="
                          f"{num_classes}, not {num_clients}")
    partitioner = NaturalIdPartitioner(partition_by="label")
    partitioner.dataset = indexed
    if partitioner.num_partitions != num_classes:
        raise ConfigError(f"data.partitioner='natural': {partitioner.num_partitions} labels occur in the training "
                          f"split, expected {num_classes}")
    by_label = {int(label): pid for pid, label in partitioner.partition_id_to_natural_id.items()}
    return [np.sort(np.asarray(partitioner.load_partition(by_label[c])[_INDEX])) for c in range(num_clients)]


def partition(
    train: Dataset, cfg: DataConfig, num_clients: int, num_classes: int, seed: int
) -> tuple[Dataset, list[np.ndarray]]:
    """Return the (possibly long-tailed) training split and each client's row indices."""
    if cfg.partitioner == "longtail":
        train = make_longtail(train, num_classes, cfg.imbalance_factor, seed)
    if len(train) < num_clients:
        raise ConfigError(
            f"{len(train)} training samples cannot be split over federation.num_clients={num_clients}"
        )
    indexed = train.add_column(_INDEX, list(range(len(train))))
    if cfg.partitioner == "iid":
        indexed = indexed.shuffle(seed=seed)
    if cfg.partitioner == "natural":
        return train, _natural(indexed, num_clients, num_classes)
    partitioner = _partitioner(cfg, num_clients, seed)
    partitioner.dataset = indexed
    try:
        with warnings.catch_warnings():  # flwr-datasets warns at every Dirichlet resample
            warnings.simplefilter("ignore", UserWarning)
            parts = [np.sort(np.asarray(partitioner.load_partition(i)[_INDEX])) for i in range(num_clients)]
    except ValueError as err:  # e.g. Dirichlet cannot reach min_partition_size
        raise ConfigError(f"data.partitioner='{cfg.partitioner}' failed: {err}") from err
    return train, parts
