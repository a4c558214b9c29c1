"""Which behaviours a partition's client is built with, from the config.

Malicious ids (``attack.malicious_clients``), in the rounds they attack
(``attack.rounds``), get the data poison and the attack's training step; ids in
``defense.clients`` get the data filter and the defense's training step (an
attack's own training step takes precedence on a client that is both). Every
other client trains with the step of ``rebalance.method`` (``redgrape``,
``creff``; ``none`` is plain cross-entropy). The model poison and fault injection
are Mods of the ClientApp and read the same config; a model poison that also
masks the attacker's gradients during training (Neurotoxin's ``step`` mode,
``GRADIENT_MASKS``) is given to the malicious client here, as a step hook of its
training loop.
"""

from __future__ import annotations

from flwr.app import RecordDict

from clients.attacks.data_poison import client_poison
from clients.attacks.model_poison import GRADIENT_MASKS
from clients.honest import DATA_FILTERS, LOCAL_TRAININGS, HonestClient
from fedsec.config import attacking, defended_ids, name_list
from fedsec.experiment import Experiment


def build_client(experiment: Experiment, partition_id: int, server_round: int,
                 state: RecordDict | None = None) -> HonestClient:
    """The client of ``partition_id`` in ``server_round``: honest, wrapped by its attack and defense pieces.

    ``state`` is the node's ``Context.state`` (memory across rounds, e.g. Neurotoxin's last global model).
    """
    cfg = experiment.cfg
    malicious = partition_id in attacking(cfg, server_round)
    defended = partition_id in defended_ids(cfg)
    training = cfg.attack.local_training if malicious and cfg.attack.local_training != "none" else (
        cfg.defense.local_training if defended and cfg.defense.local_training != "none" else cfg.rebalance.method)
    return HonestClient(
        experiment,
        partition_id,
        poison=client_poison(cfg, partition_id, experiment.num_classes) if malicious else None,
        data_filter=DATA_FILTERS[cfg.defense.data_filter if defended else "none"](cfg),
        training=LOCAL_TRAININGS[training](cfg),
        gradient_masks=[GRADIENT_MASKS[name] for name in name_list(cfg.attack.model_poison)
                        if name in GRADIENT_MASKS] if malicious else [],
        state=state,
    )
