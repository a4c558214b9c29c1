"""FoolsGold (Fung, Yoon, Beschastnikh, RAID 2020, "The Limitations of Federated Learning in
Sybil Settings").

Sybils that push the same poisoned objective send similar updates over time.
Each client i keeps the history H_i = sum of its updates (in this strategy's
state); with cs_ij the cosine similarity of H_i and H_j among this round's
clients and v_i = max_j cs_ij:

    cs_ij <- cs_ij v_i / v_j  if v_j > v_i          (pardoning)
    a_i = 1 - max_j cs_ij,  clipped to [0, 1],  a <- a / max a,  a_i = 0.99 where a_i = 1
    a_i <- clip(kappa (ln(a_i / (1 - a_i)) + 0.5), 0, 1)

and the round's aggregation weight of client i becomes a_i
(kappa = ``foolsgold.kappa``). Clients with a_i = 0 are reported as rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.serverapp.strategy import Strategy
from sklearn.metrics.pairwise import cosine_similarity

from fedsec.config import Config, MethodParams, param
from fedsec.registry import Traits
from strategies.update_filter import DEFENSES, Screened, UpdateFilter


def foolsgold_weights(histories: np.ndarray, kappa: float) -> np.ndarray:
    """FoolsGold's per-client weights a_i from the update histories (one row per client)."""
    n = len(histories)
    if n < 2:
        return np.ones(n)
    cs = cosine_similarity(histories) - np.eye(n)
    v = cs.max(axis=1)
    for i in range(n):
        for j in range(n):
            if i != j and v[j] > v[i]:
                cs[i, j] *= v[i] / v[j]
    alpha = np.clip(1 - cs.max(axis=1), 0.0, 1.0)
    if alpha.max() > 0:
        alpha = alpha / alpha.max()
    alpha[alpha == 1] = 0.99
    with np.errstate(divide="ignore"):
        logit = kappa * (np.log(alpha / (1 - alpha)) + 0.5)
    return np.clip(np.nan_to_num(logit, nan=0.0, neginf=0.0, posinf=1.0), 0.0, 1.0)


class FoolsGold(UpdateFilter):
    """Reweight updates by FoolsGold's similarity-based learning rates."""

    def __init__(self, inner: Strategy, kappa: float = 1.0) -> None:
        super().__init__(inner)
        self.kappa = kappa
        self.histories: dict[int, np.ndarray] = {}

    def screen(self, server_round: int, updates: np.ndarray, weights: np.ndarray, ids: list[int]) -> Screened:
        for pid, update in zip(ids, updates):
            self.histories[pid] = self.histories.get(pid, 0.0) + update
        alpha = foolsgold_weights(np.stack([self.histories[pid] for pid in ids]), self.kappa)
        return Screened(updates=updates, weights=alpha, keep=alpha > 0)


@dataclass
class FoolsGoldParams(MethodParams):
    section = "foolsgold"
    renamed = {"strategy.foolsgold_kappa": "foolsgold.kappa"}  # keys before fedsec 0.2
    kappa: float = param(1.0, "confidence of the logit weighting kappa")

    def check(self, cfg: Config) -> None:
        self.positive("kappa")


@DEFENSES.register("foolsgold", params=FoolsGoldParams, traits=Traits(global_model=True))
def foolsgold(inner: Strategy, cfg: Config) -> Strategy:
    return FoolsGold(inner, kappa=cfg.foolsgold.kappa)
