"""Norm clipping with optional Gaussian noise (Sun, Kairouz, Suresh, McMahan, 2019, "Can You
Really Backdoor Federated Learning?"), through Flower's ``DifferentialPrivacyServerSideFixedClipping``.

Every update is clipped to norm C (``norm_clip.clip_norm``),
Delta_i <- Delta_i min(1, C / ||Delta_i||), the inner strategy aggregates, and
Gaussian noise N(0, (sigma C / n)^2) is added to the aggregate
(sigma = ``norm_clip.noise_multiplier``; 0 means clipping only, "weak DP" when > 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, Strategy

from fedsec.config import Config, MethodParams, param
from fedsec.registry import DEFENSES, Traits


@dataclass
class NormClipParams(MethodParams):
    section = "norm_clip"
    renamed = {  # keys before fedsec 0.2
        "strategy.clip_norm": "norm_clip.clip_norm",
        "strategy.noise_multiplier": "norm_clip.noise_multiplier",
    }
    clip_norm: float = param(0.0, "clipping bound C of every update (must be set: > 0)")
    noise_multiplier: float = param(0.0, "sigma of the Gaussian noise sigma C / n on the aggregate (0: none)")

    def check(self, cfg: Config) -> None:
        self.positive("clip_norm")
        self.require(self.noise_multiplier >= 0, "noise_multiplier", "must be >= 0")


@DEFENSES.register("norm_clip", params=NormClipParams, traits=Traits(global_model=True))
def norm_clip(inner: Strategy, cfg: Config) -> Strategy:
    s = cfg.norm_clip
    return DifferentialPrivacyServerSideFixedClipping(
        inner, noise_multiplier=s.noise_multiplier, clipping_norm=s.clip_norm,
        num_sampled_clients=cfg.federation.clients_per_round,
    )
