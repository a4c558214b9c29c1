"""RedGrape, client side: local real data + global gradient prototypes re-balance the classifier.

Paper: "Integrating Local Real Data with Global Gradient Prototypes for
Classifier Re-Balancing in Federated Long-Tailed Learning" (W. Yang et al.);
server side in ``strategies/redgrape.py``.

The model has a main classifier ``fc`` and an extra classifier ``extra``
(``model.extra_classifier``): training uses the logits fc(h) + extra(h),
inference fc(h) alone. Each round the client

1. computes its gradient prototypes with the received global model (fc logits,
   ``fedsec.class_gradients``) and sends them with its update;
2. builds a local balanced set: T = ``redgrape.balanced_per_class`` real samples
   of every local class that has at least T (the set C_loc);
3. per batch, with the global prototypes P_c received from the server:
   G_loc = d CE(fc(h(x_bal)), y_bal) / d fc on the balanced set,
   G = (|C_loc| G_loc + (C - |C_loc|) mean_{c in missing} P_c) / C, where missing
   are the classes with a prototype that are not in C_loc;
   back-propagates CE(fc(h) + extra(h), y) on the batch, rescales G to the norm
   of fc's gradient, clips all gradients to norm 1, takes the optimiser step and
   then fc <- fc - lr * lambda * G (lambda = ``redgrape.prototype_scale``).

In round 1 there are no prototypes yet and the step is plain training of the
summed heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clients.honest import LOCAL_TRAININGS, HonestClient, LocalTraining
from fedsec.class_gradients import ClassGradient, from_record, gradient_prototypes, to_record
from fedsec.experiment import Batch
from fedsec.registry import CLASSIFICATION, Traits
from fedsec.training import StepHook, model_inputs, train

CLIP_NORM = 1.0


def balanced_rows(labels: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``per_class`` random rows of every class that has at least that many."""
    picks = []
    for c in labels.unique().tolist():
        rows = torch.nonzero(labels == c).flatten()
        if len(rows) >= per_class:
            picks.append(rows[torch.randperm(len(rows), generator=generator)[:per_class]])
    return torch.cat(picks) if picks else torch.zeros(0, dtype=torch.long)


def summed_heads(model: nn.Module, batch: Batch) -> torch.Tensor:
    """CE(fc(h) + extra(h), y): training sees both classifiers' logits."""
    hidden, logits = model.features(**model_inputs(batch))
    return F.cross_entropy(logits + model.extra(hidden), batch["labels"])


class PrototypeStep(StepHook):
    """Per step: G from the balanced set and the missing classes' prototypes (before the batch),
    G rescaled to the norm of fc's gradient and all gradients clipped to norm 1 (before the
    optimiser step), then fc <- fc - lr * lambda * G (after it)."""

    def __init__(self, balanced: Batch, missing: list[ClassGradient], prototypes: bool, scale: float) -> None:
        self.balanced, self.missing, self.prototypes, self.scale = balanced, missing, prototypes, scale
        self.target: list[torch.Tensor] | None = None

    def before_batch(self, model: nn.Module, batch: Batch) -> None:
        self.target = completed_gradient(model, self.balanced, self.missing) if self.prototypes else None

    def on_gradients(self, model: nn.Module, batch: Batch) -> None:
        if self.target is not None:  # G takes the norm of fc's own gradient, per tensor
            self.target = [g * (p.grad.norm() / g.norm().clamp_min(1e-12))
                           for g, p in zip(self.target, (model.fc.weight, model.fc.bias), strict=True)]
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], CLIP_NORM)

    def after_step(self, model: nn.Module, batch: Batch, lr: float) -> None:
        if self.target is not None and all(bool(torch.isfinite(g).all()) for g in self.target):
            with torch.no_grad():
                for p, g in zip((model.fc.weight, model.fc.bias), self.target, strict=True):
                    p -= lr * self.scale * g


def completed_gradient(model: nn.Module, bal: Batch, missing: list[ClassGradient]) -> list[torch.Tensor] | None:
    """G for fc (weight, bias): the balanced-set gradient completed with the missing classes' prototypes."""
    device = model.fc.weight.device
    num_classes = model.fc.out_features
    if missing:
        proto = [torch.stack([getattr(g, k) for g in missing]).mean(0).to(device) for k in ("weight", "bias")]
    if len(bal["labels"]) == 0:
        return proto if missing else None
    model.zero_grad()
    _, logits = model.features(**model_inputs(bal))
    F.cross_entropy(logits, bal["labels"]).backward()
    local = [model.fc.weight.grad.detach().clone(), model.fc.bias.grad.detach().clone()]
    model.zero_grad()
    if not missing:
        return local
    k = len(bal["labels"].unique())
    return [(g * k + p * (num_classes - k)) / num_classes for g, p in zip(local, proto, strict=True)]


# selected by rebalance.method (clients.roles), not by a local-training key
@LOCAL_TRAININGS.register("redgrape", traits=Traits(modalities=CLASSIFICATION, selectors=(), gradient_steps_only=False))
class RedGrapeTraining(LocalTraining):
    """Local training with the extra classifier and the prototype-completed classifier gradient,
    as step hooks of ``fedsec.training.train`` (so mixed precision, FedProx and Neurotoxin's
    per-step mask apply as in every other training step)."""

    def __call__(self, client: HonestClient, data: Batch, seed: int, proximal_mu: float) -> float:
        model, device, cfg = client.experiment.model, client.device, self.cfg
        client.side_out = to_record(gradient_prototypes(model, data, cfg.client.eval_batch_size, device))
        prototypes = from_record(client.side_in) if client.side_in is not None else {}
        generator = torch.Generator().manual_seed(seed)  # draws the balanced set, then shuffles the batches
        balanced = balanced_rows(data["labels"], cfg.redgrape.balanced_per_class, generator)
        local_classes = set(data["labels"][balanced].tolist())
        missing = [prototypes[c] for c in sorted(prototypes) if c not in local_classes]
        model.to(device)
        step = PrototypeStep({k: v[balanced].to(device) for k, v in data.items()}, missing, bool(prototypes),
                             cfg.redgrape.prototype_scale)
        return train(model, data, cfg.client, device, seed=seed, proximal_mu=proximal_mu, loss_fn=summed_heads,
                     hooks=[*client.step_hooks, step], generator=generator)
