"""The combination sweep: every pair (server-side method, client role) either runs one federated
round correctly or is refused at config time, naming keys. Nothing in between.

Server side: every strategy, strategy wrapper, server defense and re-balancer. Client roles: every
data poison, model poison, omniscient attack, attack and defense training step, data filter,
inference filter and model release. A pair runs on the smallest data its methods' declared
modalities allow (digits + CNN, tweets + tiny BERT, the multilingual corpus + tiny Marian, the
instruction corpus + the tiny LLaMA-style causal LM); a pair
that runs must give one finite aggregate, no rejected or failed client, and the same train metric
keys from every client (Flower aggregates only identical MetricRecords).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedsec.config import Config, ConfigError
from fedsec.registry import (
    DATA_FILTERS,
    DATA_POISONS,
    DEFENSES,
    INFERENCE_FILTERS,
    LOCAL_TRAININGS,
    MODEL_POISONS,
    OMNISCIENT_ATTACKS,
    REBALANCERS,
    RELEASES,
    STRATEGIES,
    WRAPPERS,
    Registry,
)

BASES: dict[str, dict[str, object]] = {
    "image": {"data.name": "digits", "data.test_size": 60, "data.train_size": 210, "data.partitioner": "iid",
              "model.name": "cnn", "model.peft": "none"},
    "text": {"data.name": "tweets_polarity", "data.test_size": 40, "data.train_size": 140, "data.max_length": 16,
             "data.partitioner": "iid", "model.name": "tiny-bert", "model.peft": "lora"},
    "translation": {"data.name": "multilingual", "data.train_size": 320, "data.test_size": 16,
                    "data.max_length": 8, "data.partitioner": "natural", "model.name": "tiny-marian",
                    "model.peft": "adapter", "federation.num_clients": 8, "federation.clients_per_round": 8},
    "instruction": {"data.name": "instructions", "data.train_size": 140, "data.test_size": 12, "data.max_length": 40,
                    "data.partitioner": "iid", "model.name": "tiny-llama", "model.peft": "lora",
                    "model.max_new_tokens": 4},
}
COMMON = {"run.num_rounds": 1, "federation.num_clients": 7, "federation.clients_per_round": 7,
          "federation.backend": "inline", "client.epochs": 1, "client.batch_size": 32, "client.lr": 0.01,
          "client.optimizer": "sgd"}
# what a method needs beside its own name to be selectable at all, and small sizes for the slow ones
NEEDS: dict[str, dict[str, object]] = {
    "redgrape": {"model.extra_classifier": True},
    "creff": {"creff.feature_steps": 3, "creff.classifier_epochs": 3, "creff.synthetic_per_class": 8},
    "norm_clip": {"norm_clip.clip_norm": 5.0},
    "fltrust": {"fltrust.root_size": 20},
    "w2s_attack": {"w2s_attack.teacher_epochs": 1},
    "w2s_defense": {"w2s_defense.teacher_epochs": 1},
    "psim": {"psim.rows": 32, "attack.data_poison": "badnet"},
    "weight_poison": {"attack.data_poison": "badnet", "weight_poison.rows": 64, "weight_poison.epochs": 1},
}
ATTACKERS = {"attack.malicious_clients": "0,1"}


def _options(registry: Registry, key: str) -> list[tuple[str, str]]:
    return [(key, name) for name in registry.choices(key) if name != "none"]


SERVER = (_options(STRATEGIES, "strategy.name") + _options(WRAPPERS, "strategy.wrappers")
          + _options(DEFENSES, "strategy.defenses") + _options(REBALANCERS, "rebalance.method"))
ROLES = (_options(DATA_POISONS, "attack.data_poison") + _options(MODEL_POISONS, "attack.model_poison")
         + _options(OMNISCIENT_ATTACKS, "attack.omniscient") + _options(LOCAL_TRAININGS, "attack.local_training")
         + _options(DATA_FILTERS, "defense.data_filter") + _options(LOCAL_TRAININGS, "defense.local_training")
         + _options(INFERENCE_FILTERS, "defense.inference_filter") + _options(RELEASES, "attack.release"))
REGISTRY_OF = {key: registry for registry in (STRATEGIES, WRAPPERS, DEFENSES, REBALANCERS, DATA_POISONS, MODEL_POISONS,
                                              OMNISCIENT_ATTACKS, LOCAL_TRAININGS, DATA_FILTERS, INFERENCE_FILTERS,
                                              RELEASES) for key in registry.selectors}


def _modality(*choices: tuple[str, str]) -> str:
    """The first of image, text, translation, instruction that every chosen method works on (image if none fits)."""
    allowed = [REGISTRY_OF[key].entry(name).traits.modalities for key, name in choices]
    return next((m for m in BASES if all(a is None or m in a for a in allowed)), "image")


TEACHERS = {"image": "cnn", "text": "tiny-bert", "translation": "tiny-bert", "instruction": "tiny-bert"}


def _flat(server: tuple[str, str], role: tuple[str, str]) -> dict[str, object]:
    modality = _modality(server, role)
    flat = {**COMMON, **BASES[modality], "w2s_attack.teacher": TEACHERS[modality],
            "w2s_defense.teacher": TEACHERS[modality]}
    for key, name in (server, role):
        flat.update(NEEDS.get(name, {}))
        flat[key] = name
    if (role[0].startswith("attack.") or "attack.data_poison" in flat) and role[0] != "attack.release":
        flat.update(ATTACKERS)
    return flat


@pytest.fixture(scope="module")
def recording_grid():
    """An inline Grid that keeps the train replies' metric keys."""
    from flwr.app import MessageType

    from fedsec.app.client_app import app
    from fedsec.app.inline import InlineGrid

    class RecordingGrid(InlineGrid):
        keys: list[set[str]] = []

        def send_and_receive(self, messages, *, timeout=None):
            replies = list(super().send_and_receive(messages, timeout=timeout))
            for reply in replies:
                if reply.metadata.message_type == MessageType.TRAIN and not reply.has_error():
                    self.keys.append(set(reply.content.metric_records["metrics"]))
            return replies

    return lambda n: RecordingGrid(app, n)


