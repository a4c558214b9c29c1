"""IPM, inner-product manipulation (Xie, Koyejo, Gupta, UAI 2019, "Fall of Empires").

Omniscient: every malicious client sends Delta_mal = -epsilon * mean(honest
updates) (epsilon = ``attack.scale``, 0.5 when 0), so that the inner product
of the aggregate with the true descent direction becomes small or negative.
"""

from __future__ import annotations

import numpy as np

from clients.attacks.omniscient import OMNISCIENT_ATTACKS
from fedsec.config import Config
from fedsec.registry import Traits


@OMNISCIENT_ATTACKS.register("ipm", traits=Traits(global_model=True))
def ipm(honest: np.ndarray, n: int, m: int, cfg: Config) -> np.ndarray:
    return -(cfg.attack.scale or 0.5) * honest.mean(axis=0)
