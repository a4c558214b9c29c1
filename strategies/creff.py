"""CReFF: classifier re-training with federated features (the RedGrape baseline).

Paper: X. Shang, Y. Lu, G. Huang, H. Wang, "Federated Learning on Heterogeneous
and Long-Tailed Data via Classifier Re-Training with Federated Features",
IJCAI 2022; code: shangxinyi/CReFF-FL (``main.py``, ``Dataset/Gradient_matching_loss.py``).

The federated model trains as usual (the inner strategy, e.g. FedAvg). Besides,
the server keeps a re-trained classifier (W, b) and S synthetic "federated
features" F_c per class (``creff.synthetic_per_class``, 100; drawn from
N(0, 1) once and optimised across rounds). Each round:

1. every sampled client computes, with the global backbone and (W, b) (a fresh
   randomly initialised linear layer before the first re-training), the mean
   classifier gradient of each of its classes, g_c^real (``clients/creff.py``);
   the server averages them per class with equal weight over the clients that
   hold the class (the official server ignores the sample counts);
2. the features of each class c with a real gradient this round are optimised,
   summed over classes, to produce the same gradient, by the official
   ``match_loss(dis_metric='ours')``, ``distance_wb`` on the weight and on the bias:

       D(A, B) = sum over rows r of [1 - <A_r, B_r> / (||A_r|| ||B_r|| + 1e-6)]
       loss = sum_c D(gW_c(F_c), gW_c^real) + D(gb_c(F_c), gb_c^real)

   (one cosine per output row of the weight gradient, the bias as one row), where
   gW_c(F) = d CE(W F + b, c) / dW; ``feature_steps`` (100) steps of plain SGD at
   ``feature_lr`` (0.1);
3. a fresh linear classifier is trained on all synthetic features with
   cross-entropy (``classifier_epochs`` 300 epochs, plain SGD at
   ``classifier_lr`` 0.01, shuffled batches of 32) and becomes (W, b): it is sent
   to the next round's clients and it replaces ``fc`` when the server evaluates
   (the federated ``fc`` itself keeps training).

Difference from the code: a client's g_c^real is the exact mean gradient over all
its samples of c (``fedsec.class_gradients``) rather than the mean of ten
32-sample batches with differentiable augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import Strategy
from torch import nn

from fedsec.class_gradients import ClassGradient, class_mean
from fedsec.config import Config, MethodParams, param
from fedsec.registry import CLASSIFICATION, Traits
from strategies.rebalancer import HEAD, REBALANCERS, Rebalancer

BATCH_SIZE = 32  # classifier re-training mini-batch (the official batch_size_local_training)
EPS = 1e-6  # distance_wb's denominator guard


def distance_wb(real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """The official ``distance_wb``: sum over output rows of 1 - cos(row_real, row_syn);
    a 1-D tensor (the bias) is one row."""
    real, synthetic = real.reshape(-1, real.shape[-1]), synthetic.reshape(-1, synthetic.shape[-1])
    cos = (real * synthetic).sum(-1) / (real.norm(dim=-1) * synthetic.norm(dim=-1) + EPS)
    return (1 - cos).sum()


def synthetic_gradient(features: torch.Tensor, label: int, weight: torch.Tensor,
                       bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy gradient of (weight, bias) on ``features`` all of class ``label`` (differentiable)."""
    residual = torch.softmax(features @ weight.T + bias, dim=1) - F.one_hot(
        torch.tensor(label), weight.shape[0]).float()
    return residual.T @ features / len(features), residual.mean(0)


@dataclass
class CReFFParams(MethodParams):
    section = "creff"
    renamed = {  # keys before fedsec 0.2
        "rebalance.synthetic_per_class": "creff.synthetic_per_class",
        "rebalance.feature_steps": "creff.feature_steps",
        "rebalance.feature_lr": "creff.feature_lr",
        "rebalance.classifier_epochs": "creff.classifier_epochs",
        "rebalance.classifier_lr": "creff.classifier_lr",
    }
    synthetic_per_class: int = param(100, "federated features per class")
    feature_steps: int = param(100, "SGD steps of the gradient matching per round")
    feature_lr: float = param(0.1, "learning rate of the gradient matching")
    classifier_epochs: int = param(300, "epochs of the classifier re-training on the features")
    classifier_lr: float = param(0.01, "learning rate of the re-training")

    def check(self, cfg: Config) -> None:
        self.positive("synthetic_per_class", "feature_steps", "feature_lr", "classifier_epochs", "classifier_lr")


@REBALANCERS.register("creff", params=CReFFParams, traits=Traits(modalities=CLASSIFICATION, global_model=True,
                                                                  requires=frozenset({"linear_head"})))
class CReFF(Rebalancer):
    """Keeps the synthetic features and the re-trained classifier."""

    def __init__(self, inner: Strategy, cfg: Config) -> None:
        super().__init__(inner, cfg)
        self.features: torch.Tensor | None = None  # (classes, synthetic_per_class, hidden)
        self.classifier: tuple[torch.Tensor, torch.Tensor] | None = None  # the re-trained (W, b)
        self.initial: tuple[torch.Tensor, torch.Tensor] | None = None  # round 1's random (W, b)
        self.generator = torch.Generator().manual_seed(cfg.run.seed)

    def side_record(self, server_round: int) -> ArrayRecord | None:
        weight, bias = self._sent_classifier()
        return ArrayRecord({"weight": Array(weight.numpy()), "bias": Array(bias.numpy())})

    def _sent_classifier(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The re-trained classifier; before the first re-training a freshly initialised linear layer
        (the official round-1 ``syn_params``)."""
        if self.classifier is not None:
            return self.classifier
        if self.initial is None:
            assert self.current is not None
            classes, hidden = self.current[f"{HEAD}.weight"].shape
            head = nn.Linear(hidden, classes)
            with torch.no_grad():
                for p in head.parameters():
                    p.copy_(torch.empty_like(p).uniform_(-1, 1, generator=self.generator) / hidden ** 0.5)
            self.initial = (head.weight.detach().clone(), head.bias.detach().clone())
        return self.initial

    def absorb(self, server_round: int, grads: list[dict[int, ClassGradient]], arrays: ArrayRecord | None) -> None:
        real = class_mean(grads, weighted=False)
        if not real:
            return
        weight, bias = self._sent_classifier()
        rb = self.cfg.creff
        if self.features is None:
            classes, hidden = weight.shape
            self.features = torch.randn(classes, rb.synthetic_per_class, hidden, generator=self.generator)
        self._match_features(real, weight, bias)
        self.classifier = self._retrain()

    def _match_features(self, real: dict[int, ClassGradient], weight: torch.Tensor, bias: torch.Tensor) -> None:
        assert self.features is not None
        rb = self.cfg.creff
        features = self.features.clone().requires_grad_(True)
        optimizer = torch.optim.SGD([features], lr=rb.feature_lr)
        for _ in range(rb.feature_steps):
            loss = torch.zeros(())
            for c, g in real.items():
                gw, gb = synthetic_gradient(features[c], c, weight, bias)
                loss = loss + distance_wb(g.weight.float(), gw) + distance_wb(g.bias.float(), gb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.features = features.detach()

    def _retrain(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.features is not None
        rb = self.cfg.creff
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
