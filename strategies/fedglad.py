"""FedGLAD: gradient-similarity-aware server learning rate against negative client sampling.

Paper: W. Yang, Y. Lin, G. Zhao, R. Li, J. Zhou, X. Sun, "When to Trust
Aggregated Gradients: Addressing Negative Client Sampling in Federated
Learning", TMLR 2024 (arXiv:2301.10400).

In round t (0-based) with global model w and sampled clients i (models w_i,
weights p_i = n_i / N), let the averaged model be w_bar = sum_i p_i w_i and

    d_i = ||w_bar - w_i||^2,   g_i = ||w_i - w||^2,
    GSI_t = sqrt(1 / (1 - sum_i p_i d_i / sum_i p_i g_i)) = sqrt(sum_i p_i ||D_i||^2 / ||D_bar||^2)

with D_i = w_i - w and D_bar = w_bar - w. GSI_t >= 1: it is 1 when all updates
agree and grows as they cancel out (a "negative" sample of clients). With
uniform weights this equals the paper's unweighted sums, sqrt(sum_i ||D_i||^2 /
(n ||D_bar||^2)); fedsec weights the sums by p_i because with unequal weights
the unweighted ratio can reach 1 and the formula is then undefined. With the
running mean E_0 = GSI_0, E_t = b E_{t-1} + (1 - b) GSI_t
(b = 0.9), the indicator is r_t = GSI_t / E_{t-1} (r_0 = 1) and the server
learning rate

    eta_t = clip(eta_s * r_t, [(1 - gamma t) eta_s, (1 + gamma t) eta_s])   (gamma = 0.02),

i.e. the server update w_bar - w is scaled by s_t = clip(r_t, [1 - gamma t, 1 + gamma t])
before the base strategy applies its own server learning rate eta_s.

Composition: ``FedGLAD`` wraps any Flower Message-API strategy. It scales each
client's update, w_i <- w + s_t (w_i - w), before the inner strategy
aggregates; for FedAvg / FedProx (w <- w_bar) this is w <- w + s_t (w_bar - w),
for FedAvgM the pseudo-gradient fed to momentum SGD is scaled by s_t, and for
FedAdam the first moment sees the scaled pseudo-gradient while the second
moment is corrected to see the unscaled one, as in the official code.
The ``groupwise`` variant computes GSI, the running mean and s_t per tensor.
Buffers of normalisation layers (running statistics) are averaged, not scaled.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from logging import INFO
from typing import Literal

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvgM, Strategy
from flwr.serverapp.strategy.fedopt import FedOpt
from flwr.supercore import log

from fedsec.config import Config, MethodParams, param
from fedsec.metrics import headline
from fedsec.protocol import ARRAYS, arrays_of, metrics_of
from fedsec.registry import WRAPPERS, Traits
from strategies.wrapper import StrategyWrapper

headline("gsi", "GSI")
headline("server_lr", "server lr")

_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def gsi(updates: list[dict[str, np.ndarray]], weights: np.ndarray, keys: list[str]) -> float:
    """The gradient similarity indicator over ``keys`` for client updates D_i = w_i - w.

    sqrt(1 / (1 - sum_i p_i d_i / sum_i p_i g_i)) = sqrt(sum_i p_i ||D_i||^2 / ||D_bar||^2).
    With uniform weights this is the paper's (unweighted) formula exactly; with
    unequal weights the unweighted sums can reach sum d_i >= sum g_i, where the
    formula is undefined, while the p-weighted form stays >= 1.
    """
    mean = {k: sum(p * u[k] for p, u in zip(weights, updates)) for k in keys}
    spread = sum(p * float(np.sum(u[k] ** 2)) for p, u in zip(weights, updates) for k in keys)
    agreement = sum(float(np.sum(mean[k] ** 2)) for k in keys)
    if spread == 0.0:
        return 1.0
    return float(np.sqrt(spread / max(agreement, spread * 1e-12)))


def clip_bounds(t: int, gamma: float) -> tuple[float, float]:
    """Bounds of s_t in round t (0-based): [1 - gamma t, 1 + gamma t], the lower kept >= 0."""
    return max(0.0, 1.0 - gamma * t), 1.0 + gamma * t


class FedGLAD(StrategyWrapper):
    """Wraps ``inner`` and adapts its server learning rate by the GSI indicator.

    Parameters
    ----------
    inner : Strategy
        The base strategy (FedAvg, FedAvgM, FedAdam, FedProx, ...).
    variant : "global" or "groupwise"
        One indicator for the whole model or one per tensor.
    gamma : float
        Growth of the clipping range per round.
    beta : float
        Factor of the running mean of GSI.
    adapt : bool
        With ``False`` the indicator is computed and logged but s_t = 1 (ablation).
    """

    def __init__(
        self, inner: Strategy, variant: str = "global", gamma: float = 0.02, beta: float = 0.9, adapt: bool = True
    ) -> None:
        if variant not in ("global", "groupwise"):
            raise ValueError(f"FedGLAD variant must be 'global' or 'groupwise', not {variant!r}")
        super().__init__(inner)
        self.variant = variant
        self.gamma = gamma
        self.beta = beta
        self.adapt = adapt
        self.running_mean: dict[str, float] = {}

    def summary(self) -> None:
        log(INFO, "\t├──> FedGLAD: variant %s, gamma %s, running-mean factor %s, adapt %s",
            self.variant, self.gamma, self.beta, self.adapt)
        super().summary()

    # ------------------------------------------------------------ the method
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = [r for r in replies if not r.has_error()]
        if not replies or self.current is None:
            return self.inner.aggregate_train(server_round, replies)
        w = {k: a.numpy() for k, a in self.current.items()}
        keys = [k for k in w if not k.endswith(_BUFFER_SUFFIXES)]
        updates = [{k: _arrays(r)[k].numpy() - w[k] for k in w} for r in replies]
        weights = np.array([_weight(r, self._weight_key()) for r in replies], dtype=np.float64)
        weights = weights / weights.sum()
        groups = {"global": keys} if self.variant == "global" else {k: [k] for k in keys}
        t = server_round - 1
        low, high = clip_bounds(t, self.gamma)
        indicators, scales = {}, {}
        for name, group in groups.items():
            indicators[name] = gsi(updates, weights, group)
            ratio = self._indicator(name, indicators[name])
            scales[name] = float(np.clip(ratio, low, high)) if self.adapt else 1.0
        scale_of = {k: scales["global"] for k in keys} if self.variant == "global" else scales
        if isinstance(self.inner, FedAdam):
            self._correct_second_moment(updates, weights, scale_of, w)
        scaled = [self._scaled_reply(r, u, scale_of, w) for r, u in zip(replies, updates)]
        arrays, metrics = self.inner.aggregate_train(server_round, scaled)
        metrics = MetricRecord() if metrics is None else metrics
        lrs = np.array([self._base_lr() * s for s in scales.values()])
        values = np.array(list(indicators.values()))
        if self.variant == "global":
            metrics["gsi"], metrics["server_lr"] = float(values[0]), float(lrs[0])
        else:
            metrics["gsi_mean"], metrics["gsi_min"], metrics["gsi_max"] = map(
                float, (values.mean(), values.min(), values.max())
            )
            metrics["server_lr_mean"], metrics["server_lr_min"], metrics["server_lr_max"] = map(
                float, (lrs.mean(), lrs.min(), lrs.max())
            )
        return arrays, metrics

    def _indicator(self, name: str, value: float) -> float:
        """r_t = GSI_t / E_{t-1}, then update the running mean (r_0 = 1, E_0 = GSI_0)."""
        previous = self.running_mean.get(name)
        if previous is None:
            self.running_mean[name] = value
            return 1.0
        self.running_mean[name] = self.beta * previous + (1.0 - self.beta) * value
        return value / previous if previous > 0 else 1.0

    @staticmethod
    def _scaled_reply(reply: Message, update: dict[str, np.ndarray], scale_of: dict[str, float],
                      w: dict[str, np.ndarray]) -> Message:
        """A copy of ``reply`` whose arrays are w + s (w_i - w) (buffers unscaled)."""
        if all(s == 1.0 for s in scale_of.values()):
            return reply
        arrays = ArrayRecord(
            {k: Array(np.asarray(w[k] + scale_of.get(k, 1.0) * update[k], dtype=w[k].dtype)) for k in w}
        )
        content = RecordDict({name: record for name, record in reply.content.items()})
        content[ARRAYS] = arrays
        return Message(content=content, metadata=copy.copy(reply.metadata))

    def _correct_second_moment(
        self, updates: list[dict[str, np.ndarray]], weights: np.ndarray, scale_of: dict[str, float],
        w: dict[str, np.ndarray],
    ) -> None:
        """Make FedAdam's v see the unscaled pseudo-gradient although m sees the scaled one.

        FedAdam computes v <- b2 v + (1 - b2) (s D)^2 from the scaled replies;
        adding (1 - b2)(1 - s^2) D^2 / b2 to v beforehand yields b2 v + (1 - b2) D^2.
        """
        inner: FedOpt = self.inner  # type: ignore[assignment]
        if inner.beta_2 == 0.0:
            return
        delta = {k: sum(p * u[k] for p, u in zip(weights, updates)) for k in scale_of}
        if not inner.v_t:
            inner.v_t = {k: np.zeros_like(v) for k, v in w.items()}
        for k, s in scale_of.items():
            if s != 1.0:
                correction = (1.0 - inner.beta_2) * (1.0 - s**2) * delta[k] ** 2 / inner.beta_2
                inner.v_t[k] = (inner.v_t[k] + correction).astype(inner.v_t[k].dtype)

    def _base_lr(self) -> float:
        """eta_s of the inner strategy (1 for FedAvg / FedProx)."""
        if isinstance(self.inner, FedAvgM):
            return float(self.inner.server_learning_rate)
        if isinstance(self.inner, FedOpt):
            return float(self.inner.eta)
        return 1.0

    def _weight_key(self) -> str:
        return str(getattr(self.inner, "weighted_by_key", "num-examples"))


def _arrays(reply: Message) -> ArrayRecord:
    return arrays_of(reply.content)


def _weight(reply: Message, key: str) -> float:
    return float(metrics_of(reply.content)[key])


@dataclass
class FedGLADParams(MethodParams):
    section = "fedglad"
    renamed = {  # keys before fedsec 0.2
        "strategy.fedglad_gamma": "fedglad.gamma",
        "strategy.fedglad_beta": "fedglad.beta",
        "strategy.fedglad": "strategy.wrappers=fedglad with fedglad.variant",
    }
    variant: Literal["global", "groupwise"] = param("global", "one server learning rate, or one per parameter group")
    gamma: float = param(0.02, "the clip range of the scale is [1 - gamma t, 1 + gamma t] in round t")
    beta: float = param(0.9, "running-mean factor of the GSI")

    def check(self, cfg: Config) -> None:
        self.require(0.0 <= self.beta < 1.0, "beta", "must lie in [0, 1)")
        self.require(self.gamma >= 0, "gamma", "must be >= 0")


WRAPPERS.register("none")(None)


@WRAPPERS.register("fedglad", params=FedGLADParams, traits=Traits(global_model=True))
def fedglad(inner: Strategy, cfg: Config) -> Strategy:
    p = cfg.fedglad
    return FedGLAD(inner, variant=p.variant, gamma=p.gamma, beta=p.beta)
