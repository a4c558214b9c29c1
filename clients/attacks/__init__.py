"""Poisoned-client behaviours: data poisons (wrap the client's data) and model
poisons (a Mod that rewrites the outgoing update); one file per attack."""

from clients.attacks import badnet, gaussian_noise, insertsent, label_flip, model_replacement, sign_flip  # noqa: F401
from clients.attacks.data_poison import DATA_POISONS, DataPoison
from clients.attacks.model_poison import MODEL_POISONS, model_poison_mod

__all__ = ["DATA_POISONS", "MODEL_POISONS", "DataPoison", "model_poison_mod"]
