"""CReFF: classifier re-training with federated features (the RedGrape baseline).

Paper: X. Shang, Y. Lu, G. Huang, H. Wang, "Federated Learning on Heterogeneous
and Long-Tailed Data via Classifier Re-Training with Federated Features",
IJCAI 2022 (code: shangxinyi/CReFF-FL).

The federated model trains as usual (the inner strategy, e.g. FedAvg). Besides,
the server keeps a re-trained classifier (W, b) and S synthetic "federated
features" F_c per class. Each round:

1. every sampled client computes, with the global backbone and (W, b), the mean
   classifier gradient of each of its classes, g_c^real (``clients/creff.py``);
   the server averages them per class (weighted by counts);
2. the features of each class c present are optimised to produce the same
   gradient: min_F sum_c [1 - cos(gW_c(F_c), gW_c^real)] + [1 - cos(gb_c(F_c), gb_c^real)],
   where gW_c(F_c) = mean_{f in F_c} (softmax(W f + b) - e_c) f^T (``feature_steps``
   steps of SGD at ``feature_lr``);
3. a fresh linear classifier is trained on all synthetic features with
   cross-entropy (``classifier_epochs`` epochs at ``classifier_lr``) and becomes
   (W, b): it is sent to the next round's clients and it replaces ``fc`` when
   the server evaluates (the federated ``fc`` itself keeps training).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import Strategy
from torch import nn

from fedsec.class_gradients import ClassGradient, weighted_mean
from fedsec.config import Config
from strategies.rebalancer import HEAD, REBALANCERS, Rebalancer

BATCH_SIZE = 100  # classifier re-training mini-batch


def synthetic_gradient(features: torch.Tensor, label: int, weight: torch.Tensor,
                       bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy gradient of (weight, bias) on ``features`` all of class ``label`` (differentiable)."""
    residual = torch.softmax(features @ weight.T + bias, dim=1) - F.one_hot(
        torch.tensor(label), weight.shape[0]).float()
    return residual.T @ features / len(features), residual.mean(0)


@REBALANCERS.register("creff")
class CReFF(Rebalancer):
    """Keeps the synthetic features and the re-trained classifier."""

    def __init__(self, inner: Strategy, cfg: Config) -> None:
        super().__init__(inner, cfg)
        self.features: torch.Tensor | None = None  # (classes, synthetic_per_class, hidden)
        self.classifier: tuple[torch.Tensor, torch.Tensor] | None = None  # (W, b)
        self.generator = torch.Generator().manual_seed(cfg.run.seed)

    def side_record(self, server_round: int) -> ArrayRecord | None:
        if self.classifier is None:
            return None  # round 1: the clients use the global fc
        weight, bias = self.classifier
        return ArrayRecord({"weight": Array(weight.numpy()), "bias": Array(bias.numpy())})

    def _sent_classifier(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.classifier is not None:
            return self.classifier
        assert self.current is not None
        return tuple(torch.from_numpy(self.current[f"{HEAD}.{k}"].numpy()).float() for k in ("weight", "bias"))

    def absorb(self, server_round: int, grads: list[dict[int, ClassGradient]], arrays: ArrayRecord | None) -> None:
        real = weighted_mean(grads)
        if not real:
            return
        weight, bias = self._sent_classifier()
        rb = self.cfg.rebalance
        if self.features is None:
            classes, hidden = weight.shape
            self.features = torch.randn(classes, rb.synthetic_per_class, hidden, generator=self.generator)
        self._match_features(real, weight, bias)
        self.classifier = self._retrain()

    def _match_features(self, real: dict[int, ClassGradient], weight: torch.Tensor, bias: torch.Tensor) -> None:
        assert self.features is not None
        rb = self.cfg.rebalance
        features = self.features.clone().requires_grad_(True)
        optimizer = torch.optim.SGD([features], lr=rb.feature_lr, momentum=0.5)
        for _ in range(rb.feature_steps):
            loss = torch.zeros(())
            for c, g in real.items():
                gw, gb = synthetic_gradient(features[c], c, weight, bias)
                loss = loss + (1 - F.cosine_similarity(gw.flatten(), g.weight.flatten().float(), dim=0)) \
                    + (1 - F.cosine_similarity(gb, g.bias.float(), dim=0))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.features = features.detach()

    def _retrain(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.features is not None
        rb = self.cfg.rebalance
        classes, per_class, hidden = self.features.shape
        x = self.features.reshape(-1, hidden)
        y = torch.arange(classes).repeat_interleave(per_class)
        head = nn.Linear(hidden, classes)
        optimizer = torch.optim.SGD(head.parameters(), lr=rb.classifier_lr)
        for _ in range(rb.classifier_epochs):
            order = torch.randperm(len(y), generator=self.generator)
            for i in range(0, len(y), BATCH_SIZE):
                rows = order[i : i + BATCH_SIZE]
                loss = F.cross_entropy(head(x[rows]), y[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return head.weight.detach().clone(), head.bias.detach().clone()

    def evaluation_arrays(self, arrays: ArrayRecord, group: int = 0) -> ArrayRecord:
        if self.classifier is None:
            return arrays
        swapped = ArrayRecord({k: v for k, v in arrays.items()})
        for key, tensor in zip(("weight", "bias"), self.classifier):
            dtype = arrays[f"{HEAD}.{key}"].numpy().dtype
            swapped[f"{HEAD}.{key}"] = Array(tensor.numpy().astype(dtype))
        return swapped
