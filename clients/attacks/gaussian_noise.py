"""Gaussian (random) Byzantine update (Blanchard et al., NeurIPS 2017, "Krum"'s
Gaussian attack): the client sends w + N(0, sigma^2 I), sigma = gaussian.noise_std,
instead of its trained model."""

from __future__ import annotations

from dataclasses import dataclass

from clients.attacks.model_poison import MODEL_POISONS, PoisonContext, Tensors
from fedsec.config import Config, MethodParams, param


@dataclass
class GaussianParams(MethodParams):
    section = "gaussian"
    renamed = {"attack.noise_std": "gaussian.noise_std"}  # keys before fedsec 0.2
    noise_std: float = param(0.1, "sigma of the Gaussian update")

    def check(self, cfg: Config) -> None:
        self.require(self.noise_std >= 0, "noise_std", "must be >= 0")


@MODEL_POISONS.register("gaussian", params=GaussianParams)
def gaussian(global_: Tensors, local: Tensors, ctx: PoisonContext) -> Tensors:
    sigma = ctx.cfg.gaussian.noise_std
    return {k: global_[k] + ctx.rng.normal(0.0, sigma, size=local[k].shape) for k in local}
