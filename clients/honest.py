"""The honest client and the two hooks that attacks and defenses wrap.

A client's round is: rows of its partition -> [data poison] -> featurize ->
[data filter] -> training step -> outgoing update [-> model poison Mod]. The
honest client uses the identity at every bracket and cross-entropy as the
training step. Attacks and defenses replace one piece each:

- :class:`DataFilter` (``defense.data_filter``, e.g. PSIM) drops rows;
- :class:`LocalTraining` (``attack.local_training`` / ``defense.local_training``,
  e.g. W2SAttack, W2SDefense) replaces the training step;
- data poisons (``clients.attacks.data_poison``) and model poisons
  (``clients.attacks.model_poison``) wrap the rows and the update.

A training step that exchanges more than the model (RedGrape's gradient
prototypes, CReFF's classifier) reads the instruction's side record from
``client.side_in`` and leaves its reply's in ``client.side_out``
(``fedsec.protocol.SIDE`` in the messages). A model poison that also acts inside
local training (Neurotoxin's per-step mask) adds a step hook to ``client.step_hooks``,
which every training step passes to ``fedsec.training.train``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from datasets import Dataset
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedsec.config import Config
from fedsec.experiment import Batch, Experiment
from fedsec.metrics import headline
from fedsec.params import get_arrays, set_arrays
from fedsec.protocol import FILTER_PREFIX, SERVER_ROUND
from fedsec.registry import DATA_FILTERS, LOCAL_TRAININGS, ROUND_METRICS
from fedsec.training import MaskGradients, StepHook, device_for, evaluate, train

if TYPE_CHECKING:
    from clients.attacks.data_poison import DataPoison
    from clients.attacks.model_poison import GradientMask


class LocalTraining:
    """The honest training step: cross-entropy (plus the FedProx term) for ``client.epochs``."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def __call__(self, client: HonestClient, data: Batch, seed: int, proximal_mu: float) -> float:
        """Train ``client.experiment.model`` in place on ``data``; return the mean loss."""
        return train(client.experiment.model, data, self.cfg.client, client.device, seed=seed,
                     proximal_mu=proximal_mu, hooks=client.step_hooks)


