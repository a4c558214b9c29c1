"""Bulyan (El Mhamdi, Guerraoui, Rouault, ICML 2018), Flower's built-in.

Multi-Krum selects theta = n - 2f updates; of those, every coordinate is
averaged over the beta = theta - 2f values closest to its median. Needs
n >= 4f + 3 (f = ``strategy.byzantine``).
"""

from __future__ import annotations

from flwr.serverapp.strategy import Bulyan, Strategy

from fedsec.config import Config
from strategies.registry import STRATEGIES, sampling_kwargs


@STRATEGIES.register("bulyan")
def bulyan(cfg: Config) -> Strategy:
    return Bulyan(**sampling_kwargs(cfg), num_malicious_nodes=cfg.strategy.byzantine)
