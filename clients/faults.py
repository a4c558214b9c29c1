"""Fault injection: chosen clients raise or die in chosen rounds (reliability testing).

A Flower client *Mod*: it wraps the ClientApp and, for a training message to
a partition listed in ``faults.clients`` in a round listed in
``faults.rounds`` (empty: every round), either raises (``raise``) or ends the
worker process (``exit``) before training, or trains and then corrupts its
update: NaN in every tensor (``nan``) or one tensor of the wrong shape (``shape``).
"""

from __future__ import annotations

import os

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from fedsec.config import Config, int_list
from fedsec.protocol import ARRAYS, CONFIG, SERVER_ROUND, arrays_of


def fault_injection_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Raise or exit for the configured clients and rounds; otherwise pass through."""
    if msg.metadata.message_type == MessageType.TRAIN:
        faults = Config.from_message(msg.content[CONFIG]).faults
        partition_id = int(context.node_config["partition-id"])
        server_round = int(msg.content[CONFIG][SERVER_ROUND])
        rounds = int_list(faults.rounds)
        if partition_id in int_list(faults.clients) and (not rounds or server_round in rounds):
            if faults.mode == "exit":
                os._exit(1)
            if faults.mode == "raise":
                raise RuntimeError(f"injected fault: client {partition_id} in round {server_round}")
            return _corrupt(call_next(msg, context), faults.mode)
    return call_next(msg, context)


def _corrupt(reply: Message, mode: str) -> Message:
    """The reply with NaN tensors (``nan``) or its first tensor flattened plus one value (``shape``)."""
    arrays = {k: a.numpy() for k, a in arrays_of(reply.content).items()}
    first = next(iter(arrays))
    if mode == "nan":
        arrays = {k: np.full_like(v, np.nan) for k, v in arrays.items()}
    else:
        arrays[first] = np.append(arrays[first].ravel(), 0.0).astype(arrays[first].dtype)
    reply.content[ARRAYS] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})
    return reply
