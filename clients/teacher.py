"""A small teacher for weak-to-strong distillation (W2SAttack, W2SDefense).

The teacher is a small model fine-tuned fully on a client's rows, with a
projection head P into the student's feature width d_s: its features are
f_t(x) = P h_t(x) (h_t: the teacher's sentence / penultimate features, see
the models' ``features``) and its logits are
a linear head on f_t, so P is trained by the teacher's own cross-entropy and
f_t lives where the student's features h_s(x) can be aligned to it. After
training the teacher is fixed; its per-sample outputs are computed once and
gathered by each sample's ``row_index`` into extra tensors
``teacher_features`` / ``teacher_logits`` next to the student's inputs, so the
student's batches stay aligned sample by sample (also after a data filter).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from fedsec.config import ClientConfig, Config, ConfigError, MethodParams, ModelConfig, check_model_modality, param
from fedsec.experiment import Batch, Experiment
from fedsec.models import build_model
from fedsec.registry import DATASETS
from fedsec.training import batches, model_inputs, predict, train

if TYPE_CHECKING:
    from clients.honest import HonestClient

log = logging.getLogger("fedsec")


@dataclass
class TeacherParams(MethodParams):
    """The parameters every weak-to-strong training step shares: its full-FT teacher and the student's rate."""

    teacher: str = param("minilm", "the full-FT teacher (a model name; the paper: BERT-base)")
    teacher_epochs: int = param(5, "teacher epochs on the client's training rows")
    teacher_lr: float = param(2e-5, "teacher learning rate (6 % linear warm-up)")
    lr: float = param(2e-5, "the PEFT student's learning rate")

    def check(self, cfg: Config) -> None:
        modality = DATASETS.entry(cfg.data.name).traits.modalities
        if modality is not None:
            check_model_modality(f"{self.section}.teacher", self.teacher, cfg, next(iter(modality)))
        self.positive("teacher_epochs", "teacher_lr", "lr")


class ProjectedTeacher(nn.Module):
    """A fully trainable small model, a projection to width ``width`` and a class head."""

    def __init__(self, backbone: nn.Module, width: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.project = nn.Linear(backbone.hidden_size, width)
        self.head = nn.Linear(width, num_classes)

    def features(self, **inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(projected features f_t, logits)."""
        hidden, _ = self.backbone.features(**inputs)
        projected = self.project(hidden)
        return projected, self.head(projected)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.features(**inputs)[1]


TEACHER_WARMUP = 0.06  # the official teachers' linear warm-up (w2sdefense ``modified_bert.py``)


def feature_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The official ``contrastive_loss``: mean over samples of the squared L2 distance
    ||h_s - P h_t||^2 (summed over the feature dimension, not averaged over it)."""
    return (student.float() - teacher.float()).pow(2).sum(dim=-1).mean()


def require_features(model: nn.Module, who: str) -> nn.Module:
    """Distillation needs a model with ``features(**inputs) -> (features, logits)`` and ``hidden_size``."""
    if not (hasattr(model, "features") and hasattr(model, "hidden_size")):
        raise ConfigError(f"{who}: {type(model).__name__} exposes no features to align")
    return model


def teacher_outputs(
    experiment: Experiment,
    rows: Dataset,
    teacher: ModelConfig,
    training: ClientConfig,
    seed: int,
    device: torch.device,
    who: str,
) -> Batch:
    """Fine-tune a projected teacher on ``rows``; return its features and logits for every row. Its
    quality (:func:`teacher_quality`) is logged, naming ``who`` trained it."""
    student = require_features(experiment.model, "weak-to-strong distillation")
    backbone = require_features(build_model(teacher, experiment.cfg.data, experiment.splits, seed), "the teacher")
    model = ProjectedTeacher(backbone, student.hidden_size, experiment.num_classes)
    data = backbone.featurize(rows)
    data["labels"] = torch.as_tensor(np.asarray(rows[:]["label"]), dtype=torch.long)
    train(model, data, training, device, seed=seed, warmup=TEACHER_WARMUP)
    model.eval()
    quality = teacher_quality(experiment, backbone, model, training.batch_size, device)
    log.info("teacher of %s (%s, %d rows, %d epochs at lr %g): %s on the server's evaluation split", who,
             teacher.name, len(rows), training.epochs, training.lr,
             ", ".join(f"{k} {v:.3f}" for k, v in quality.items()))
    features, logits = [], []
    with torch.no_grad():
        for batch in batches(data, training.batch_size):
            f, z = model.features(**{k: v.to(device) for k, v in model_inputs(batch).items()})
            features.append(f.cpu())
            logits.append(z.cpu())
    return {"teacher_features": torch.cat(features), "teacher_logits": torch.cat(logits)}


def teacher_quality(experiment: Experiment, backbone: nn.Module, model: nn.Module, batch_size: int,
                    device: torch.device) -> dict[str, float]:
    """The trained teacher's accuracy on the server's evaluation split and, where the configured backdoor
    has a trigger, its ASR on that split's triggered non-target rows (the server's ASR test set): what the
    student is distilled from (W2SAttack needs a backdoored teacher, W2SDefense a clean one). A diagnostic
    for the run's log; nothing trains on these rows."""
    from clients.attacks.data_poison import server_poison

    def predicted(rows: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        data = backbone.featurize(rows)
        data["labels"] = torch.as_tensor(np.asarray(rows[:]["label"]), dtype=torch.long)
        return predict(model, data, batch_size, device).argmax(1), data["labels"]

    test = experiment.splits.test
    guess, labels = predicted(test)
    quality = {"accuracy": (guess == labels).float().mean().item()}
    triggered = server_poison(experiment.cfg, experiment.num_classes).triggered_test(test)
    if triggered is not None and len(triggered):
        quality["asr"] = (predicted(triggered)[0] == experiment.cfg.attack.target_label).float().mean().item()
    return quality


def guided_data(client: HonestClient, data: Batch, name: str, epochs: int, lr: float) -> Batch:
    """``data`` plus the outputs of the client's teacher ``name`` (trained once per process on its rows)."""
    exp, cfg = client.experiment, client.experiment.cfg
    schedule = ClientConfig(epochs=epochs, batch_size=cfg.client.batch_size, optimizer="adamw", lr=lr)
    outputs = exp.cached(
        ("teacher", name, client.partition_id, client.poison is not None),
        lambda: teacher_outputs(exp, client.training_dataset(), ModelConfig(name=name, peft="none"), schedule,
                                cfg.run.seed + client.partition_id, client.device,
                                f"client {client.partition_id}"),
    )
    return with_teacher(data, outputs)


def with_teacher(data: Batch, outputs: Batch) -> Batch:
    """``data`` plus the teacher's outputs for each of its rows (by ``row_index``)."""
    index = data["row_index"]
    return {**data, **{k: v[index] for k, v in outputs.items()}}
