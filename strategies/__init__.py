"""Server strategies: Flower Message-API strategies, robust aggregation rules and server defenses."""

from strategies import (  # noqa: F401  (register the strategies and defenses)
    baselines,
    bulyan,
    flame,
    fltrust,
    foolsgold,
    krum,
    median,
    norm_clipping,
    rfa,
    trimmed_mean,
)
from strategies.registry import STRATEGIES, build_strategy, sampling_kwargs
from strategies.update_filter import DEFENSES

__all__ = ["DEFENSES", "STRATEGIES", "build_strategy", "sampling_kwargs"]