@pytest.mark.slow
@pytest.mark.sweep
@pytest.mark.parametrize("server", SERVER, ids=lambda c: f"{c[0]}={c[1]}")
@pytest.mark.parametrize("role", ROLES, ids=lambda c: f"{c[0]}={c[1]}")
def test_every_pair_runs_or_is_refused(server, role, recording_grid, tmp_path: Path, task_identity) -> None:
    import json

    from flwr.supercore.task_identity import TaskIdentity

    from fedsec.app.server import run_experiment

    flat = {**_flat(server, role), "run.out_dir": str(tmp_path)}
    try:
        cfg = Config.from_flat(flat)
    except ConfigError as err:  # refused: the message names one of the pair's keys
        assert server[0] in str(err) or role[0] in str(err), str(err)
        return
    grid = recording_grid(cfg.federation.num_clients)
    grid.keys.clear()
    TaskIdentity.node_id = 0
    run_experiment(grid, cfg)
    row = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert (row["failures"], row["rejected"], row["aggregate_rejected"]) == (0, 0, 0), row
    assert len(grid.keys) == cfg.federation.clients_per_round and all(k == grid.keys[0] for k in grid.keys)
    finite = [v for k, v in row.items() if k in ("accuracy", "loss", "bleu") and isinstance(v, float)]
    assert finite and all(math.isfinite(v) for v in finite), row


def test_the_sweep_covers_every_registered_method() -> None:
    """New methods join the sweep by registering; the sweep is not a hand-kept list."""
    names = {name for _, name in SERVER + ROLES}
    assert {"krum", "fedglad", "flame", "redgrape", "fedmnmt"} <= names
    assert {"badnet", "neurotoxin", "min_sum", "w2s_attack", "psim", "w2s_defense", "weight_poison"} <= names
    assert len(SERVER) * len(ROLES) >= 200
