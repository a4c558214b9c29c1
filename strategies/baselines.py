"""Flower's Message-API baselines, configured from the experiment config.

- FedAvg (McMahan et al., 2017): w <- sum_i (n_i / n) w_i.
- FedAvgM (Hsu et al., 2019): v <- beta v + (w - w_avg); w <- w - eta_s v.
- FedAdam (Reddi et al., 2021): m, v moments of the pseudo-gradient, Adam step eta.
- FedProx (Li et al., 2020): FedAvg on the server; clients add mu/2 ||w - w_g||^2.
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx, Strategy

from fedsec.config import Config
from strategies.registry import STRATEGIES, sampling_kwargs


@STRATEGIES.register("fedavg")
def fedavg(cfg: Config) -> Strategy:
    return FedAvg(**sampling_kwargs(cfg))


@STRATEGIES.register("fedavgm")
def fedavgm(cfg: Config) -> Strategy:
    s = cfg.strategy
    return FedAvgM(**sampling_kwargs(cfg), server_learning_rate=s.server_lr, server_momentum=s.server_momentum)


@STRATEGIES.register("fedadam")
def fedadam(cfg: Config) -> Strategy:
    s = cfg.strategy
    return FedAdam(
        **sampling_kwargs(cfg), eta=s.server_lr, eta_l=cfg.client.lr, beta_1=s.beta_1, beta_2=s.beta_2, tau=s.tau
    )


@STRATEGIES.register("fedprox")
def fedprox(cfg: Config) -> Strategy:
    return FedProx(**sampling_kwargs(cfg), proximal_mu=cfg.strategy.proximal_mu)
