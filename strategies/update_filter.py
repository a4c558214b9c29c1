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
server loop scores against the known malicious ids (the round metric
``defense_tp`` / ``defense_fp`` registered below).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import Strategy

from fedsec.config import Config
from fedsec.metrics import headline
from fedsec.params import unflatten
from fedsec.protocol import ARRAYS, REJECTED, WEIGHT, metrics_of, partition_id, updates
from fedsec.registry import DEFENSES, ROUND_METRICS
from strategies.wrapper import StrategyWrapper


@dataclass
class Screened:
    """The updates to aggregate: rows of ``updates`` and ``weights`` where ``keep``."""

    updates: np.ndarray
    weights: np.ndarray
    keep: np.ndarray


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
        _, start, deltas = updates(replies, self.current)
        weights = np.array([float(metrics_of(r.content)[WEIGHT]) for r in replies])
        ids = [partition_id(r.content) for r in replies]
        result = self.screen(server_round, deltas, weights, ids)
        kept = []
        for reply, update, weight, keep in zip(replies, result.updates, result.weights, result.keep, strict=True):
            if keep:
                reply.content[ARRAYS] = unflatten(start + update, self.current)
                metrics_of(reply.content)[WEIGHT] = float(weight)
                kept.append(reply)
        arrays, metrics = self.inner.aggregate_train(server_round, kept) if kept else (None, None)
        if arrays is not None:
            arrays = self.finish(server_round, arrays)
        metrics = MetricRecord(dict(metrics or {}))
        rejected = sorted(set(int(i) for i, keep in zip(ids, result.keep, strict=True) if not keep))
        previous = metrics.get(REJECTED, [])
        metrics[REJECTED] = sorted(set(previous) | set(rejected))
        return arrays, metrics


# config name -> (inner strategy, config) -> wrapped strategy
DefenseBuilder = Callable[[Strategy, Config], Strategy]
DEFENSES.register("none")(None)


headline("defense_tp", "malicious updates rejected")
headline("defense_fp", "benign updates rejected")


@ROUND_METRICS.register("detection")
def detection_report(cfg: Config, reply_metrics: list[dict], train_metrics: dict,
                     malicious: set[int]) -> dict[str, int | list[int]]:
    """Score a detection-style defense's rejections (``defense-rejected``) against the known malicious ids."""
    if REJECTED not in train_metrics:
        return {}
    rejected = {int(i) for i in train_metrics.pop(REJECTED)}
    return {"defense_rejected": sorted(rejected), "defense_tp": len(rejected & malicious),
            "defense_fp": len(rejected - malicious)}
