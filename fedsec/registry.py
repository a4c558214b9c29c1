"""Small name -> class/factory registries that map config names to code."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

# Where each kind of registry lives; imported lazily so that reading a config
# does not import torch or Flower.
_REGISTRY_MODULES: dict[str, tuple[str, str]] = {
    "datasets": ("fedsec.data", "DATASETS"),
    "models": ("fedsec.models", "MODELS"),
    "strategies": ("strategies", "STRATEGIES"),
    "defenses": ("strategies", "DEFENSES"),
    "rebalancers": ("strategies", "REBALANCERS"),
    "data_poisons": ("clients.attacks", "DATA_POISONS"),
    "model_poisons": ("clients.attacks", "MODEL_POISONS"),
    "omniscient_attacks": ("clients.attacks", "OMNISCIENT_ATTACKS"),
    "local_trainings": ("clients", "LOCAL_TRAININGS"),
    "data_filters": ("clients", "DATA_FILTERS"),
    "inference_filters": ("clients.defenses", "INFERENCE_FILTERS"),
}


class Registry(Generic[T]):
    """A mapping from config names to implementations, filled by a decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            raise KeyError(f"unknown {self.kind} '{name}': choose one of {', '.join(self)}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


def check_registered(key: str, name: str, kind: str) -> None:
    """Raise ``ConfigError`` naming ``key`` if ``name`` is not in registry ``kind``."""
    from fedsec.config import ConfigError

    module, attr = _REGISTRY_MODULES[kind]
    registry: Registry = getattr(importlib.import_module(module), attr)
    if name not in registry:
        raise ConfigError(f"{key}='{name}' is not known: choose one of {', '.join(registry)}")
