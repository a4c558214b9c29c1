"""W2SDefense: weak-to-strong unlearning of a backdoor through knowledge distillation.

Paper: S. Zhao, X. Wu, C.-D. Nguyen, M. Jia, Y. Feng, L. A. Tuan, "Unlearning
Backdoor Attacks for LLMs with Weak-to-Strong Knowledge Distillation"
(arXiv:2410.14425); code: github.com/shuaizhao95/w2sdefense (``word/unlearning.py``).

A defended client fully fine-tunes a small clean teacher on its own rows
(``defense.teacher``, with a projection head into the student's width,
``clients.teacher``) and trains the received (possibly backdoored) PEFT
student on the same rows with

    L = a CE(z_s, y) + b T^2 KL(softmax(z_t / T) || softmax(z_s / T)) + c (1/N) sum_i ||h_s(x_i) - P h_t(x_i)||^2

(``F.kl_div(log_softmax(z_s / T), softmax(z_t / T), reduction="batchmean")``;
the feature term is the code's mean squared L2 distance, summed over the feature
dimension). Defaults are the official word-trigger setting: a, b, c =
``defense.w2s_ce`` 5, ``w2s_kl`` 0.001, ``w2s_features`` 0.001, T =
``defense.temperature`` 2; the student trains at ``defense.w2s_lr`` 2e-4 (the
code's linear schedule without warm-up is not reproduced: AdamW at a constant
rate), the teacher (BERT-base in the paper, ``minilm`` offline) at
``defense.teacher_lr`` 2e-5 for ``teacher_epochs`` 5 with a 6 % linear warm-up.
As in W2SAttack, each sample is aligned with its own teacher vector (the code
broadcasts the last sample's). The teacher is trained once per process and reused.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from clients.honest import LOCAL_TRAININGS, HonestClient, LocalTraining
from clients.teacher import feature_distance, guided_data
from fedsec.experiment import Batch
from fedsec.training import model_inputs, train


@LOCAL_TRAININGS.register("w2s_defense")
class W2SDefense(LocalTraining):
    """The defended client's training step: distil a clean full-FT teacher into the PEFT student."""

    def __call__(self, client: HonestClient, data: Batch, seed: int, proximal_mu: float) -> float:
        defense = self.cfg.defense
        guided = guided_data(client, data, defense.teacher, defense.teacher_epochs, defense.teacher_lr)
        a, b, c, t = defense.w2s_ce, defense.w2s_kl, defense.w2s_features, defense.temperature

        def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
            features, logits = model.features(**model_inputs(batch))
            kl = F.kl_div(F.log_softmax(logits / t, dim=1), F.softmax(batch["teacher_logits"] / t, dim=1),
                          reduction="batchmean")
            return (a * F.cross_entropy(logits, batch["labels"]) + b * t * t * kl
                    + c * feature_distance(features, batch["teacher_features"]))

        schedule = dataclasses.replace(self.cfg.client, lr=defense.w2s_lr)
        return train(client.experiment.model, guided, schedule, client.device, seed=seed,
                     proximal_mu=proximal_mu, loss_fn=loss, gradient_mask=client.gradient_mask)
