"""A strategy that holds an inner strategy and delegates to it (the base of fedsec's wrappers).

Flower's differential-privacy strategies hold an inner strategy the same way.
:class:`StrategyWrapper` hands every call to ``inner`` and remembers the global
model of the round (``current``); subclasses override only what they change:
server defenses (:mod:`strategies.update_filter`) the updates before
aggregation, re-balancers (:mod:`strategies.rebalancer`) the side records that
travel beside the model.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class StrategyWrapper(Strategy):
    """Delegate everything to ``inner``; ``current`` is the model sent in this round."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.current: ArrayRecord | None = None

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.current = arrays
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)
