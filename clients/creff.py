"""CReFF, client side: per-class classifier gradients for the server's federated features.

Paper: X. Shang et al., "Federated Learning on Heterogeneous and Long-Tailed
Data via Classifier Re-Training with Federated Features", IJCAI 2022; server
side in ``strategies/creff.py``.

The client trains like an honest client (cross-entropy). Besides, with the
received global backbone h and the server's re-trained classifier (W, b) (a
freshly initialised one in round 1, as the official code), it sends per class c the mean gradient
mean_{x of class c} (softmax(W h(x) + b) - e_c) [h(x)^T, 1].
"""

from __future__ import annotations

import torch

from clients.honest import LOCAL_TRAININGS, HonestClient, LocalTraining
from fedsec.class_gradients import gradient_prototypes, to_record
from fedsec.experiment import Batch
from fedsec.registry import CLASSIFICATION, Traits


@LOCAL_TRAININGS.register("creff", traits=Traits(modalities=CLASSIFICATION, selectors=()))  # chosen by rebalance.method
class CReFFTraining(LocalTraining):
    """Honest training plus the class gradients CReFF's server matches."""

    def __call__(self, client: HonestClient, data: Batch, seed: int, proximal_mu: float) -> float:
        model, side = client.experiment.model, client.side_in
        head = None if side is None else tuple(torch.from_numpy(side[k].numpy()).float() for k in ("weight", "bias"))
        client.side_out = to_record(gradient_prototypes(model, data, self.cfg.client.eval_batch_size, client.device,
                                                        head))
        return super().__call__(client, data, seed, proximal_mu)
