"""Registries: config names -> code, and the extension points plug-ins fill.

Every kind of method has one registry here, in the core; the packages that
implement methods (fedsec's own ``strategies`` and ``clients``, and any
third-party package) fill them when imported. The core never imports them:
:func:`load_plugins` imports every module declared under the entry-point group
``fedsec.plugins`` (fedsec's own packages declare theirs in ``pyproject.toml``)::

    [project.entry-points."fedsec.plugins"]
    my_attacks = "my_package.attacks"     # a module that registers on import

A registration may carry the method's own parameter dataclass (a config section
named after the method, :class:`fedsec.config.MethodParams`) and what the method
composes with (:class:`Traits`); config validation reads both.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from fedsec.config import Config, MethodParams

T = TypeVar("T")
PLUGIN_GROUP = "fedsec.plugins"
log = logging.getLogger("fedsec")

Broadcast = Literal["global", "per_client"]
CLASSIFICATION = frozenset({"text", "image"})  # the modalities of the classification tasks
# a model.name that is a hub id or a directory (whether it is an encoder is known only once loaded)
PRETRAINED_PROVIDES = frozenset({"features", "hf_classifier", "encoder"})


@dataclass(frozen=True)
class Traits:
    """What a registered method composes with; config validation refuses the rest.

    ``modalities``: the data it works on (``text``, ``image``, ``translation``; None: any).
    ``broadcast``: ``per_client`` when the strategy sends clients different parameters
    (each measured against its own start), or a function of the config deciding it.
    ``global_model``: the method compares updates with one global model (a screening
    defense, FedGLAD, the omniscient channel): refused with a ``per_client`` broadcast.
    ``gradient_steps_only``: a local training step that changes the parameters only through
    the optimiser steps of ``fedsec.training.train`` (so a gradient step hook, such as
    Neurotoxin's mask, governs every change; RedGrape's extra prototype step does not).
    ``selectors``: the config keys that may select it (None: every selector of its
    registry; e.g. a local training only for ``attack.local_training``).
    ``provides`` (models) and ``requires`` (methods): model capabilities, e.g.
    ``features`` (``model.features(...)`` returns (hidden, logits)), ``linear_head`` (those
    features feed a linear ``fc``), ``hf_classifier`` (a Hugging Face text classifier), ``encoder`` (it
    classifies its first token, not a decoder-only model's last);
    a model named by a hub id or a directory provides ``features`` and ``hf_classifier``.
    """

    modalities: frozenset[str] | None = None
    broadcast: Broadcast | Callable[[Config], Broadcast] = "global"
    global_model: bool = False
    gradient_steps_only: bool = True
    selectors: tuple[str, ...] | None = None
    provides: frozenset[str] = frozenset()
    requires: frozenset[str] = frozenset()

    def broadcast_of(self, cfg: Config) -> Broadcast:
        return self.broadcast(cfg) if callable(self.broadcast) else self.broadcast


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered method."""

    name: str
    obj: T
    params: type[MethodParams] | None
    traits: Traits


class Registry(Generic[T]):
    """A mapping from config names to implementations, filled by a decorator.

    ``selector`` names the config key(s) that pick entries (``attack.data_poison``);
    ``chain`` selectors hold comma-separated lists of names.
    """

    def __init__(self, kind: str, selectors: tuple[str, ...] = (), chain: bool = False) -> None:
        self.kind = kind
        self.selectors = selectors
        self.chain = chain
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, params: type[MethodParams] | None = None,
                 traits: Traits | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``, with its parameters and traits."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, obj, params, traits or Traits())
            return obj

        return decorator

    def entry(self, name: str) -> Entry[T]:
        load_plugins()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} '{name}': choose one of {', '.join(self)}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        load_plugins()
        return iter(sorted(self._entries))

    def entries(self) -> list[Entry[T]]:
        load_plugins()
        return [self._entries[name] for name in sorted(self._entries)]

    def choices(self, key: str) -> list[str]:
        """The names selector ``key`` may take."""
        return [e.name for e in self.entries() if e.traits.selectors is None or key in e.traits.selectors]


