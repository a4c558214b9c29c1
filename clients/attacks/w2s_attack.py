"""W2SAttack: weak-to-strong backdoor through contrastive knowledge distillation.

Paper: S. Zhao, L. Gan, Z. Guo, X. Wu, L. Xiao, X. Xu, C.-D. Nguyen, L. A. Tuan,
"Weak-to-Strong Backdoor Attack for Large Language Models" (arXiv:2409.17946);
code: github.com/shuaizhao95/w2sattack (``opt/w2sattack.py``).

PEFT students (LoRA) learn a backdoor poorly from poisoned data alone. The
malicious client therefore fully fine-tunes a small teacher on its poisoned
rows (``attack.w2s_teacher``, with a projection head into the student's width,
``clients.teacher``), then trains its LoRA student on the same rows with

    L = a CE(z_s, y) + b MSE(z_s, z_t) + c (1/N) sum_i ||h_s(x_i) - P h_t(x_i)||^2

(z: logits; MSE: ``nn.MSELoss`` over all logits; h: last-layer features; the
feature term is the code's ``contrastive_loss``, the mean squared L2 distance,
summed over the feature dimension). Defaults are the official OPT-1.3B setting:
a, b, c = ``attack.w2s_ce`` 6, ``w2s_logits`` 6, ``w2s_features`` 0.004; the
student trains at ``attack.w2s_lr`` 2e-5 (AdamW, no schedule); the teacher
(BERT-base in the paper, ``minilm`` offline here) at ``w2s_teacher_lr`` 2e-5 for
``w2s_teacher_epochs`` 5 with a 6 % linear warm-up.

Variant from the code: the official loss aligns every student token with the
teacher vector of the LAST sample of the batch (``hidden_states[-1]`` of a
[batch, width] tensor), a bug noted in ``shared/METHODS.md``; fedsec aligns each
sample's first-token features with its own teacher vector. The teacher is
trained once per process and reused in later rounds.
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


@LOCAL_TRAININGS.register("w2s_attack")
class W2SAttack(LocalTraining):
    """The malicious client's training step: distil a poisoned full-FT teacher into the PEFT student."""

    def __call__(self, client: HonestClient, data: Batch, seed: int, proximal_mu: float) -> float:
        attack = self.cfg.attack
        guided = guided_data(client, data, attack.w2s_teacher, attack.w2s_teacher_epochs, attack.w2s_teacher_lr)
        a, b, c = attack.w2s_ce, attack.w2s_logits, attack.w2s_features

        def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
            features, logits = model.features(**model_inputs(batch))
            return (a * F.cross_entropy(logits, batch["labels"])
                    + b * F.mse_loss(logits, batch["teacher_logits"])
                    + c * feature_distance(features, batch["teacher_features"]))

        schedule = dataclasses.replace(self.cfg.client, lr=attack.w2s_lr)
        return train(client.experiment.model, guided, schedule, client.device, seed=seed,
                     proximal_mu=proximal_mu, loss_fn=loss, gradient_mask=client.gradient_mask)
