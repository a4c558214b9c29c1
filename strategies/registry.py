"""Strategy registry: config name -> builder ``Config -> flwr Strategy``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.serverapp.strategy import Strategy

from fedsec.config import Config, name_list
from fedsec.registry import Registry

StrategyBuilder = Callable[[Config], Strategy]
STRATEGIES: Registry[StrategyBuilder] = Registry("strategy")


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


def build_strategy(cfg: Config) -> Strategy:
    """``strategy.name``, wrapped by FedGLAD if ``strategy.fedglad`` is on, by ``strategy.defenses``,
    then by the re-balancer of ``rebalance.method``.

    The defenses see the updates first, in the order listed (``flame,norm_clip``:
    FLAME screens, then clipping, then FedGLAD and the aggregation rule). The
    re-balancer is outermost: it takes its side records off the replies, so
    everything inside sees the model updates only.
    """
    from strategies.fedglad import FedGLAD
    from strategies.rebalancer import REBALANCERS
    from strategies.update_filter import DEFENSES

    strategy = STRATEGIES[cfg.strategy.name](cfg)
    s = cfg.strategy
    if s.fedglad != "off":
        strategy = FedGLAD(strategy, variant=s.fedglad, gamma=s.fedglad_gamma, beta=s.fedglad_beta)
    for name in reversed(name_list(s.defenses)):
        wrap = DEFENSES[name]
        if wrap is not None:
            strategy = wrap(strategy, cfg)
    rebalancer = REBALANCERS[cfg.rebalance.method]
    return strategy if rebalancer is None else rebalancer(strategy, cfg)
