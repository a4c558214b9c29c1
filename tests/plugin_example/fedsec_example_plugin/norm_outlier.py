"""Norm-outlier screen: reject the updates whose norm exceeds ``norm_outlier.factor`` times the
round's median update norm,

    keep_i = ||Delta_i|| <= f median_j ||Delta_j||

(a minimal server defense, the example of docs/extending.md: an
``UpdateFilter`` sees the round's updates as rows and decides what the wrapped strategy
aggregates; its rejections are scored against the known attackers as ``defense_tp`` /
``defense_fp``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.serverapp.strategy import Strategy

from fedsec.config import Config, MethodParams, param
from fedsec.registry import Traits
from strategies.update_filter import DEFENSES, Screened, UpdateFilter


@dataclass
class NormOutlierParams(MethodParams):
    section = "norm_outlier"
    factor: float = param(3.0, "f: updates longer than f x the median norm are rejected")

    def check(self, cfg: Config) -> None:
        self.require(self.factor > 1.0, "factor", "must be > 1")


class NormOutlier(UpdateFilter):
    def __init__(self, inner: Strategy, factor: float) -> None:
        super().__init__(inner)
        self.factor = factor

    def screen(self, server_round: int, updates: np.ndarray, weights: np.ndarray, ids: list[int]) -> Screened:
        norms = np.linalg.norm(updates, axis=1)
        return Screened(updates=updates, weights=weights, keep=norms <= self.factor * np.median(norms))


@DEFENSES.register("norm_outlier", params=NormOutlierParams, traits=Traits(global_model=True))
def norm_outlier(inner: Strategy, cfg: Config) -> Strategy:
    return NormOutlier(inner, cfg.norm_outlier.factor)
