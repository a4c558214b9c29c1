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

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from fedsec.config import Config, attacking, malicious_ids, name_list
from fedsec.registry import Registry

Tensors = dict[str, np.ndarray]


@dataclass
class PoisonContext:
    """What a model poison may use: the config, the malicious set, a seeded generator, the node's state."""

    cfg: Config
    num_malicious: int
    rng: np.random.Generator
    state: RecordDict

    @property
    def scale(self) -> float:
        """``attack.scale``, or clients_per_round / num_malicious when it is 0 (model replacement)."""
        return self.cfg.attack.scale or self.cfg.federation.clients_per_round / self.num_malicious


ModelPoison = Callable[[Tensors, Tensors, PoisonContext], Tensors]
MODEL_POISONS: Registry[ModelPoison] = Registry("model poison")


@MODEL_POISONS.register("none")
def unchanged(global_: Tensors, local: Tensors, ctx: PoisonContext) -> Tensors:
    return local


def model_poison_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Apply ``attack.model_poison`` to the training replies of malicious clients."""
    reply = call_next(msg, context)
    if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
        return reply
    cfg = Config.from_message(msg.content["config"])
    server_round = int(msg.content["config"]["server-round"])
    malicious = malicious_ids(cfg.attack.malicious_clients, cfg.federation.num_clients, cfg.run.seed)
    partition_id = int(context.node_config["partition-id"])
    chain = name_list(cfg.attack.model_poison)
    if chain == ["none"] or partition_id not in attacking(cfg, server_round):
        return reply
    rng = np.random.default_rng([cfg.run.seed, server_round, partition_id, 99])
    sent = next(iter(msg.content.array_records.values()))
    key, returned = next(iter(reply.content.array_records.items()))
    global_ = {k: a.numpy() for k, a in sent.items()}
    poisoned = {k: a.numpy() for k, a in returned.items()}
    ctx = PoisonContext(cfg=cfg, num_malicious=len(malicious), rng=rng, state=context.state)
    for name in chain:
        poisoned = MODEL_POISONS[name](global_, poisoned, ctx)
    reply.content[key] = ArrayRecord({k: Array(np.asarray(v, dtype=returned[k].numpy().dtype)) for k, v in poisoned.items()})
    return reply
