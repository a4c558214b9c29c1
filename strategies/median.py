"""Coordinate-wise median (Yin, Chen, Kannan, Bartlett, ICML 2018), Flower's ``FedMedian``.

w <- median_i w_i, coordinate by coordinate (unweighted).
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedMedian, Strategy

from fedsec.config import Config
from strategies.registry import STRATEGIES, sampling_kwargs


@STRATEGIES.register("median")
def median(cfg: Config) -> Strategy:
    return FedMedian(**sampling_kwargs(cfg))
