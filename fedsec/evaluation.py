"""The server's test evaluation of classification tasks (modalities ``text`` and ``image``).

Each modality's evaluation is registered in ``fedsec.registry.EVALUATORS`` under the
modality's name (translation: ``fedsec.translation``; instruction tuning:
``fedsec.instruction``); ``fedsec.app.server.central_evaluation`` picks the one the
data declare. Classification reports clean accuracy and loss on the held-out test
split, many-, medium- and few-shot accuracy on long-tailed data, and every
registered ``EVALUATION_METRICS`` entry (a backdoor's ASR, metrics after an
inference filter), computed from the same clean test logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord

from fedsec.experiment import Experiment
from fedsec.metrics import headline
from fedsec.params import set_arrays
from fedsec.registry import EVALUATION_METRICS, EVALUATORS
from fedsec.training import device_for, predict

for _shots in ("many", "medium", "few"):
    headline(f"{_shots}_accuracy", f"{_shots}-shot accuracy")


@EVALUATORS.register("text")
@EVALUATORS.register("image")
def classification_metrics(experiment: Experiment, arrays: ArrayRecord,
                           arrays_for: Callable[[int], ArrayRecord] | None = None) -> dict[str, Any]:
    """Accuracy and loss of ``arrays`` on the test split, shot accuracy on long-tailed data and
    every registered evaluation metric (one model for every test row: ``arrays_for`` is unused)."""
    set_arrays(experiment.model, arrays)
    cfg = experiment.cfg
    device = device_for(cfg.federation.num_gpus)
    logits = predict(experiment.model, experiment.test_data, cfg.client.eval_batch_size, device)
    labels = experiment.test_data["labels"]
    result = {"accuracy": (logits.argmax(1) == labels).float().mean().item(),
              "loss": F.cross_entropy(logits, labels).item()}
    if cfg.data.partitioner == "longtail":
        result.update(shot_accuracy(experiment, logits))
    for entry in EVALUATION_METRICS.entries():
        result.update(entry.obj(experiment, logits, device))
    return result


def shot_accuracy(experiment: Experiment, logits: torch.Tensor) -> dict[str, float]:
    """Test accuracy over the classes with more than ``data.many_shot`` training samples (many),
    fewer than ``data.few_shot`` (few) and the rest (medium)."""
    data, labels = experiment.cfg.data, experiment.test_data["labels"]
    counts = experiment.class_counts
    groups = {"many": counts > data.many_shot, "few": counts < data.few_shot}
    groups["medium"] = ~(groups["many"] | groups["few"])
    correct = logits.argmax(1) == labels
    result = {}
    for name, classes in groups.items():
        rows = classes[labels]
        if rows.any():
            result[f"{name}_accuracy"] = correct[rows].float().mean().item()
    return result
