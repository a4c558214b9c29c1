"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, NeurIPS 2017), Flower's built-ins.

With n updates of which f (``strategy.byzantine``) may be Byzantine, each
update gets the score s_i = sum of its squared distances to its n - f - 2
nearest neighbours; Krum keeps the single lowest-scoring update, Multi-Krum
averages the m lowest (``strategy.multikrum_keep``, default n - f). fedsec's
subclass only adds the report of which clients were not selected.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import MultiKrum, Strategy
from flwr.serverapp.strategy.multikrum import select_multikrum
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from fedsec.config import Config
from strategies.registry import STRATEGIES, sampling_kwargs
from strategies.update_filter import REJECTED_KEY, partition_id


class ReportingMultiKrum(MultiKrum):
    """Flower's MultiKrum that reports the partition ids it left out (``defense-rejected``)."""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [m.content for m in valid]
        selected = select_multikrum(contents, self.num_malicious_nodes, self.num_nodes_to_select)
        metrics = self.train_metrics_aggr_fn(selected, self.weighted_by_key)
        chosen = {id(c) for c in selected}
        metrics[REJECTED_KEY] = sorted(partition_id(c) for c in contents if id(c) not in chosen)
        return aggregate_arrayrecords(selected, self.weighted_by_key), metrics


@STRATEGIES.register("krum")
def krum(cfg: Config) -> Strategy:
    return ReportingMultiKrum(**sampling_kwargs(cfg), num_malicious_nodes=cfg.strategy.byzantine,
                              num_nodes_to_select=1)


@STRATEGIES.register("multikrum")
def multikrum(cfg: Config) -> Strategy:
    s = cfg.strategy
    keep = s.multikrum_keep or cfg.federation.clients_per_round - s.byzantine
    return ReportingMultiKrum(**sampling_kwargs(cfg), num_malicious_nodes=s.byzantine, num_nodes_to_select=keep)
