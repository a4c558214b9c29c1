"""The fedsec ``ClientApp`` (Flower Message API).

The experiment config travels inside every message from the ServerApp
(``fedsec.protocol``: ``config["fedsec.config"]``), so simulation, ``flwr run`` and deployed
SuperNodes all run exactly the server's experiment. The node's
``partition-id`` (from its node config) picks its data.
"""

from __future__ import annotations

import sys

import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from clients import HonestClient, build_client
from clients.attacks import model_poison_mod
from clients.faults import fault_injection_mod
from fedsec.config import Config
from fedsec.experiment import get_experiment
from fedsec.protocol import ARRAYS, CONFIG, IDENTITY, METRICS, SERVER_ROUND, SIDE

app = ClientApp(mods=[fault_injection_mod, model_poison_mod])


def _client(msg: Message, context: Context) -> HonestClient:
    cfg = Config.from_message(msg.content[CONFIG])
    torch.set_num_threads(max(1, int(cfg.federation.num_cpus)))
    experiment = get_experiment(cfg)
    server_round = int(msg.content[CONFIG].get(SERVER_ROUND, 0))
    return build_client(experiment, int(context.node_config["partition-id"]), server_round, context.state)


def _identity(context: Context) -> ConfigRecord:
    """Partition id and count; under Ray also the id of the Ray node the client ran on."""
    node = context.node_config
    identity = ConfigRecord({"partition-id": int(node["partition-id"]), "num-partitions": int(node["num-partitions"])})
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        identity["ray-node"] = ray.get_runtime_context().get_node_id()
    return identity


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training on this node's partition."""
    client = _client(msg, context)
    side = msg.content.array_records.get(SIDE)
    arrays, metrics = client.fit(msg.content[ARRAYS], msg.content[CONFIG], side)
    content = RecordDict({ARRAYS: arrays, METRICS: metrics, IDENTITY: _identity(context)})
    if client.side_out is not None:
        content[SIDE] = client.side_out
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Local evaluation on this node's partition."""
    metrics = _client(msg, context).evaluate(msg.content[ARRAYS], msg.content[CONFIG])
    return Message(content=RecordDict({METRICS: metrics, IDENTITY: _identity(context)}), reply_to=msg)


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Handshake: load the experiment and report this node's partition id."""
    _client(msg, context)
    return Message(content=RecordDict({IDENTITY: _identity(context)}), reply_to=msg)
