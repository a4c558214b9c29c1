"""Flower's Message-API baselines, configured from the experiment config.

- FedAvg (McMahan et al., 2017): w <- sum_i (n_i / n) w_i.
- FedAvgM (Hsu et al., 2019): v <- beta v + (w - w_avg); w <- w - eta_s v.
- FedAdam (Reddi et al., 2021): m, v moments of the pseudo-gradient, Adam step eta.
- FedProx (Li et al., 2020): FedAvg on the server; clients add mu/2 ||w - w_g||^2.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx, Strategy

from fedsec.config import Config, MethodParams, param
from strategies.registry import STRATEGIES, sampling_kwargs


@dataclass
class FedAvgMParams(MethodParams):
    section = "fedavgm"
    renamed = {  # keys before fedsec 0.2
        "strategy.server_momentum": "fedavgm.momentum",
        "strategy.server_lr": "fedavgm.server_lr or fedadam.server_lr",
    }
    server_lr: float = param(1.0, "server learning rate eta_s")
    momentum: float = param(0.9, "server momentum beta")

    def check(self, cfg: Config) -> None:
        self.positive("server_lr")
        self.require(0.0 <= self.momentum < 1.0, "momentum", "must lie in [0, 1)")


@dataclass
class FedAdamParams(MethodParams):
    section = "fedadam"
    renamed = {  # keys before fedsec 0.2
        "strategy.beta_1": "fedadam.beta_1",
        "strategy.beta_2": "fedadam.beta_2",
        "strategy.tau": "fedadam.tau",
    }
    server_lr: float = param(1.0, "server learning rate eta")
    beta_1: float = param(0.9, "first-moment decay")
    beta_2: float = param(0.99, "second-moment decay")
    tau: float = param(1e-3, "adaptivity (epsilon) tau")

    def check(self, cfg: Config) -> None:
        self.positive("server_lr", "tau")
        for key in ("beta_1", "beta_2"):
            self.require(0.0 <= getattr(self, key) < 1.0, key, "must lie in [0, 1)")


@dataclass
class FedProxParams(MethodParams):
    section = "fedprox"
    renamed = {"strategy.proximal_mu": "fedprox.mu"}  # keys before fedsec 0.2
    mu: float = param(0.01, "proximal term weight mu (sent to the clients)")

    def check(self, cfg: Config) -> None:
        self.require(self.mu >= 0, "mu", "must be >= 0")


@STRATEGIES.register("fedavg")
def fedavg(cfg: Config) -> Strategy:
    return FedAvg(**sampling_kwargs(cfg))


@STRATEGIES.register("fedavgm", params=FedAvgMParams)
def fedavgm(cfg: Config) -> Strategy:
    p = cfg.fedavgm
    return FedAvgM(**sampling_kwargs(cfg), server_learning_rate=p.server_lr, server_momentum=p.momentum)


@STRATEGIES.register("fedadam", params=FedAdamParams)
def fedadam(cfg: Config) -> Strategy:
    p = cfg.fedadam
    return FedAdam(**sampling_kwargs(cfg), eta=p.server_lr, eta_l=cfg.client.lr, beta_1=p.beta_1, beta_2=p.beta_2,
                   tau=p.tau)


@STRATEGIES.register("fedprox", params=FedProxParams)
def fedprox(cfg: Config) -> Strategy:
    return FedProx(**sampling_kwargs(cfg), proximal_mu=cfg.fedprox.mu)
