"""FLAME (Nguyen et al., USENIX Security 2022, "FLAME: Taming Backdoors in Federated Learning").

1. Filtering: HDBSCAN over the pairwise cosine distances of the updates, with
   min_cluster_size = n/2 + 1; clients outside the majority cluster are rejected.
2. Clipping: with S_t the median of ||Delta_i|| over all updates of the round,
   Delta_i <- Delta_i min(1, S_t / ||Delta_i||).
3. Noising: the inner strategy aggregates the admitted, clipped updates and
   Gaussian noise N(0, (lambda S_t)^2) is added to the new model's travelling
   tensors (lambda = ``flame.noise_lambda``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import Strategy
from sklearn.cluster import HDBSCAN
from sklearn.metrics.pairwise import cosine_distances

from fedsec.config import Config, MethodParams, param
from fedsec.params import flatten, unflatten
from fedsec.registry import Traits
from strategies.update_filter import DEFENSES, Screened, UpdateFilter


def majority_cluster(updates: np.ndarray) -> np.ndarray:
    """Boolean mask of the updates in HDBSCAN's largest cluster of cosine distances."""
    n = len(updates)
    if n < 3:
        return np.ones(n, dtype=bool)
    labels = HDBSCAN(min_cluster_size=n // 2 + 1, min_samples=1, metric="precomputed",
                     allow_single_cluster=True, copy=True).fit_predict(cosine_distances(updates).astype(np.float64))
    clustered = labels[labels >= 0]
    if clustered.size == 0:
        return np.ones(n, dtype=bool)
    return labels == np.bincount(clustered).argmax()


class Flame(UpdateFilter):
    """Cluster, clip to the median norm, aggregate, add noise."""

    def __init__(self, inner: Strategy, noise_lambda: float, seed: int) -> None:
        super().__init__(inner)
        self.noise_lambda = noise_lambda
        self.rng = np.random.default_rng(seed)
        self.bound = 0.0

    def screen(self, server_round: int, updates: np.ndarray, weights: np.ndarray, ids: list[int]) -> Screened:
        norms = np.linalg.norm(updates, axis=1)
        self.bound = float(np.median(norms))
        clipped = updates * np.minimum(1.0, self.bound / np.maximum(norms, 1e-12))[:, None]
        return Screened(updates=clipped, weights=weights, keep=majority_cluster(updates))

    def finish(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        if self.noise_lambda == 0:
            return arrays
        vector = flatten(arrays, list(arrays.keys()))
        return unflatten(vector + self.rng.normal(0.0, self.noise_lambda * self.bound, vector.shape), arrays)


@dataclass
class FlameParams(MethodParams):
    section = "flame"
    renamed = {"strategy.flame_lambda": "flame.noise_lambda"}  # keys before fedsec 0.2
    noise_lambda: float = param(0.001, "lambda: noise sigma = lambda x the clipping bound (median norm)")

    def check(self, cfg: Config) -> None:
        self.require(self.noise_lambda >= 0, "noise_lambda", "must be >= 0")


@DEFENSES.register("flame", params=FlameParams, traits=Traits(global_model=True))
def flame(inner: Strategy, cfg: Config) -> Strategy:
    return Flame(inner, noise_lambda=cfg.flame.noise_lambda, seed=cfg.run.seed)
