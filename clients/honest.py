"""The honest client: local training and evaluation of the global trainable tensors."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

from clients.attacks.data_poison import DataPoison
from fedsec.experiment import Batch, Experiment
from fedsec.params import get_arrays, set_arrays
from fedsec.training import device_for, evaluate, train


class HonestClient:
    """Trains the received parameters on its partition and returns them.

    Seeds are derived from (``run.seed``, round, partition id), so a client's
    update is reproducible whichever Ray worker runs it.
    """

    def __init__(self, experiment: Experiment, partition_id: int, poison: DataPoison | None = None) -> None:
        """``poison`` (a malicious client's data poison) wraps the training data."""
        self.experiment = experiment
        self.partition_id = partition_id
        self.poison = poison
        self.device = device_for(experiment.cfg.federation.num_gpus)

    def training_data(self) -> Batch:
        """The partition, featurized; passed through the data poison if there is one."""
        exp, pid, poison = self.experiment, self.partition_id, self.poison
        if poison is None:
            return exp.client_data(pid)
        return exp.cached(("poisoned", pid), lambda: exp.featurize(poison.poison(exp.client_dataset(pid))))

    def seed(self, server_round: int) -> int:
        """Per-round, per-client seed."""
        return (self.experiment.cfg.run.seed * 1_000_003 + server_round * 10_007 + self.partition_id) % 2**31

    def fit(self, arrays: ArrayRecord, config: ConfigRecord) -> tuple[ArrayRecord, MetricRecord]:
        """One round of local training; returns the new trainable tensors and metrics."""
        exp = self.experiment
        server_round = int(config["server-round"])
        torch.manual_seed(self.seed(server_round))
        set_arrays(exp.model, arrays)
        data = self.training_data()
        loss = train(
            exp.model,
            data,
            exp.cfg.client,
            self.device,
            seed=self.seed(server_round),
            proximal_mu=float(config.get("proximal-mu", 0.0)),
        )
        metrics = MetricRecord({"num-examples": len(data["labels"]), "train_loss": loss})
        return get_arrays(exp.model), metrics

    def evaluate(self, arrays: ArrayRecord, config: ConfigRecord) -> MetricRecord:
        """Loss and accuracy of the received parameters on the local partition."""
        exp = self.experiment
        set_arrays(exp.model, arrays)
        data = exp.client_data(self.partition_id)
        loss, accuracy = evaluate(exp.model, data, exp.cfg.client.eval_batch_size, self.device)
        return MetricRecord({"num-examples": len(data["labels"]), "loss": loss, "accuracy": accuracy})
