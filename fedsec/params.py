"""Which tensors travel between server and clients, and how they are checked.

Only trainable parameters travel: for a PEFT model the adapter tensors and
the classification head, for a fully trained model every parameter plus its
floating-point buffers (e.g. BatchNorm statistics). Frozen backbone weights
never leave the process that built them.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import nn


def travelling_keys(model: nn.Module) -> list[str]:
    """State-dict keys that are exchanged, in state-dict order."""
    params = dict(model.named_parameters())
    frozen = any(not p.requires_grad for p in params.values())
    keys = []
    for key, value in model.state_dict().items():
        if key in params:
            if params[key].requires_grad:
                keys.append(key)
        elif not frozen and torch.is_floating_point(value):
            keys.append(key)
    return keys


def get_arrays(model: nn.Module) -> ArrayRecord:
    """The travelling tensors as a Flower ``ArrayRecord`` (CPU numpy copies)."""
    state = model.state_dict()
    return ArrayRecord({k: Array(state[k].detach().cpu().numpy()) for k in travelling_keys(model)})


def set_arrays(model: nn.Module, arrays: ArrayRecord) -> None:
    """Load ``arrays`` into ``model``; keys and shapes must match exactly."""
    problem = check_arrays(arrays, get_arrays(model))
    if problem:
        raise ValueError(problem)
    tensors = {k: torch.from_numpy(np.array(a.numpy())) for k, a in arrays.items()}
    model.load_state_dict(tensors, strict=False)


def payload_bytes(arrays: ArrayRecord) -> int:
    """Serialized bytes of the tensors in ``arrays`` (values plus .npy headers)."""
    return sum(len(a.data) for a in arrays.values())


def check_arrays(arrays: ArrayRecord, reference: ArrayRecord) -> str | None:
    """Why ``arrays`` cannot stand in for ``reference`` (keys, shapes, finiteness), or None."""
    if list(arrays.keys()) != list(reference.keys()):
        missing = sorted(set(reference.keys()) - set(arrays.keys()))
        extra = sorted(set(arrays.keys()) - set(reference.keys()))
        return f"keys differ: missing {missing[:3]}, unexpected {extra[:3]}"
    for key, ref in reference.items():
        value = arrays[key]
        if tuple(value.shape) != tuple(ref.shape):
            return f"'{key}' has shape {tuple(value.shape)}, expected {tuple(ref.shape)}"
        if not np.all(np.isfinite(value.numpy())):
            return f"'{key}' holds NaN or inf"
    return None


def cast_like(arrays: ArrayRecord, reference: ArrayRecord) -> ArrayRecord:
    """``arrays`` in the dtypes of ``reference`` (some server optimisers, e.g. FedAdam, return float64)."""
    return ArrayRecord({k: a if a.dtype == reference[k].dtype else Array(a.numpy().astype(reference[k].numpy().dtype))
                        for k, a in arrays.items()})


def flatten(record: ArrayRecord, keys: list[str]) -> np.ndarray:
    """The tensors of ``record`` named ``keys``, concatenated as one float64 vector."""
    return np.concatenate([record[k].numpy().astype(np.float64).ravel() for k in keys])


def unflatten(vector: np.ndarray, like: ArrayRecord) -> ArrayRecord:
    """Inverse of :func:`flatten` with the keys, shapes and dtypes of ``like``."""
    keys = list(like.keys())
    pieces = np.split(vector, np.cumsum([like[k].numpy().size for k in keys])[:-1])
    return ArrayRecord({k: Array(p.reshape(like[k].shape).astype(like[k].numpy().dtype)) for k, p in zip(keys, pieces)})
