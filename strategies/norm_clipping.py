"""Norm clipping with optional Gaussian noise (Sun, Kairouz, Suresh, McMahan, 2019, "Can You
Really Backdoor Federated Learning?"), through Flower's ``DifferentialPrivacyServerSideFixedClipping``.

Every update is clipped to norm C (``strategy.clip_norm``),
Delta_i <- Delta_i min(1, C / ||Delta_i||), the inner strategy aggregates, and
Gaussian noise N(0, (sigma C / n)^2) is added to the aggregate
(sigma = ``strategy.noise_multiplier``; 0 means clipping only, "weak DP" when > 0).
"""

from __future__ import annotations

from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, Strategy

from fedsec.config import Config
from strategies.update_filter import DEFENSES


@DEFENSES.register("norm_clip")
def norm_clip(inner: Strategy, cfg: Config) -> Strategy:
    s = cfg.strategy
    return DifferentialPrivacyServerSideFixedClipping(
        inner, noise_multiplier=s.noise_multiplier, clipping_norm=s.clip_norm,
        num_sampled_clients=cfg.federation.clients_per_round,
    )
