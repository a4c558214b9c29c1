"""W2SAttack: weak-to-strong backdoor through contrastive knowledge distillation.

Paper: S. Zhao, L. Gan, Z. Guo, X. Wu, L. Xiao, X. Xu, C.-D. Nguyen, L. A. Tuan,
"Weak-to-Strong Backdoor Attack for Large Language Models" (arXiv:2409.17946);
code: github.com/shuaizhao95/w2sattack (``opt/w2sattack.py``).

PEFT students (LoRA) learn a backdoor poorly from poisoned data alone. The
malicious client therefore fully fine-tunes a small teacher on its poisoned
rows (``w2s_attack.teacher``, with a projection head into the student's width,
``clients.teacher``), then trains its LoRA student on the same rows with

    L = a CE(z_s, y) + b MSE(z_s, z_t) + c (1/N) sum_i ||h_s(x_i) - P h_t(x_i)||^2

(z: logits; MSE: ``nn.MSELoss`` over all logits; h: last-layer features; the
feature term is the code's ``contrastive_loss``, the mean squared L2 distance,
summed over the feature dimension). Defaults are the official OPT-1.3B setting:
a, b, c = ``w2s_attack.ce`` 6, ``logits`` 6, ``features`` 0.004; the
student trains at ``w2s_attack.lr`` 2e-5 (AdamW, no schedule); the teacher
(BERT-base in the paper, ``minilm`` offline here) at ``w2s_attack.teacher_lr`` 2e-5 for
``teacher_epochs`` 5 with a 6 % linear warm-up.

Variant from the code: the official loss aligns every student token with the
teacher vector of the LAST sample of the batch (``hidden_states[-1]`` of a
[batch, width] tensor), a bug noted in ``shared/METHODS.md``; fedsec aligns each
sample's first-token features with its own teacher vector. The teacher is
trained once per process and reused in later rounds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clients.honest import LOCAL_TRAININGS, HonestClient, LocalTraining
from clients.teacher import TeacherParams, feature_distance, guided_data
from fedsec.config import param
from fedsec.experiment import Batch
from fedsec.registry import CLASSIFICATION, Traits
from fedsec.training import model_inputs, train


@dataclass
class W2SAttackParams(TeacherParams):
    section = "w2s_attack"
    renamed = {  # keys before fedsec 0.2
        "attack.w2s_teacher_epochs": "w2s_attack.teacher_epochs",
        "attack.w2s_teacher_lr": "w2s_attack.teacher_lr",
        "attack.w2s_teacher": "w2s_attack.teacher",
        "attack.w2s_lr": "w2s_attack.lr",
        "attack.w2s_ce": "w2s_attack.ce",
        "attack.w2s_logits": "w2s_attack.logits",
        "attack.w2s_features": "w2s_attack.features",
    }
    ce: float = param(6.0, "a: weight of the cross-entropy")
    logits: float = param(6.0, "b: weight of the logit MSE to the teacher")
    features: float = param(0.004, "c: weight of the feature distance to the projected teacher")


@LOCAL_TRAININGS.register("w2s_attack", params=W2SAttackParams,
                          traits=Traits(modalities=CLASSIFICATION, selectors=("attack.local_training",),
                                        requires=frozenset({"features"})))
class W2SAttack(LocalTraining):
    """The malicious client's training step: distil a poisoned full-FT teacher into the PEFT student."""

    def __call__(self, client: HonestClient, data: Batch, seed: int, proximal_mu: float) -> float:
        p = self.cfg.w2s_attack
        guided = guided_data(client, data, p.teacher, p.teacher_epochs, p.teacher_lr)
        a, b, c = p.ce, p.logits, p.features

        def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
            features, logits = model.features(**model_inputs(batch))
            return (a * F.cross_entropy(logits, batch["labels"])
                    + b * F.mse_loss(logits, batch["teacher_logits"])
                    + c * feature_distance(features, batch["teacher_features"]))

        schedule = dataclasses.replace(self.cfg.client, lr=p.lr)
        return train(client.experiment.model, guided, schedule, client.device, seed=seed,
                     proximal_mu=proximal_mu, loss_fn=loss, hooks=client.step_hooks)
