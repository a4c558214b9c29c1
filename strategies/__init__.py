"""Server strategies: Flower Message-API strategies, robust aggregation rules, strategy wrappers
(FedGLAD), server defenses and re-balancers. Importing the package registers them
(``fedsec.plugins`` entry point ``strategies``)."""

from strategies import (  # noqa: F401  (register the strategies and defenses)
    baselines,
    bulyan,
    creff,
    fedglad,
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
from strategies.registry import DEFENSES, REBALANCERS, STRATEGIES, WRAPPERS, sampling_kwargs

__all__ = ["DEFENSES", "REBALANCERS", "STRATEGIES", "WRAPPERS", "sampling_kwargs"]