# ------------------------------------------------------------------ methods, by the key that selects them
DATASETS: Registry[Any] = Registry("dataset", ("data.name",))
MODELS: Registry[Any] = Registry("model")  # model.name may also be a hub id or a directory
STRATEGIES: Registry[Any] = Registry("strategy", ("strategy.name",))
WRAPPERS: Registry[Any] = Registry("strategy wrapper", ("strategy.wrappers",), chain=True)
DEFENSES: Registry[Any] = Registry("server defense", ("strategy.defenses",), chain=True)
REBALANCERS: Registry[Any] = Registry("re-balancer", ("rebalance.method",))
DATA_POISONS: Registry[Any] = Registry("data poison", ("attack.data_poison",))
MODEL_POISONS: Registry[Any] = Registry("model poison", ("attack.model_poison",), chain=True)
OMNISCIENT_ATTACKS: Registry[Any] = Registry("omniscient attack", ("attack.omniscient",))
RELEASES: Registry[Any] = Registry("model release", ("attack.release",))
LOCAL_TRAININGS: Registry[Any] = Registry("local training", ("attack.local_training", "defense.local_training"))
DATA_FILTERS: Registry[Any] = Registry("data filter", ("defense.data_filter",))
INFERENCE_FILTERS: Registry[Any] = Registry("inference filter", ("defense.inference_filter",))
# a model poison that also acts inside local training, under the same name (Neurotoxin's step mask)
GRADIENT_MASKS: Registry[Any] = Registry("gradient mask")

# ------------------------------------------------------------------ extension points of the round loop
# (cfg, global arrays, valid replies, partition_of, attacking ids) -> replies, before aggregation
# The hooks of one kind run in the order of their names.
REPLY_HOOKS: Registry[Any] = Registry("reply hook")
# (cfg, each valid reply's metrics, aggregated train metrics [keys reported on are popped], malicious ids)
# -> round metrics
ROUND_METRICS: Registry[Any] = Registry("round metric")
# (experiment, clean test logits, device) -> evaluation metrics, with the global model loaded
EVALUATION_METRICS: Registry[Any] = Registry("evaluation metric")
# the server's test evaluation of one modality, registered under its name (fedsec.data.registry.MODALITIES):
# (experiment, global arrays, arrays_for: group -> the arrays that evaluate it) -> test metrics
EVALUATORS: Registry[Any] = Registry("evaluator")

REGISTRIES: dict[str, Registry[Any]] = {
    "datasets": DATASETS, "models": MODELS, "strategies": STRATEGIES, "wrappers": WRAPPERS,
    "defenses": DEFENSES, "rebalancers": REBALANCERS, "data_poisons": DATA_POISONS,
    "model_poisons": MODEL_POISONS, "omniscient_attacks": OMNISCIENT_ATTACKS, "releases": RELEASES,
    "local_trainings": LOCAL_TRAININGS, "data_filters": DATA_FILTERS, "inference_filters": INFERENCE_FILTERS,
    "gradient_masks": GRADIENT_MASKS, "reply_hooks": REPLY_HOOKS, "round_metrics": ROUND_METRICS,
    "evaluation_metrics": EVALUATION_METRICS, "evaluators": EVALUATORS,
}

_loaded: list[str] = []
_state = {"started": False}


def load_plugins() -> list[str]:
    """Import fedsec's data, models and evaluators and every ``fedsec.plugins`` entry point, once; their names.

    A plug-in that fails to import raises here, naming it; fedsec does not retry.
    """
    if _state["started"]:
        return _loaded
    _state["started"] = True
    for module in ("fedsec.data", "fedsec.models", "fedsec.evaluation", "fedsec.translation", "fedsec.instruction"):
        importlib.import_module(module)
    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        try:
            point.load()
        except Exception as err:
            raise ImportError(f"fedsec plug-in '{point.name}' ({point.value}) failed to import: {err}") from err
        _loaded.append(point.name)
    if not {"strategies", "clients"} <= set(_loaded):
        log.warning("fedsec's own methods are not registered (entry points found: %s): install the project "
                    "(python3 tasks.py setup, or pip install -e .) so that its fedsec.plugins entry points exist",
                    _loaded or "none")
    return _loaded


def selected(cfg: Config) -> list[tuple[str, Registry[Any], Entry[Any]]]:
    """Every (selector key, registry, entry) the config selects, in registry order."""
    from fedsec.config import ConfigError, name_list

    result = []
    for registry in REGISTRIES.values():
        for key in registry.selectors:
            value = str(cfg.get(key))
            for name in (name_list(value) if registry.chain else [value]):
                if name not in registry.choices(key):
                    raise ConfigError(f"{key}='{name}' is not known: choose one of {', '.join(registry.choices(key))}")
                result.append((key, registry, registry.entry(name)))
    return result
