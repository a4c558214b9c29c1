"""Server strategies: Flower Message-API strategies and fedsec's own."""

from strategies import baselines  # noqa: F401  (register the baselines)
from strategies.registry import STRATEGIES, build_strategy, sampling_kwargs

__all__ = ["STRATEGIES", "build_strategy", "sampling_kwargs"]
