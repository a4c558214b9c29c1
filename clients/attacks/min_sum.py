"""Min-Sum (Shejwalkar & Houmansadr, NDSS 2021, "Manipulating the Byzantine").

Omniscient: Delta_mal = mu - gamma sigma (mu, sigma: coordinate-wise mean and
standard deviation of the honest updates, the ``dev_type='std'`` of the
authors' CIFAR-10 experiments), with the largest gamma (halving search from 10,
:func:`~clients.attacks.omniscient.largest_scale`) such that the malicious
update's summed squared distance to the honest updates is no larger than the
score of the honest update that scores best:

    sum_i ||Delta_mal - Delta_i||^2 <= min_i sum_j ||Delta_i - Delta_j||^2.

The bound follows the authors' code (``our_attack_score``: ``min_score``,
``min_sum.bound=min``, the default). ``min_sum.bound=max`` is
FLPoison's variant, which bounds by the worst honest score: a larger gamma, a
stronger and less stealthy attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.distance import cdist

from clients.attacks.omniscient import OMNISCIENT_ATTACKS, largest_scale
from fedsec.config import Config, MethodParams, param
from fedsec.registry import Traits


@dataclass
class MinSumParams(MethodParams):
    section = "min_sum"
    renamed = {"attack.min_sum_bound": "min_sum.bound"}  # keys before fedsec 0.2
    bound: Literal["min", "max"] = param(
        "min", "bound by the best honest score (authors' code) or the worst (FLPoison)")


@OMNISCIENT_ATTACKS.register("min_sum", params=MinSumParams, traits=Traits(global_model=True))
def min_sum(honest: np.ndarray, n: int, m: int, cfg: Config) -> np.ndarray:
    mu, sigma = honest.mean(axis=0), honest.std(axis=0)
    scores = cdist(honest, honest, "sqeuclidean").sum(axis=1)
    bound = scores.min() if cfg.min_sum.bound == "min" else scores.max()
    gamma = largest_scale(lambda g: cdist((mu - g * sigma)[None], honest, "sqeuclidean").sum() <= bound)
    return mu - gamma * sigma
