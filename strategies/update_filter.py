"""The base of fedsec's server defenses: a strategy wrapper that screens or rewrites updates.

Like Flower's differential-privacy wrappers, an :class:`UpdateFilter` holds an
inner strategy (any base, FedGLAD-wrapped or not) and delegates everything to
it, except that in ``aggregate_train`` it first turns the replies into the
matrix of updates Delta_i = w_i - w (one row per client, flattened over the
travelling tensors, which for a PEFT model are only the adapters and the
head), lets :meth:`screen` drop, rescale or reweight them, writes the result
back into the replies and lets the inner strategy aggregate. :meth:`finish`
may then post-process the aggregate (e.g. add noise). Rejected clients are
reported as the train metric ``defense-rejected`` (partition ids), which the
server loop scores against the known malicious ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import Strategy

from fedsec.config import Config
from fedsec.params import flatten, unflatten
from fedsec.registry import Registry
from strategies.wrapper import StrategyWrapper

IDENTITY_KEY = "client"  # the ConfigRecord every fedsec client reply carries (fedsec.client_app)
REJECTED_KEY = "defense-rejected"
WEIGHT_KEY = "num-examples"


@dataclass
class Screened:
    """The updates to aggregate: rows of ``updates`` and ``weights`` where ``keep``."""

    updates: np.ndarray
    weights: np.ndarray
    keep: np.ndarray


def partition_id(content: RecordDict) -> int:
    """The partition id a fedsec client reply reports (-1 if none)."""
    identity = content.get(IDENTITY_KEY)
    return int(identity["partition-id"]) if isinstance(identity, ConfigRecord) else -1


class UpdateFilter(StrategyWrapper):
    """Wrap ``inner``; subclasses implement :meth:`screen` (and optionally :meth:`finish`)."""

    def screen(self, server_round: int, updates: np.ndarray, weights: np.ndarray, ids: list[int]) -> Screened:
        """Decide what the inner strategy aggregates."""
        raise NotImplementedError

    def finish(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        """Post-process the aggregated model (identity here)."""
        return arrays

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if not replies or self.current is None:
            return self.inner.aggregate_train(server_round, replies)
        keys = list(self.current.keys())
        start = flatten(self.current, keys)
        records = [next(iter(r.content.array_records.items())) for r in replies]
        updates = np.stack([flatten(record, keys) - start for _, record in records])
        weights = np.array([float(next(iter(r.content.metric_records.values()))[WEIGHT_KEY]) for r in replies])
        ids = [partition_id(r.content) for r in replies]
        result = self.screen(server_round, updates, weights, ids)
        kept = []
        for reply, (name, _), update, weight, keep in zip(replies, records, result.updates, result.weights,
                                                          result.keep):
            if keep:
                reply.content[name] = unflatten(start + update, self.current)
                next(iter(reply.content.metric_records.values()))[WEIGHT_KEY] = float(weight)
                kept.append(reply)
        arrays, metrics = self.inner.aggregate_train(server_round, kept) if kept else (None, None)
        if arrays is not None:
            arrays = self.finish(server_round, arrays)
        metrics = MetricRecord(dict(metrics or {}))
        rejected = sorted(set(int(i) for i, keep in zip(ids, result.keep) if not keep))
        previous = metrics.get(REJECTED_KEY, [])
        metrics[REJECTED_KEY] = sorted(set(previous) | set(rejected))
        return arrays, metrics


# config name -> (inner strategy, config) -> wrapped strategy
DefenseBuilder = Callable[[Strategy, Config], Strategy]
DEFENSES: Registry[DefenseBuilder | None] = Registry("server defense")
DEFENSES.register("none")(None)
