"""RedGrape, server side: global gradient prototypes for classifier re-balancing.

Paper: "Integrating Local Real Data with Global Gradient Prototypes for
Classifier Re-Balancing in Federated Long-Tailed Learning" (also "Decentralized
Decoupled Training for Federated Long-Tailed Learning"), W. Yang et al.

Each sampled client computes, with the global model before it trains, the
gradient prototype of each of its classes c: the mean over its samples of c of
the cross-entropy gradient of the main classifier fc,
g_c = mean (softmax(W h + b) - e_c) [h^T, 1] (``fedsec.class_gradients``). The
server averages them per class over the clients that hold the class (weighted by
their counts) and keeps the previous prototype of every class no sampled client
held; the prototypes go to the next round's clients, whose training step
(``clients/redgrape.py``) completes their local classifier gradient with the
prototypes of the classes they lack.
"""

from __future__ import annotations

from flwr.app import ArrayRecord
from flwr.serverapp.strategy import Strategy

from fedsec.class_gradients import ClassGradient, to_record, weighted_mean
from fedsec.config import Config
from strategies.rebalancer import REBALANCERS, Rebalancer


@REBALANCERS.register("redgrape")
class RedGrape(Rebalancer):
    """Keeps the global gradient prototypes {class: ClassGradient} and sends them to the clients."""

    def __init__(self, inner: Strategy, cfg: Config) -> None:
        super().__init__(inner, cfg)
        self.prototypes: dict[int, ClassGradient] = {}

    def side_record(self, server_round: int) -> ArrayRecord | None:
        return to_record(self.prototypes) if self.prototypes else None

    def absorb(self, server_round: int, grads: list[dict[int, ClassGradient]], arrays: ArrayRecord | None) -> None:
        self.prototypes.update(weighted_mean(grads))
