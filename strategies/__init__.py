"""Server strategies: Flower Message-API strategies, robust aggregation rules, server defenses, re-balancers."""

from strategies import (  # noqa: F401  (register the strategies and defenses)
    baselines,
    bulyan,
    creff,
    fedmnmt,
    flame,
    fltrust,
    foolsgold,
    krum,
    median,
    norm_clipping,
    redgrape,
    rfa,
    trimmed_mean,
)
from strategies.rebalancer import REBALANCERS
from strategies.registry import STRATEGIES, build_strategy, sampling_kwargs
from strategies.update_filter import DEFENSES

__all__ = ["DEFENSES", "REBALANCERS", "STRATEGIES", "build_strategy", "sampling_kwargs"]
