"""Coordinate-wise trimmed mean (Yin, Chen, Kannan, Bartlett, ICML 2018), Flower's ``FedTrimmedAvg``.

For every coordinate the largest and smallest beta fraction of the client
values (``strategy.trim_beta``) are dropped and the rest averaged.
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedTrimmedAvg, Strategy

from fedsec.config import Config
from strategies.registry import STRATEGIES, sampling_kwargs


@STRATEGIES.register("trimmed_mean")
def trimmed_mean(cfg: Config) -> Strategy:
    return FedTrimmedAvg(**sampling_kwargs(cfg), beta=cfg.strategy.trim_beta)
