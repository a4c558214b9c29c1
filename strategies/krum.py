"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017).

With n updates of which f (``krum.byzantine``) may be Byzantine, each
update Delta_i = w_i - w gets the score

    s_i = sum over its n - f - 2 nearest neighbours j of ||Delta_i - Delta_j||^2;

Krum keeps the single lowest-scoring update, Multi-Krum averages the m lowest
(``krum.keep``, default n - f) with Flower's weighted average.

Distances (as the official Krum code and ``shared/METHODS.md`` ask): computed on
the updates, in float64, as sums of squared differences. Flower's
``compute_distances`` expands ||x||^2 + ||y||^2 - 2 x.y in float32 on whole
weight vectors; at millions of parameters with ||w||^2 in the thousands its
error exceeds the distances themselves (self-distances come out negative), so
the selection is arbitrary. :class:`UpdateKrumSelection` replaces it here and in
Bulyan (``strategies/bulyan.py``) through Flower's ``selection_rule`` signature.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import MultiKrum, Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords
from scipy.spatial.distance import pdist, squareform

from fedsec.config import Config, ConfigError, MethodParams, param
from fedsec.params import flatten
from fedsec.protocol import REJECTED, arrays_of, partition_id
from strategies.registry import STRATEGIES, sampling_kwargs


def krum_scores(updates: np.ndarray, num_malicious: int) -> np.ndarray:
    """Krum score of every row of ``updates`` [n, d]: its summed squared distance to the
    n - f - 2 nearest other rows (at least 1), exact in float64."""
    distances = squareform(pdist(np.asarray(updates, dtype=np.float64), "sqeuclidean"))
    np.fill_diagonal(distances, np.inf)
    closest = max(1, len(updates) - num_malicious - 2)
    return np.sort(distances, axis=1)[:, :closest].sum(axis=1)


class UpdateKrumSelection:
    """Multi-Krum selection over updates w_i - w (float64); Flower's ``selection_rule`` signature.

    ``reference`` is the global model the round's clients started from; the
    strategy that owns the rule sets it in ``configure_train``.
    """

    __name__ = "update_krum_selection"  # Flower's Bulyan logs the rule by name

    def __init__(self) -> None:
        self.reference: ArrayRecord | None = None

    def __call__(self, contents: list[RecordDict], num_malicious: int, num_select: int) -> list[RecordDict]:
        if self.reference is None:
            raise RuntimeError("Krum selection before configure_train: no reference model")
        keys = list(self.reference.keys())
        start = flatten(self.reference, keys)
        updates = np.stack([flatten(arrays_of(c), keys) - start for c in contents])
        best = np.argsort(krum_scores(updates, num_malicious), kind="stable")[:num_select]
        return [contents[i] for i in best]


class ReportingMultiKrum(MultiKrum):
    """Flower's MultiKrum with exact update distances; reports the partition ids it left out
    (``defense-rejected``)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.selection = UpdateKrumSelection()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.selection.reference = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [m.content for m in valid]
        selected = self.selection(contents, self.num_malicious_nodes, self.num_nodes_to_select)
        metrics = self.train_metrics_aggr_fn(selected, self.weighted_by_key)
        chosen = {id(c) for c in selected}
        metrics[REJECTED] = sorted(partition_id(c) for c in contents if id(c) not in chosen)
        return aggregate_arrayrecords(selected, self.weighted_by_key), metrics


@dataclass
class KrumParams(MethodParams):
    """Krum's, Multi-Krum's and Bulyan's assumption on the round: n >= 2f + 3 (Bulyan: 4f + 3)."""

    section = "krum"
    renamed = {"strategy.byzantine": "krum.byzantine", "strategy.multikrum_keep": "krum.keep"}  # keys before fedsec 0.2
    byzantine: int = param(1, "f, the Byzantine clients per round the rule tolerates (Krum, Multi-Krum, Bulyan)")
    keep: int = param(0, "updates Multi-Krum averages (0: n - f)")

    def check(self, cfg: Config) -> None:
        self.require(self.byzantine >= 0, "byzantine", "must be >= 0")
        self.require(self.keep >= 0, "keep", "must be >= 0 (0: n - f)")
        n = cfg.federation.clients_per_round
        needs = (4 if cfg.strategy.name == "bulyan" else 2) * self.byzantine + 3
        if n < needs:
            raise ConfigError(f"strategy.name={cfg.strategy.name} with krum.byzantine={self.byzantine} needs at "
                              f"least {needs} clients per round, federation.clients_per_round={n}")


@STRATEGIES.register("krum", params=KrumParams)
def krum(cfg: Config) -> Strategy:
    return ReportingMultiKrum(**sampling_kwargs(cfg), num_malicious_nodes=cfg.krum.byzantine,
                              num_nodes_to_select=1)


@STRATEGIES.register("multikrum", params=KrumParams)
def multikrum(cfg: Config) -> Strategy:
    p = cfg.krum
    keep = p.keep or cfg.federation.clients_per_round - p.byzantine
    return ReportingMultiKrum(**sampling_kwargs(cfg), num_malicious_nodes=p.byzantine, num_nodes_to_select=keep)
