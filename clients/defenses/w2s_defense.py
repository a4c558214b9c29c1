"""W2SDefense: weak-to-strong unlearning of a backdoor through knowledge distillation.

Paper: S. Zhao, X. Wu, C.-D. Nguyen, M. Jia, Y. Feng, L. A. Tuan, "Unlearning
Backdoor Attacks for LLMs with Weak-to-Strong Knowledge Distillation"
(arXiv:2410.14425); code: github.com/shuaizhao95/w2sdefense.

A defended client fully fine-tunes a small clean teacher on its own rows
(``defense.teacher``, with a projection head into the student's width,
``clients.teacher``) and trains the received (possibly backdoored) PEFT
student on the same rows with

    L = a CE(z_s, y) + b T^2 KL(softmax(z_t / T) || softmax(z_s / T)) + c MSE(h_s, P h_t)

(a, b, c = ``defense.w2s_ce``, ``w2s_kl``, ``w2s_features``; T =
``defense.temperature``; the paper's setting for LLMs is 5, 0.001, 0.001 at
T = 2). The clean teacher pulls the student's outputs and features on clean
inputs towards a model that never saw the trigger. The teacher is trained once
per process and reused in later rounds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clients.honest import LOCAL_TRAININGS, HonestClient, LocalTraining
from clients.teacher import guided_data
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
                    + c * F.mse_loss(features, batch["teacher_features"]))

        return train(client.experiment.model, guided, self.cfg.client, client.device, seed=seed,
                     proximal_mu=proximal_mu, loss_fn=loss)
