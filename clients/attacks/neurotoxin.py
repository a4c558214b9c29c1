"""Neurotoxin: a durable backdoor that avoids the coordinates honest clients update most.

Paper: Z. Zhang, A. Panda, L. Song, Y. Yang, M. W. Mahoney, J. E. Gonzalez,
K. Ramchandran, P. Mittal, "Neurotoxin: Durable Backdoors in Federated
Learning", ICML 2022; code: jhcknzzm/Federated-Learning-Backdoor.

The attacker estimates which coordinates the benign clients change most, scores
s, and keeps its own training off the top k = ``neurotoxin.ratio`` of
them (over all travelling coordinates at once, the code's ``aggregate_all_layer``):

    M = 1[coordinate not among the top-k of s],   so later honest updates, which
    concentrate on the top-k coordinates, do not overwrite the backdoor.

``neurotoxin.mode``:

- ``step`` (the official code, default): at every local optimiser step the
  attacker's gradient is multiplied by M before the step (``apply_grad_mask``);
  M is fixed for the round.
- ``round``: the round's update is projected once, w_i' = w + M * (w_i - w), as
  a model poison that composes with any data poison and with ``boost``.

``neurotoxin.mask`` (the score s):

- ``gradient`` (the official code's ``grad_mask_cv``, default): |gradient| of the
  cross-entropy of the received global model, accumulated over the attacker's
  clean rows (the official attacker samples clean data of 30 benign participants;
  fedsec's attacker uses its own partition before poisoning);
- ``global_change`` (the paper's text): |w_t - w_prev|, the change of the global
  model between the two rounds the attacker last saw (kept in the node's
  ``Context.state``; no mask the first time).

The official scripts keep 95 % of the coordinates (``gradmask_ratio`` 0.95):
``neurotoxin.ratio`` 0.05 is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, RecordDict

from clients.attacks.model_poison import GRADIENT_MASKS, MODEL_POISONS, PoisonContext, Tensors
from fedsec.config import Config, ConfigError, MethodParams, param
from fedsec.experiment import Batch
from fedsec.params import get_arrays, travelling_keys
from fedsec.registry import LOCAL_TRAININGS
from fedsec.training import batches, cross_entropy

if TYPE_CHECKING:
    from clients.honest import HonestClient

STATE_KEY = "neurotoxin.previous-global"


def keep_mask(scores: dict[str, np.ndarray], ratio: float) -> dict[str, np.ndarray]:
    """0/1 masks that drop the top ``ratio`` of all coordinates by score (ties broken by position)."""
    flat = np.concatenate([s.ravel() for s in scores.values()])
    top = max(1, int(round(ratio * flat.size)))
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argpartition(flat, flat.size - top)[flat.size - top:]] = False
    pieces = np.split(keep, np.cumsum([s.size for s in scores.values()])[:-1])
    return {k: m.reshape(s.shape) for (k, s), m in zip(scores.items(), pieces, strict=True)}


def global_change(global_: Tensors, state: RecordDict) -> dict[str, np.ndarray] | None:
    """|w_t - w_prev| against the global model stored last time (which ``global_`` replaces)."""
    previous = state.array_records.get(STATE_KEY)
    state[STATE_KEY] = ArrayRecord({k: Array(np.array(v)) for k, v in global_.items()})
    if previous is None:
        return None
    return {k: np.abs(v - previous[k].numpy()) for k, v in global_.items()}


@dataclass
class NeurotoxinParams(MethodParams):
    section = "neurotoxin"
    renamed = {  # keys before fedsec 0.2
        "attack.neurotoxin_ratio": "neurotoxin.ratio",
        "attack.neurotoxin_mode": "neurotoxin.mode",
        "attack.neurotoxin_mask": "neurotoxin.mask",
    }
    ratio: float = param(0.05, "fraction of the coordinates kept off (top-k of the score s)")
    mode: Literal["step", "round"] = param("step", "mask every local step (official) or project the round's update")
    mask: Literal["gradient", "global_change"] = param("gradient", "score s: |grad CE| of the global model "
                                                       "(official) or |w_t - w_prev|")

    def check(self, cfg: Config) -> None:
        self.require(0.0 < self.ratio < 1.0, "ratio", "must lie in (0, 1)")
        if self.mode == "round" and self.mask == "gradient":
            raise ConfigError("neurotoxin.mode=round projects the outgoing update, where no gradient is known: "
                              "set neurotoxin.mask=global_change (or neurotoxin.mode=step)")
        training = cfg.attack.local_training if cfg.attack.local_training != "none" else cfg.rebalance.method
        if self.mode == "step" and training in LOCAL_TRAININGS and not LOCAL_TRAININGS.entry(
                training).traits.gradient_steps_only:
            key = "attack.local_training" if cfg.attack.local_training != "none" else "rebalance.method"
            raise ConfigError(f"neurotoxin.mode=step masks the gradient steps, while {key}={training} also changes "
                              "the parameters outside them: set neurotoxin.mode=round and "
                              "neurotoxin.mask=global_change")


@MODEL_POISONS.register("neurotoxin", params=NeurotoxinParams)
def neurotoxin(global_: Tensors, local: Tensors, ctx: PoisonContext) -> Tensors:
    """``round`` mode: project the round's update off the top-k coordinates of the global change."""
    if ctx.cfg.neurotoxin.mode != "round":
        return local  # ``step``: the gradients were masked during training
    change = global_change(global_, ctx.state)
    if change is None:
        return local
    masks = keep_mask({k: change[k] for k in local}, ctx.cfg.neurotoxin.ratio)
    return {k: global_[k] + masks[k] * (local[k] - global_[k]) for k in local}


def gradient_scores(client: HonestClient, data: Batch) -> dict[str, np.ndarray]:
    """|d CE / d w| of the loaded global model, accumulated over ``data`` (``grad_mask_cv``)."""
    model, device = client.experiment.model, client.device
    names = set(travelling_keys(model))
    model.to(device).eval()
    model.zero_grad()
    for batch in batches(data, client.experiment.cfg.client.batch_size):
        cross_entropy(model, {k: v.to(device) for k, v in batch.items()}).backward()
    scores = {n: p.grad.abs().cpu().numpy() for n, p in model.named_parameters()
              if n in names and p.grad is not None}
    model.zero_grad()
    return scores


@GRADIENT_MASKS.register("neurotoxin")
def neurotoxin_gradient_mask(client: HonestClient, data: Batch) -> dict[str, torch.Tensor] | None:
    """``step`` mode: the mask M the attacker's gradients are multiplied by at every step."""
    params = client.experiment.cfg.neurotoxin
    if params.mode != "step":
        return None
    if params.mask == "gradient":
        scores = gradient_scores(client, data)
    else:
        current = {k: a.numpy() for k, a in get_arrays(client.experiment.model).items()}
        scores = global_change(current, client.state)
        if scores is None:
            return None
        trained = {n for n, p in client.experiment.model.named_parameters() if p.requires_grad}
        scores = {k: v for k, v in scores.items() if k in trained}
    return {k: torch.from_numpy(m.astype(np.float32)) for k, m in keep_mask(scores, params.ratio).items()}
