"""Sign flipping (Byzantine; e.g. Li et al., AAAI 2019 "RSA"; Damaskinos et al., 2018):
the client sends the reversed update, w_i' = w - s (w_i - w), s = attack.scale or 1."""

from __future__ import annotations

from clients.attacks.model_poison import MODEL_POISONS, PoisonContext, Tensors


@MODEL_POISONS.register("sign_flip")
def sign_flip(global_: Tensors, local: Tensors, ctx: PoisonContext) -> Tensors:
    s = ctx.cfg.attack.scale or 1.0
    return {k: global_[k] - s * (local[k] - global_[k]) for k in local}
