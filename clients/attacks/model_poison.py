"""Model poisoning: rewrite a malicious client's outgoing update (a Flower client Mod).

``model_poison_mod`` wraps the ClientApp: after the honest (or data-poisoned)
training it replaces the reply's tensors w_i by the chain ``attack.model_poison``
(e.g. ``neurotoxin,boost``) of ``MODEL_POISONS`` entries, each applied to
(global w, local w_i). Honest clients pass through untouched. A poison may
keep memory across rounds in the node's ``Context.state`` (``ctx.state``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from fedsec.config import Config, attacking, name_list
from fedsec.experiment import Batch
from fedsec.protocol import ARRAYS, CONFIG, ROUND_ATTACKERS, ROUND_CLIENTS, SERVER_ROUND, arrays_of
from fedsec.registry import GRADIENT_MASKS, MODEL_POISONS

if TYPE_CHECKING:
    import torch

    from clients.honest import HonestClient

Tensors = dict[str, np.ndarray]


@dataclass
class PoisonContext:
    """What a model poison may use: the config, the round's sampled clients and attackers among
    them, a seeded generator, the node's state."""

    cfg: Config
    round_clients: int
    round_attackers: int
    rng: np.random.Generator
    state: RecordDict

    @property
    def scale(self) -> float:
        """``attack.scale``, or n / m when it is 0: clients sampled this round over the attackers
        sampled this round (model replacement: the boosted updates survive the round's average)."""
        return self.cfg.attack.scale or self.round_clients / max(1, self.round_attackers)


ModelPoison = Callable[[Tensors, Tensors, PoisonContext], Tensors]

# A model poison that also acts inside local training registers, under the same name, what
# masks the attacker's gradients at every optimiser step: (client, its clean data) ->
# {parameter name: 0/1 tensor}, or None for no mask this round (``clients.roles`` wires it in).
GradientMask = Callable[["HonestClient", Batch], "dict[str, torch.Tensor] | None"]
__all__ = ["GRADIENT_MASKS", "MODEL_POISONS", "GradientMask", "ModelPoison", "PoisonContext", "model_poison_mod"]


@MODEL_POISONS.register("none")
def unchanged(global_: Tensors, local: Tensors, ctx: PoisonContext) -> Tensors:
    return local


def model_poison_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Apply ``attack.model_poison`` to the training replies of malicious clients."""
    reply = call_next(msg, context)
    if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
        return reply
    config = msg.content[CONFIG]
    cfg = Config.from_message(config)
    server_round = int(config[SERVER_ROUND])
    partition_id = int(context.node_config["partition-id"])
    chain = name_list(cfg.attack.model_poison)
    if chain == ["none"] or partition_id not in attacking(cfg, server_round):
        return reply
    rng = np.random.default_rng([cfg.run.seed, server_round, partition_id, 99])
    sent, returned = arrays_of(msg.content), arrays_of(reply.content)
    global_ = {k: a.numpy() for k, a in sent.items()}
    poisoned = {k: a.numpy() for k, a in returned.items()}
    ctx = PoisonContext(cfg=cfg, round_clients=int(config.get(ROUND_CLIENTS, cfg.federation.clients_per_round)),
                        round_attackers=int(config.get(ROUND_ATTACKERS, 1)), rng=rng, state=context.state)
    for name in chain:
        poisoned = MODEL_POISONS[name](global_, poisoned, ctx)
    reply.content[ARRAYS] = ArrayRecord(
        {k: Array(np.asarray(v, dtype=returned[k].numpy().dtype)) for k, v in poisoned.items()})
    return reply
