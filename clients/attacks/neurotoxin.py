"""Neurotoxin: a durable backdoor that avoids the coordinates honest clients update most.

Paper: Z. Zhang, A. Panda, L. Song, Y. Yang, M. W. Mahoney, J. E. Gonzalez,
K. Ramchandran, P. Mittal, "Neurotoxin: Durable Backdoors in Federated
Learning", ICML 2022.

The attacker estimates the honest update direction by the change of the global
model between the two rounds it last saw, g = w_t - w_prev, and projects its
own update Delta = w_i - w_t off the top-k coordinates of |g| (k =
``attack.neurotoxin_ratio`` of all travelling coordinates):

    Delta' = Delta * 1[coordinate not among the top-k of |g|],   w_i' = w_t + Delta'

so that later honest updates, which concentrate on those coordinates, do not
overwrite the backdoor. The paper projects every local gradient step; fedsec
projects the round's update (the same subspace constraint applied once),
which keeps Neurotoxin a model poison that composes with any data poison and
with ``boost`` (``attack.model_poison=neurotoxin,boost``). The first round the
attacker takes part in has no estimate and is left unprojected.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

from clients.attacks.model_poison import MODEL_POISONS, PoisonContext, Tensors

STATE_KEY = "neurotoxin.previous-global"


@MODEL_POISONS.register("neurotoxin")
def neurotoxin(global_: Tensors, local: Tensors, ctx: PoisonContext) -> Tensors:
    previous = ctx.state.array_records.get(STATE_KEY)
    ctx.state[STATE_KEY] = ArrayRecord({k: Array(np.array(v)) for k, v in global_.items()})
    if previous is None:
        return local
    change = {k: np.abs(global_[k] - previous[k].numpy()) for k in local}
    flat = np.concatenate([c.ravel() for c in change.values()])
    top = max(1, int(round(ctx.cfg.attack.neurotoxin_ratio * flat.size)))
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argpartition(flat, flat.size - top)[flat.size - top:]] = False
    masks = np.split(keep, np.cumsum([c.size for c in change.values()])[:-1])
    return {k: global_[k] + m.reshape(local[k].shape) * (local[k] - global_[k]) for k, m in zip(local, masks)}
