"""Per-class gradients of the linear classifier, as RedGrape and CReFF exchange them.

For a sample with penultimate features h and logits z = W h + b, the
cross-entropy gradient with respect to the classifier is analytic:

    dL/dW = (softmax(z) - e_y) h^T,    dL/db = softmax(z) - e_y.

A client averages it over its samples of each class c (its "gradient
prototype" of c) and sends, per class, the weight and bias gradients and the
sample count. The server's average over clients is weighted by those counts.

Privacy: the classes a client sends, and their counts, are its class histogram;
a per-class gradient also reveals the mean features of that class. RedGrape and
CReFF share this exposure (see docs/methods/longtail.md). :func:`gradient_prototypes` computes them with a model's
current backbone (RedGrape with its ``fc``, CReFF with its re-trained head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import nn

from fedsec.training import Batch, batches, model_inputs


@dataclass
class ClassGradient:
    """Mean classifier gradient of one class over ``count`` samples."""

    weight: torch.Tensor
    bias: torch.Tensor
    count: int


def class_gradients(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict[int, ClassGradient]:
    """The per-class mean cross-entropy gradient w.r.t. a linear head's weight and bias."""
    residual = torch.softmax(logits.float(), dim=1)
    residual[torch.arange(len(labels)), labels] -= 1.0
    result = {}
    for c in labels.unique().tolist():
        rows = labels == c
        n = int(rows.sum())
        result[c] = ClassGradient(weight=residual[rows].T @ features[rows].float() / n,
                                  bias=residual[rows].mean(0), count=n)
    return result


@torch.no_grad()
def gradient_prototypes(model: nn.Module, data: Batch, batch_size: int, device: torch.device,
                        head: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[int, ClassGradient]:
    """Per-class mean CE gradient of the linear head on ``data`` with the current backbone.

    ``head`` = (W, b) replaces ``model.fc`` in the logits (CReFF's re-trained classifier).
    """
    model.to(device).eval()
    features, logits = [], []
    for batch in batches(data, batch_size):
        h, z = model.features(**{k: v.to(device) for k, v in model_inputs(batch).items()})
        if head is not None:
            z = h @ head[0].to(device).T + head[1].to(device)
        features.append(h.float().cpu())
        logits.append(z.float().cpu())
    return class_gradients(torch.cat(features), torch.cat(logits), data["labels"])


def to_record(grads: dict[int, ClassGradient]) -> ArrayRecord:
    """Encode as ``{c}.weight``, ``{c}.bias``, ``{c}.count`` arrays."""
    record = ArrayRecord()
    for c, g in sorted(grads.items()):
        record[f"{c}.weight"] = Array(g.weight.detach().cpu().numpy())
        record[f"{c}.bias"] = Array(g.bias.detach().cpu().numpy())
        record[f"{c}.count"] = Array(np.array([g.count], dtype=np.int64))
    return record


def from_record(record: ArrayRecord) -> dict[int, ClassGradient]:
    """Decode :func:`to_record`; raises ``ValueError`` on a malformed or non-finite record."""
    classes = sorted({int(key.split(".")[0]) for key in record})
    result = {}
    for c in classes:
        try:
            weight, bias, count = (torch.from_numpy(np.array(record[f"{c}.{k}"].numpy()))
                                   for k in ("weight", "bias", "count"))
        except KeyError as err:
            raise ValueError(f"class {c} lacks {err}") from err
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()) or int(count[0]) <= 0:
            raise ValueError(f"class {c}: non-finite gradient or count {int(count[0])}")
        result[c] = ClassGradient(weight=weight, bias=bias, count=int(count[0]))
    return result


def class_mean(per_client: list[dict[int, ClassGradient]], weighted: bool) -> dict[int, ClassGradient]:
    """Per class, the mean over the clients that hold the class: weighted by their counts
    (``weighted``) or uniform (CReFF's official server); ``count`` is the total either way."""
    members: dict[int, list[ClassGradient]] = {}
    for grads in per_client:
        for c, g in grads.items():
            members.setdefault(c, []).append(g)
    result = {}
    for c, gs in members.items():
        w = torch.tensor([float(g.count) if weighted else 1.0 for g in gs])
        w = w / w.sum()
        result[c] = ClassGradient(weight=sum(wi * g.weight for wi, g in zip(w, gs)),
                                  bias=sum(wi * g.bias for wi, g in zip(w, gs)), count=sum(g.count for g in gs))
    return result
