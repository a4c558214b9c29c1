"""Poisoned-client behaviours: data poisons (wrap the client's data) and model
poisons (a Mod that rewrites the outgoing update); one file per attack."""

from clients.attacks import (  # noqa: F401  (register the attacks)
    alie,
    badnet,
    gaussian_noise,
    generation_backdoor,
    insertsent,
    ipm,
    label_flip,
    min_max,
    min_sum,
    model_replacement,
    neurotoxin,
    sign_flip,
    w2s_attack,
    weight_poison,  # noqa: E402,F401  (registers the weight-poisoned release)
)
from clients.attacks.data_poison import DATA_POISONS, DataPoison
from clients.attacks.model_poison import MODEL_POISONS, model_poison_mod
from clients.attacks.omniscient import OMNISCIENT_ATTACKS, apply_omniscient

__all__ = ["DATA_POISONS", "MODEL_POISONS", "OMNISCIENT_ATTACKS", "DataPoison", "apply_omniscient", "model_poison_mod"]
