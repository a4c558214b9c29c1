"""Min-Max (Shejwalkar & Houmansadr, NDSS 2021, "Manipulating the Byzantine").

Omniscient: Delta_mal = mu - gamma sigma (mu, sigma: coordinate-wise mean and
standard deviation of the honest updates), with the largest gamma such that
the malicious update is no farther from any honest update than the two most
distant honest updates are from each other:

    max_i ||Delta_mal - Delta_i|| <= max_{i,j} ||Delta_i - Delta_j||.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, pdist

from clients.attacks.omniscient import OMNISCIENT_ATTACKS, largest_scale
from fedsec.config import Config
from fedsec.registry import Traits


@OMNISCIENT_ATTACKS.register("min_max", traits=Traits(global_model=True))
def min_max(honest: np.ndarray, n: int, m: int, cfg: Config) -> np.ndarray:
    mu, sigma = honest.mean(axis=0), honest.std(axis=0)
    bound = pdist(honest).max() if len(honest) > 1 else 0.0
    gamma = largest_scale(lambda g: cdist((mu - g * sigma)[None], honest).max() <= bound)
    return mu - gamma * sigma
