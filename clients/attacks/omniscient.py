"""The omniscient channel: simulation-only access of colluding attackers to the honest updates.

Registered as a reply hook of the round loop (``fedsec.registry.REPLY_HOOKS``).

Robust-aggregation papers evaluate against attackers who know the benign
updates of the round. fedsec models this knowledge with one explicit step in
the server loop, outside every strategy: after the replies are screened and
before any strategy (or server defense) sees them, :func:`apply_omniscient`
hands the honest updates H (one row per honest sampled client, flattened over
the travelling tensors) to ``OMNISCIENT_ATTACKS[attack.omniscient]``, which
returns one crafted update; every malicious reply of the round is rewritten
to w + crafted. The malicious clients still train as usual (their own update
is discarded). Nothing else in fedsec can read other clients' updates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord, Message

from fedsec.config import Config
from fedsec.params import unflatten
from fedsec.protocol import ARRAYS, updates
from fedsec.registry import OMNISCIENT_ATTACKS, REPLY_HOOKS

log = logging.getLogger("fedsec")

# (honest updates [h, d], clients sampled this round n, malicious among them m, config) -> crafted update [d]
OmniscientAttack = Callable[[np.ndarray, int, int, Config], np.ndarray]
OMNISCIENT_ATTACKS.register("none")(None)


@REPLY_HOOKS.register("omniscient")
def apply_omniscient(
    cfg: Config, arrays: ArrayRecord, replies: list[Message], partition_of: dict[int, int], malicious: set[int]
) -> list[Message]:
    """Rewrite the malicious replies with the configured omniscient attack; returns ``replies``."""
    attack = OMNISCIENT_ATTACKS[cfg.attack.omniscient]
    is_malicious = [partition_of.get(r.metadata.src_node_id, -1) in malicious for r in replies]
    if attack is None or not any(is_malicious) or all(is_malicious):
        return replies
    _, start, honest = updates([r for r, bad in zip(replies, is_malicious, strict=True) if not bad], arrays)
    crafted = start + attack(honest, len(replies), sum(is_malicious), cfg)
    for reply, bad in zip(replies, is_malicious, strict=True):
        if bad:  # a record of its own per reply: strategies may consume records in place
            reply.content[ARRAYS] = unflatten(crafted, arrays)
    log.info("omniscient %s: %d malicious updates crafted from %d honest ones",
             cfg.attack.omniscient, sum(is_malicious), len(honest))
    return replies


def largest_scale(acceptable: Callable[[float], bool], start: float = 10.0, tolerance: float = 1e-5) -> float:
    """The largest gamma > 0 with ``acceptable(gamma)``, by the halving search of Shejwalkar & Houmansadr."""
    gamma, step, best = start, start / 2, 0.0
    while abs(best - gamma) > tolerance:
        if acceptable(gamma):
            best = gamma
            gamma += step
        else:
            gamma -= step
        step /= 2
    return best
