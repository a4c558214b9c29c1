"""RFA, robust federated aggregation by the geometric median (Pillutla, Kakade, Harchaoui,
IEEE TSP 2022).

The aggregate is the weighted geometric median
v* = argmin_v sum_i alpha_i ||v - w_i||, alpha_i = n_i / n, computed with the
smoothed Weiszfeld iteration (``rfa.iterations`` steps, nu = 1e-6):

    beta_i = alpha_i / max(nu, ||v - w_i||),   v <- sum_i beta_i w_i / sum_i beta_i,

starting from the weighted mean. One client can move the geometric median
only by a bounded amount, however large its update.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg, Strategy

from fedsec.config import Config, MethodParams, param
from fedsec.params import flatten, unflatten
from fedsec.protocol import arrays_of, metrics_of
from strategies.registry import STRATEGIES, sampling_kwargs

SMOOTHING = 1e-6


def geometric_median(points: np.ndarray, weights: np.ndarray, iterations: int) -> np.ndarray:
    """Smoothed Weiszfeld estimate of the weighted geometric median of the rows of ``points``."""
    alpha = weights / weights.sum()
    v = alpha @ points
    for _ in range(iterations):
        beta = alpha / np.maximum(SMOOTHING, np.linalg.norm(points - v, axis=1))
        v = beta @ points / beta.sum()
    return v


class RFA(FedAvg):
    """FedAvg with the weighted mean replaced by the geometric median."""

    def __init__(self, *, iterations: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.iterations = iterations

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        records = [arrays_of(m.content) for m in valid]
        keys = list(records[0].keys())
        points = np.stack([flatten(r, keys) for r in records])
        weights = np.array([float(metrics_of(m.content)[self.weighted_by_key])
                            for m in valid])
        arrays = unflatten(geometric_median(points, weights, self.iterations), records[0])
        return arrays, self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)


@dataclass
class RFAParams(MethodParams):
    section = "rfa"
    renamed = {"strategy.rfa_iterations": "rfa.iterations"}  # keys before fedsec 0.2
    iterations: int = param(10, "smoothed Weiszfeld iterations")

    def check(self, cfg: Config) -> None:
        self.positive("iterations")


@STRATEGIES.register("rfa", params=RFAParams)
def rfa(cfg: Config) -> Strategy:
    return RFA(**sampling_kwargs(cfg), iterations=cfg.rfa.iterations)
