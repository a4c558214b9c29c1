"""Coordinate-wise trimmed mean (Yin, Chen, Kannan, Bartlett, ICML 2018), Flower's ``FedTrimmedAvg``.

For every coordinate the largest and smallest beta fraction of the client
values (``trimmed_mean.beta``) are dropped and the rest averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp.strategy import FedTrimmedAvg, Strategy

from fedsec.config import Config, MethodParams, param
from strategies.registry import STRATEGIES, sampling_kwargs


@dataclass
class TrimmedMeanParams(MethodParams):
    section = "trimmed_mean"
    renamed = {"strategy.trim_beta": "trimmed_mean.beta"}  # keys before fedsec 0.2
    beta: float = param(0.2, "fraction trimmed at each end, per coordinate")

    def check(self, cfg: Config) -> None:
        self.require(0.0 <= self.beta < 0.5, "beta", "must lie in [0, 0.5)")


@STRATEGIES.register("trimmed_mean", params=TrimmedMeanParams)
def trimmed_mean(cfg: Config) -> Strategy:
    return FedTrimmedAvg(**sampling_kwargs(cfg), beta=cfg.trimmed_mean.beta)
