"""Model replacement / update boosting (Bagdasaryan et al., AISTATS 2020, "How To
Backdoor Federated Learning"; Bhagoji et al., ICML 2019 explicit boosting).

    w_i' = w + s (w_i - w),   s = attack.scale, or n / m: the clients sampled in this
    round over the attackers sampled in this round (the paper's gamma = n / eta with
    the server learning rate eta = 1, shared by the m colluding attackers), so that
    the malicious update survives the round's average.
"""

from __future__ import annotations

from clients.attacks.model_poison import MODEL_POISONS, PoisonContext, Tensors


@MODEL_POISONS.register("boost")
def boost(global_: Tensors, local: Tensors, ctx: PoisonContext) -> Tensors:
    s = ctx.scale
    return {k: global_[k] + s * (local[k] - global_[k]) for k in local}
