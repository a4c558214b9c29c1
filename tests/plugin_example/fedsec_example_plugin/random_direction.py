"""Random-direction Byzantine update: the attacker sends an update of a random direction and an
inflated norm,

    Delta_mal = k ||Delta_i|| u,   u ~ uniform on the unit sphere,   k = ``random_direction.norm_factor``,

with Delta_i its own trained update (a minimal model poison, the example of
docs/extending.md: a model poison is a function (global w, local w_i, context) -> w_i').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clients.attacks.model_poison import MODEL_POISONS, PoisonContext, Tensors
from fedsec.config import Config, MethodParams, param


@dataclass
class RandomDirectionParams(MethodParams):
    section = "random_direction"
    norm_factor: float = param(10.0, "k: the crafted update's norm in multiples of the attacker's own")

    def check(self, cfg: Config) -> None:
        self.positive("norm_factor")


@MODEL_POISONS.register("random_direction", params=RandomDirectionParams)
def random_direction(global_: Tensors, local: Tensors, ctx: PoisonContext) -> Tensors:
    norm = np.sqrt(sum(float(((local[k] - global_[k]) ** 2).sum()) for k in local))
    direction = {k: ctx.rng.standard_normal(local[k].shape) for k in local}
    length = np.sqrt(sum(float((d**2).sum()) for d in direction.values()))
    scale = ctx.cfg.random_direction.norm_factor * norm / length
    return {k: global_[k] + scale * direction[k] for k in local}
