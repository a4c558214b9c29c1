"""W2SAttack: weak-to-strong backdoor through contrastive knowledge distillation.

Paper: S. Zhao, L. Gan, Z. Guo, X. Wu, L. Xiao, X. Xu, C.-D. Nguyen, L. A. Tuan,
"Weak-to-Strong Backdoor Attack for Large Language Models" (arXiv:2409.17946);
code: github.com/shuaizhao95/w2sattack.

PEFT students (LoRA) learn a backdoor poorly from poisoned data alone. The
malicious client therefore fully fine-tunes a small teacher on its poisoned
rows (``attack.w2s_teacher``, with a projection head into the student's width,
``clients.teacher``), then trains its LoRA student on the same rows with

    L = a CE(z_s, y) + b MSE(z_s, z_t) + c (1/N) sum_i ||h_s(x_i) - P h_t(x_i)||^2 / d_s

(z: logits, h: last-layer first-token features, a, b, c = ``attack.w2s_ce``,
``w2s_logits``, ``w2s_features``). The feature term aligns every sample with
its own teacher vector (the official code aligns all tokens with the last
sample's teacher vector, a bug noted in ``shared/METHODS.md``). The teacher is
trained once per process and reused in later rounds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clients.honest import LOCAL_TRAININGS, HonestClient, LocalTraining
from clients.teacher import guided_data
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
                    + c * F.mse_loss(features, batch["teacher_features"]))

        return train(client.experiment.model, guided, self.cfg.client, client.device, seed=seed,
                     proximal_mu=proximal_mu, loss_fn=loss)
