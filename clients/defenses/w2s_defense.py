"""W2SDefense: weak-to-strong unlearning of a backdoor through knowledge distillation.

Paper: S. Zhao, X. Wu, C.-D. Nguyen, M. Jia, Y. Feng, L. A. Tuan, "Unlearning
Backdoor Attacks for LLMs with Weak-to-Strong Knowledge Distillation"
(arXiv:2410.14425); code: github.com/shuaizhao95/w2sdefense (``word/unlearning.py``).

A defended client fully fine-tunes a small clean teacher on its own rows
(``w2s_defense.teacher``, with a projection head into the student's width,
``clients.teacher``) and trains the received (possibly backdoored) PEFT
student on the same rows with

    L = a CE(z_s, y) + b T^2 KL(softmax(z_t / T) || softmax(z_s / T)) + c (1/N) sum_i ||h_s(x_i) - P h_t(x_i)||^2

(``F.kl_div(log_softmax(z_s / T), softmax(z_t / T), reduction="batchmean")``;
the feature term is the code's mean squared L2 distance, summed over the feature
dimension). Defaults are the official word-trigger setting: a, b, c =
``w2s_defense.ce`` 5, ``kl`` 0.001, ``features`` 0.001, T =
``w2s_defense.temperature`` 2; the student trains at ``w2s_defense.lr`` 2e-4 (the
code's linear schedule without warm-up is not reproduced: AdamW at a constant
rate), the teacher (BERT-base in the paper, ``minilm`` offline) at
``w2s_defense.teacher_lr`` 2e-5 for ``teacher_epochs`` 5 with a 6 % linear warm-up.
As in W2SAttack, each sample is aligned with its own teacher vector (the code
broadcasts the last sample's). The teacher is trained once per process and reused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clients.honest import LOCAL_TRAININGS, HonestClient, LocalTraining
from clients.teacher import TeacherParams, feature_distance, guided_data
from fedsec.config import Config, param
from fedsec.experiment import Batch
from fedsec.registry import CLASSIFICATION, Traits
from fedsec.training import model_inputs, train


@dataclass
class W2SDefenseParams(TeacherParams):
    section = "w2s_defense"
    renamed = {  # keys before fedsec 0.2
        "defense.teacher_epochs": "w2s_defense.teacher_epochs",
        "defense.teacher_lr": "w2s_defense.teacher_lr",
        "defense.teacher": "w2s_defense.teacher",
        "defense.w2s_lr": "w2s_defense.lr",
        "defense.w2s_ce": "w2s_defense.ce",
        "defense.w2s_kl": "w2s_defense.kl",
        "defense.w2s_features": "w2s_defense.features",
        "defense.temperature": "w2s_defense.temperature",
    }
    lr: float = param(2e-4, "the PEFT student's learning rate")
    ce: float = param(5.0, "a: weight of the cross-entropy")
    kl: float = param(0.001, "b: weight of the T^2 KL to the teacher")
    features: float = param(0.001, "c: weight of the feature distance to the projected teacher")
    temperature: float = param(2.0, "T of the distillation")

    def check(self, cfg: Config) -> None:
        super().check(cfg)
        self.positive("temperature")


@LOCAL_TRAININGS.register("w2s_defense", params=W2SDefenseParams,
                          traits=Traits(modalities=CLASSIFICATION, selectors=("defense.local_training",),
                                        requires=frozenset({"features"})))
class W2SDefense(LocalTraining):
    """The defended client's training step: distil a clean full-FT teacher into the PEFT student."""

    def __call__(self, client: HonestClient, data: Batch, seed: int, proximal_mu: float) -> float:
        p = self.cfg.w2s_defense
        guided = guided_data(client, data, p.teacher, p.teacher_epochs, p.teacher_lr)
        a, b, c, t = p.ce, p.kl, p.features, p.temperature

        def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
            features, logits = model.features(**model_inputs(batch))
            kl = F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(batch["teacher_logits"] / t, dim=1),
                          reduction="batchmean")
            return (a * F.cross_entropy(logits, batch["labels"]) + b * t * t * kl
                    + c * feature_distance(features, batch["teacher_features"]))

        schedule = dataclasses.replace(self.cfg.client, lr=p.lr)
        return train(client.experiment.model, guided, schedule, client.device, seed=seed,
                     proximal_mu=proximal_mu, loss_fn=loss, hooks=client.step_hooks)
