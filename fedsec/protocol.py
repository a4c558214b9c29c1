"""fedsec's message protocol: the record keys of instructions and replies, and their accessors.

An instruction (ServerApp -> ClientApp) carries

- ``"arrays"`` (:data:`ARRAYS`): the travelling tensors of the model;
- ``"config"`` (:data:`CONFIG`): a ConfigRecord with the experiment as JSON
  (:data:`EXPERIMENT`), Flower's ``server-round`` and, in training rounds, the
  number of sampled clients and of attackers among them (:data:`ROUND_CLIENTS`,
  :data:`ROUND_ATTACKERS`);
- optionally ``"side"`` (:data:`SIDE`): an extra ArrayRecord of a method
  (RedGrape's prototypes, CReFF's classifier, a personal attractor).

A reply carries the same ``"arrays"`` and ``"side"``, a MetricRecord ``"metrics"``
(:data:`METRICS`, with the example count :data:`WEIGHT`, data-filter counts under
:data:`FILTER_PREFIX`) and a ConfigRecord ``"client"`` (:data:`IDENTITY`) with the
partition id. Strategies and hooks read records through the functions below,
never by position.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedsec.params import flatten

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
SIDE = "side"
IDENTITY = "client"
EXPERIMENT = "fedsec.config"
SERVER_ROUND = "server-round"
ROUND_CLIENTS = "round-clients"
ROUND_ATTACKERS = "round-attackers"
WEIGHT = "num-examples"
REJECTED = "defense-rejected"  # train metric of a screening defense: the partition ids it rejected
FILTER_PREFIX = "filter-"


def arrays_of(content: RecordDict) -> ArrayRecord:
    """The model tensors of an instruction or a reply."""
    return content.array_records[ARRAYS]


def metrics_of(content: RecordDict) -> MetricRecord:
    """The reply's metrics."""
    return content.metric_records[METRICS]


def weight_of(content: RecordDict) -> float:
    """The reply's aggregation weight (its example count)."""
    return float(metrics_of(content)[WEIGHT])


def partition_id(content: RecordDict) -> int:
    """The partition id a fedsec client reply reports (-1 if none)."""
    identity = content.get(IDENTITY)
    return int(identity["partition-id"]) if isinstance(identity, ConfigRecord) else -1


def updates(replies: list[Message], reference: ArrayRecord) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, flattened reference w, one row w_i - w per reply): the updates of a round."""
    keys = list(reference.keys())
    start = flatten(reference, keys)
    rows = [flatten(arrays_of(r.content), keys) - start for r in replies]
    return keys, start, np.stack(rows) if rows else np.zeros((0, start.size))
