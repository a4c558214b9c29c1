"""Gaussian (random) Byzantine update (Blanchard et al., NeurIPS 2017, "Krum"'s
Gaussian attack): the client sends w + N(0, sigma^2 I), sigma = attack.noise_std,
instead of its trained model."""

from __future__ import annotations

from clients.attacks.model_poison import MODEL_POISONS, PoisonContext, Tensors


@MODEL_POISONS.register("gaussian")
def gaussian(global_: Tensors, local: Tensors, ctx: PoisonContext) -> Tensors:
    sigma = ctx.cfg.attack.noise_std
    return {k: global_[k] + ctx.rng.normal(0.0, sigma, size=local[k].shape) for k in local}
