"""Min-Sum (Shejwalkar & Houmansadr, NDSS 2021, "Manipulating the Byzantine").

Omniscient: Delta_mal = mu - gamma sigma with the largest gamma such that the
malicious update's summed squared distance to the honest updates is no larger
than that of any honest update:

    sum_i ||Delta_mal - Delta_i||^2 <= max_i sum_j ||Delta_i - Delta_j||^2.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from clients.attacks.omniscient import OMNISCIENT_ATTACKS, largest_scale
from fedsec.config import Config


@OMNISCIENT_ATTACKS.register("min_sum")
def min_sum(honest: np.ndarray, n: int, m: int, cfg: Config) -> np.ndarray:
    mu, sigma = honest.mean(axis=0), honest.std(axis=0)
    bound = (cdist(honest, honest, "sqeuclidean").sum(axis=1)).max()
    gamma = largest_scale(lambda g: cdist((mu - g * sigma)[None], honest, "sqeuclidean").sum() <= bound)
    return mu - gamma * sigma
