"""RedGrape, server side: global gradient prototypes and personal bias attractors.

Paper: "Integrating Local Real Data with Global Gradient Prototypes for
Classifier Re-Balancing in Federated Long-Tailed Learning" (also "Decentralized
Decoupled Training for Federated Long-Tailed Learning"), W. Yang et al.; code:
keven980716/Federated_Learning_Experiments (``fedavg_imb``).

Each sampled client computes, with the global model before it trains, the
gradient prototype of each of its classes c: the mean over its samples of c of
the cross-entropy gradient of the main classifier fc,
g_c = mean (softmax(W h + b) - e_c) [h^T, 1] (``fedsec.class_gradients``). The
server averages them per class over the clients that hold the class (weighted by
their counts) and keeps the previous prototype of every class no sampled client
held; the prototypes go to the next round's clients, whose training step
(``clients/redgrape.py``) completes their local classifier gradient with the
prototypes of the classes they lack.

The extra classifier (the "bias attractor", ``extra.*``) is personal, as in the
official code's default (``aggregate_ba=False``): the server stores the one each
client returns and sends it back the next time that client is sampled; a client
taking part for the first time gets the global model's. The global model still
averages every tensor, the attractors included (the official aggregator does
not exclude them); inference never uses them. ``redgrape.share_attractor=true``
is the official ``--aggregate_ba``: every client trains from the averaged one.
Where the attractors are personal, the wrappers inside (FedGLAD, the screening
defenses) see each client's extra classifier as returned, as the official
aggregator does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsec.class_gradients import ClassGradient, class_mean, to_record
from fedsec.config import Config, ConfigError, MethodParams, param
from fedsec.protocol import ARRAYS, partition_id
from fedsec.registry import CLASSIFICATION, Traits
from strategies.rebalancer import REBALANCERS, Rebalancer

ATTRACTOR = "extra."  # the bias attractor's keys in the arrays


@dataclass
class RedGrapeParams(MethodParams):
    section = "redgrape"
    renamed = {  # keys before fedsec 0.2
        "rebalance.balanced_per_class": "redgrape.balanced_per_class",
        "rebalance.prototype_scale": "redgrape.prototype_scale",
        "rebalance.share_attractor": "redgrape.share_attractor",
    }
    balanced_per_class: int = param(8, "T: real samples of every local class in the balanced set")
    prototype_scale: float = param(0.1, "lambda: step on the prototype-completed classifier gradient")
    share_attractor: bool = param(False, "average the bias attractors (official --aggregate_ba) instead of "
                                  "keeping them personal (official default)")

    def check(self, cfg: Config) -> None:
        self.positive("balanced_per_class")
        self.require(self.prototype_scale >= 0, "prototype_scale", "must be >= 0")
        if not cfg.model.extra_classifier:
            raise ConfigError("rebalance.method=redgrape needs model.extra_classifier=true (the bias attractor)")


def _broadcast(cfg: Config) -> str:
    """Personal attractors make the instructions per-client."""
    return "global" if cfg.redgrape.share_attractor else "per_client"


@REBALANCERS.register("redgrape", params=RedGrapeParams,
                      traits=Traits(modalities=CLASSIFICATION, broadcast=_broadcast, global_model=True,
                                    requires=frozenset({"linear_head"})))
class RedGrape(Rebalancer):
    """Keeps the global gradient prototypes {class: ClassGradient} and each client's bias attractor."""

    def __init__(self, inner: Strategy, cfg: Config) -> None:
        super().__init__(inner, cfg)
        self.prototypes: dict[int, ClassGradient] = {}
        self.attractors: dict[int, dict[str, np.ndarray]] = {}  # partition id -> its extra classifier

    def side_record(self, server_round: int) -> ArrayRecord | None:
        return to_record(self.prototypes) if self.prototypes else None

    def absorb(self, server_round: int, grads: list[dict[int, ClassGradient]], arrays: ArrayRecord | None) -> None:
        self.prototypes.update(class_mean(grads, weighted=True))

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if self.cfg.redgrape.share_attractor:
            return messages
        partition_of = getattr(grid, "partition_of", None)
        if partition_of is None:
            raise RuntimeError("RedGrape's personal attractors need fedsec's partition-ordered grid")
        for message in messages:
            own = self.attractors.get(partition_of[message.metadata.dst_node_id])
            if own is None:
                continue
            # Flower's FedAvg gives all its messages ONE shared RecordDict: this one gets its own
            message.content = RecordDict(dict(message.content.items()))
            personal = ArrayRecord(dict(message.content[ARRAYS].items()))
            for key, value in own.items():
                personal[key] = Array(value)
            message.content[ARRAYS] = personal
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if not self.cfg.redgrape.share_attractor:
            for reply in replies:
                returned = reply.content[ARRAYS]
                self.attractors[partition_id(reply.content)] = {
                    k: np.array(a.numpy()) for k, a in returned.items() if k.startswith(ATTRACTOR)}
        return super().aggregate_train(server_round, replies)
