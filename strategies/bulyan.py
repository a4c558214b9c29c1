"""Bulyan (El Mhamdi, Guerraoui, Rouault, ICML 2018), Flower's built-in with exact distances.

Multi-Krum selects theta = n - 2f updates; of those, every coordinate is
averaged over the beta = theta - 2f values closest to its median. Needs
n >= 4f + 3 (f = ``krum.byzantine``). The Multi-Krum step uses
:class:`strategies.krum.UpdateKrumSelection` (squared distances between updates
in float64) instead of Flower's float32 expansion on whole weight vectors.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Bulyan

from fedsec.config import Config
from strategies.krum import KrumParams, UpdateKrumSelection
from strategies.registry import STRATEGIES, sampling_kwargs


class ExactBulyan(Bulyan):
    """Flower's Bulyan whose selection rule sees the round's global model."""

    def __init__(self, **kwargs: object) -> None:
        self.selection = UpdateKrumSelection()
        super().__init__(**kwargs, selection_rule=self.selection)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.selection.reference = arrays
        return super().configure_train(server_round, arrays, config, grid)


@STRATEGIES.register("bulyan", params=KrumParams)
def bulyan(cfg: Config) -> Bulyan:
    return ExactBulyan(**sampling_kwargs(cfg), num_malicious_nodes=cfg.krum.byzantine)
