"""How strategies are built from the config: sampling arguments shared by every Flower strategy."""

from __future__ import annotations

from typing import Any

from fedsec.config import Config
from fedsec.registry import DEFENSES, REBALANCERS, STRATEGIES, WRAPPERS

__all__ = ["DEFENSES", "REBALANCERS", "STRATEGIES", "WRAPPERS", "sampling_kwargs"]


def sampling_kwargs(cfg: Config) -> dict[str, Any]:
    """Sampling arguments of Flower's strategies, set explicitly from the config.

    Flower's defaults (``min_train_nodes=2``) may sample before all nodes have
    connected; fedsec waits for every client and samples exactly
    ``clients_per_round``.
    """
    fed = cfg.federation
    min_evaluate = max(1, round(fed.fraction_evaluate * fed.num_clients)) if fed.fraction_evaluate else 0
    return {
        "fraction_train": fed.clients_per_round / fed.num_clients,
        "min_train_nodes": fed.clients_per_round,
        "min_available_nodes": fed.num_clients,
        "fraction_evaluate": fed.fraction_evaluate,
        "min_evaluate_nodes": min_evaluate,
    }
