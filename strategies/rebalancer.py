"""The base of the long-tail re-balancers (RedGrape, CReFF): side records beside the model.

A :class:`Rebalancer` wraps the aggregation strategy (outermost, so the
strategies and defenses inside it see only the model update) and adds one
ArrayRecord, ``fedsec.protocol.SIDE``, to the messages: what the
server sends each client (:meth:`side_record`) and the per-class classifier
gradients each client returns, which :meth:`absorb` turns into the strategy's
state. :meth:`evaluation_arrays` may swap in a re-trained classifier for the
server's evaluation. The state lives in the strategy and is checkpointed with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsec.class_gradients import ClassGradient, from_record
from fedsec.config import Config
from fedsec.protocol import SIDE, partition_id
from fedsec.registry import REBALANCERS
from strategies.wrapper import StrategyWrapper

log = logging.getLogger("fedsec")

HEAD = "fc"  # the linear classifier whose gradients travel: ``fc.weight`` / ``fc.bias`` in the arrays


class Rebalancer(StrategyWrapper):
    """Wrap ``inner``; subclasses implement :meth:`side_record` and :meth:`absorb`."""

    def __init__(self, inner: Strategy, cfg: Config) -> None:
        super().__init__(inner)
        self.cfg = cfg

    def side_record(self, server_round: int) -> ArrayRecord | None:
        """What every sampled client receives beside the model this round (None: nothing)."""
        raise NotImplementedError

    def absorb(self, server_round: int, grads: list[dict[int, ClassGradient]], arrays: ArrayRecord | None) -> None:
        """Update the state from the clients' per-class gradients and the new global model."""
        raise NotImplementedError

    def evaluation_arrays(self, arrays: ArrayRecord, group: int = 0) -> ArrayRecord:
        """The parameters the server evaluates (the global model here; ``fedsec.app.server.EvaluationView``)."""
        return arrays

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        side = self.side_record(server_round)
        if side is not None:
            for message in messages:
                message.content[SIDE] = side
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        grads = []
        for reply in replies:
            side = reply.content.array_records.get(SIDE)
            if side is None:
                continue
            del reply.content[SIDE]  # the inner strategy expects exactly one ArrayRecord
            try:
                grads.append(from_record(side))
            except ValueError as err:
                log.error("round %d: class gradients of client %d rejected: %s", server_round,
                          partition_id(reply.content), err)
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        self.absorb(server_round, grads, arrays)
        return arrays, metrics


# config name -> (inner strategy, config) -> wrapped strategy; "none" leaves the strategy as it is
RebalancerBuilder = Callable[[Strategy, Config], Strategy]
REBALANCERS.register("none")(None)
