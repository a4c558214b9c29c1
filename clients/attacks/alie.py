"""ALIE, "A Little Is Enough" (Baruch, Baruch, Goldberg, NeurIPS 2019).

Omniscient: with mu and sigma the coordinate-wise mean and standard deviation
of the honest updates of the round, every malicious client sends

    Delta_mal = mu - z sigma,   z = attack.scale, or z_max = Phi^-1((n - s) / n),
    s = floor(n / 2 + 1) - m

(n clients in the round, m malicious): the largest shift that still keeps the
malicious updates closer to the mean than s honest ones, so median- and
distance-based rules accept them.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from clients.attacks.omniscient import OMNISCIENT_ATTACKS
from fedsec.config import Config
from fedsec.registry import Traits


def z_max(n: int, m: int) -> float:
    """Baruch et al.'s z for n clients of which m are malicious."""
    s = n // 2 + 1 - m
    return float(norm.ppf((n - s) / n))


@OMNISCIENT_ATTACKS.register("alie", traits=Traits(global_model=True))
def alie(honest: np.ndarray, n: int, m: int, cfg: Config) -> np.ndarray:
    z = cfg.attack.scale or z_max(n, m)
    return honest.mean(axis=0) - z * honest.std(axis=0)