class DataFilter:
    """The honest client keeps all its rows; a defense subclass drops suspicious ones.

    Called every round, after the received global model has been loaded into
    ``client.experiment.model`` (a filter may use it, as PSIM does).
    """

    # what it reports (FILTER_PREFIX keys); clients that do not run it report 0 for each
    metric_keys: tuple[str, ...] = ()

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def __call__(self, client: HonestClient, rows: Dataset, data: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """(boolean mask of the rows to train on, metrics describing the filtering)."""
        return torch.ones(len(data["labels"]), dtype=torch.bool), {}


LOCAL_TRAININGS.register("none")(LocalTraining)
DATA_FILTERS.register("none")(DataFilter)


headline("filter_precision", "data filter precision")
headline("filter_recall", "data filter recall")


@ROUND_METRICS.register("data_filter")
def filter_report(cfg: Config, reply_metrics: list[dict], train_metrics: dict,
                  malicious: set[int]) -> dict[str, float]:
    """Sum the clients' data-filter counts (``filter-*``); precision and recall of the flagging."""
    sums: dict[str, float] = {}
    for metrics in reply_metrics:
        for key, value in metrics.items():
            if key.startswith(FILTER_PREFIX):
                sums[key] = sums.get(key, 0) + value
    for key in [k for k in train_metrics if k.startswith(FILTER_PREFIX)]:  # aggregated counts: reported above
        del train_metrics[key]
    if not sums:
        return {}
    flagged, poisoned, hits = (sums.get(f"{FILTER_PREFIX}{k}", 0) for k in ("flagged", "poisoned", "flagged-poisoned"))
    report = {"filter_flagged": flagged, "filter_poisoned": poisoned, "filter_flagged_poisoned": hits}
    if flagged:
        report["filter_precision"] = hits / flagged
    if poisoned:
        report["filter_recall"] = hits / poisoned
    return report


class HonestClient:
    """Trains the received parameters on its partition and returns them.

    Seeds are derived from (``run.seed``, round, partition id), so a client's
    update is reproducible whichever Ray worker runs it.
    """

    def __init__(
        self,
        experiment: Experiment,
        partition_id: int,
        poison: DataPoison | None = None,
        data_filter: DataFilter | None = None,
        training: LocalTraining | None = None,
        gradient_masks: list[GradientMask] | None = None,
        state: RecordDict | None = None,
    ) -> None:
        self.experiment = experiment
        self.partition_id = partition_id
        self.poison = poison
        self.data_filter = data_filter or DataFilter(experiment.cfg)
        self.training = training or LocalTraining(experiment.cfg)
        self.gradient_masks = gradient_masks or []
        self.state = state if state is not None else RecordDict()  # the node's Context.state
        self.device = device_for(experiment.cfg.federation.num_gpus)
        self.side_in: ArrayRecord | None = None
        self.side_out: ArrayRecord | None = None
        self.step_hooks: list[StepHook] = []  # this round's hooks of fedsec.training.train
        self.server_round = 0  # the round being trained (set by fit before the data filter runs)

    def training_dataset(self) -> Dataset:
        """The rows this client trains on, passed through its data poison if it has one (cached)."""
        exp, pid, poison = self.experiment, self.partition_id, self.poison
        if poison is None:
            return exp.client_dataset(pid)
        return exp.cached(("poisoned-rows", pid), lambda: poison.poison(exp.client_dataset(pid)))

    def training_data(self) -> Batch:
        """:meth:`training_dataset`, featurized, with each sample's ``row_index`` (cached)."""

        def build() -> Batch:
            data = self.experiment.featurize(self.training_dataset())
            data["row_index"] = torch.arange(len(data["labels"]))
            return data

        return self.experiment.cached(("train", self.partition_id, self.poison is not None), build)

    def seed(self, server_round: int) -> int:
        """Per-round, per-client seed."""
        return (self.experiment.cfg.run.seed * 1_000_003 + server_round * 10_007 + self.partition_id) % 2**31

    def fit(self, arrays: ArrayRecord, config: ConfigRecord,
            side: ArrayRecord | None = None) -> tuple[ArrayRecord, MetricRecord]:
        """One round of local training; returns the new trainable tensors and metrics.

        ``side`` is the instruction's side record, if any; the training step's own
        is left in ``self.side_out``.
        """
        exp = self.experiment
        self.side_in, self.side_out = side, None
        self.server_round = int(config[SERVER_ROUND])
        seed = self.seed(self.server_round)
        torch.manual_seed(seed)
        set_arrays(exp.model, arrays)
        data = self.training_data()
        keep, filter_metrics = self.data_filter(self, self.training_dataset(), data)
        if not bool(keep.all()):
            data = {k: v[keep] for k, v in data.items()}
        mask = self._gradient_mask()
        self.step_hooks = [] if mask is None else [MaskGradients(mask)]
        loss = self.training(self, data, seed, float(config.get("proximal-mu", 0.0))) if len(data["labels"]) else 0.0
        # every client sends the same keys (Flower aggregates only identical MetricRecords): clients
        # outside defense.clients report 0 for the configured filter's counts
        unfiltered = dict.fromkeys(DATA_FILTERS[exp.cfg.defense.data_filter].metric_keys, 0)
        metrics = {"num-examples": len(data["labels"]), "train_loss": loss, **unfiltered, **filter_metrics}
        return get_arrays(exp.model), MetricRecord(metrics)

    def _gradient_mask(self) -> dict[str, torch.Tensor] | None:
        """The product of this round's gradient masks (computed on the clean rows), or None."""
        combined = None
        for make in self.gradient_masks:
            mask = make(self, self.experiment.client_data(self.partition_id))
            if mask is not None:
                combined = mask if combined is None else {k: combined[k] * mask[k] for k in combined}
        return combined

    def evaluate(self, arrays: ArrayRecord, config: ConfigRecord) -> MetricRecord:
        """Loss and accuracy of the received parameters on the local partition."""
        exp = self.experiment
        set_arrays(exp.model, arrays)
        data = exp.client_data(self.partition_id)
        loss, accuracy = evaluate(exp.model, data, exp.cfg.client.eval_batch_size, self.device)
        return MetricRecord({"num-examples": len(data["labels"]), "loss": loss, "accuracy": accuracy})
