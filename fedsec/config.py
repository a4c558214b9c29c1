"""The experiment configuration: one typed, validated schema.

A config is a set of sections, each a dataclass of scalar fields: the core
sections defined here (``run``, ``federation``, ``data``, ``model``, ``client``,
``strategy``, ``attack``, ``defense``, ``rebalance``, ``faults``), which select
methods by registry name, and one section per registered method with parameters
(:class:`MethodParams`, declared next to the method's code, e.g. ``neurotoxin``):
:func:`schema` assembles them from the registries. Files are YAML or TOML with one
table per section; ``--set section.key=value`` overrides a field.
Every value is a scalar so that the flattened form (``"data.alpha": 0.1``) is
exactly a Flower run config: ``flwr run . --run-config "data.alpha=0.1"``
accepts the same keys as ``python simulations/run.py --set data.alpha=0.1``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import random
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

Scalar = bool | int | float | str



class _Yaml12Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 booleans: only true/false, so ``off``/``no`` stay strings."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)


class ConfigError(ValueError):
    """A configuration key is unknown or its value is not allowed."""


def param(default: Scalar, help: str) -> Any:  # noqa: A002 (the argparse word)
    """A config key: its default and one line of help (docs/reference/configuration.md lists it)."""
    return field(default=default, metadata={"help": help})


@dataclass
class RunConfig:
    """What identifies and drives one run."""

    seed: int = param(0, "fixes partitions, client sampling, initialisation, local shuffling")
    num_rounds: int = param(5, "federated rounds")
    out_dir: str = param("outputs/default", "the run's directory (run.py: a new <out_dir>/<timestamp>/ unless --out)")
    round_timeout: float = param(3600.0, "seconds a round (or the node handshake) may take")


@dataclass
class FederationConfig:
    """How many clients there are, how many train per round, what each may use.

    ``backend``: ``ray`` is Flower's Simulation Engine (clients in Ray actors,
    ``num_cpus`` / ``num_gpus`` each); ``inline`` runs the same ServerApp loop
    and ClientApp in one process, clients one after the other (``fedsec.app.inline``).
    ``ray_address`` attaches the ``ray`` backend to a running Ray cluster
    (``auto`` or ``host:port``) instead of starting a local one.
    """

    num_clients: int = param(10, "clients (partitions) in the federation")
    clients_per_round: int = param(10, "clients sampled per training round")
    fraction_evaluate: float = param(0.0, "fraction of clients evaluating locally each round (0: off)")
    num_cpus: float = param(1.0, "CPUs per client (Ray resources; torch threads)")
    num_gpus: float = param(0.0, "GPUs per client (fractions share a GPU)")
    backend: Literal["ray", "inline"] = param(
        "ray", "ray: Flower's Simulation Engine; inline: the same apps in one process")
    ray_address: str = param("", "attach to a running Ray cluster (auto or host:port)")


@dataclass
class DataConfig:
    """Which dataset, how it is cut down and partitioned.

    ``name`` is a key of the dataset registry (``fedsec.data.DATASETS``);
    ``path`` is a local file or directory, or a Hugging Face hub id for ``hf``.
    With ``partitioner: longtail`` the server also reports many-, medium- and
    few-shot accuracy: classes with more than ``many_shot`` training samples,
    with ``few_shot`` to ``many_shot``, and with fewer than ``few_shot``.
    ``validation_size`` rows are held out of the training pool before
    ``train_size`` is drawn (equally many per class if ``balanced``), with a
    fixed seed, as a dataset's own validation split: the same rows for every
    ``run.seed`` where the dataset has a test split (else drawn from what its
    seeded 20 % test hold-out leaves); no client trains on them. ``eval_split: validation``
    makes every server metric (accuracy, ASR, BLEU, a screen's figures) one of
    the validation split instead of the test split: choose hyper-parameters so,
    then report with ``eval_split: test`` and the same ``validation_size`` (the
    same training rows).
    """

    name: str = param("tweets_polarity", "dataset registry key (DATASETS)")
    path: str = param("", "local file or directory, or a hub id for hf")
    text_column: str = param("text", "column holding the text")
    label_column: str = param("label", "column holding the label")
    train_size: int = param(0, "training rows kept (0: all)")
    test_size: int = param(1000, "test rows kept (0: all)")
    validation_size: int = param(0, "rows held out of the training pool as a validation split, never trained "
                                 "on (0: none)")
    eval_split: Literal["test", "validation"] = param(
        "test", "the split the server evaluates on: validation to choose hyper-parameters without the test split")
    balanced: bool = param(False, "subsample to equally many rows per class")
    max_length: int = param(48, "tokens per text")
    partitioner: Literal["iid", "dirichlet", "pathological", "longtail", "natural"] = param(
        "dirichlet", "how rows are split across clients (flwr-datasets partitioners)")
    alpha: float = param(0.5, "Dirichlet concentration (dirichlet, longtail)")
    classes_per_client: int = param(2, "classes per client (pathological)")
    class_assignment: Literal["random", "deterministic", "first-deterministic"] = param(
        "random", "how pathological partitions draw their classes (deterministic: client i holds classes "
        "i..i+k-1 mod C, so equally many clients share every class and partitions are of equal size)")
    imbalance_factor: float = param(100.0, "largest / smallest class size (longtail; 1: no tail)")
    min_partition_size: int = param(10, "least rows per client (0: any)")
    many_shot: int = param(100, "classes with more training rows are many-shot")
    few_shot: int = param(20, "classes with fewer training rows are few-shot")
    pairs: str = param("", "translation: the language pairs kept, comma-separated src-tgt (empty: the corpus's "
                       "default pairs)")


@dataclass
class ModelConfig:
    """Which model and which parameters train (and therefore travel).

    ``name`` is a key of the model registry (``fedsec.models.MODELS``) or a
    Hugging Face model id or local directory. ``extra_classifier`` adds a
    second linear head beside the model's ``fc`` that only training uses
    (RedGrape: train on the sum of both heads' logits, infer with ``fc``).
    Translation models (``peft: adapter``) train bottleneck adapters of
    ``adapter_size`` (0: d_model / 16, the paper's ratio; ``fedsec.models.seq2seq``): in every layer, or
    (``adapter_layers``) only in the ``adapter_keep`` layers at the input end,
    the middle or the output end of each stack; ``train_layer_norms`` also
    trains (and sends) the layer norms.
    """

    name: str = param("minilm", "model registry key (MODELS), a hub id or a local directory")
    peft: Literal["none", "lora", "loha", "lokr", "ia3", "adapter"] = param("lora", "which parameters train and travel")
    rank: int = param(8, "LoRA / LoHa / LoKr rank")
    alpha: float = param(16.0, "LoRA scaling alpha")
    dropout: float = param(0.0, "LoRA dropout")
    target_modules: str = param(
        "", "comma-separated modules PEFT adapts (empty: the family's attention projections, peft's LoRA "
        "defaults: query,value for BERT; q_proj,v_proj for LLaMA, OPT, Qwen; c_attn for GPT-2)")
    extra_classifier: bool = param(False, "a second linear head used in training only (RedGrape's bias attractor)")
    adapter_size: int = param(0, "bottleneck of translation adapters (0: d_model / 16)")
    adapter_layers: Literal["all", "input", "middle", "output"] = param("all", "layers with adapters")
    adapter_keep: int = param(1, "layers kept by input / middle / output")
    train_layer_norms: bool = param(True, "translation: layer norms also train and travel")
    language_codes: str = param(
        "", "translation: language=code, comma-separated, for models that mark languages with codes (mBART-50: "
        "de=de_DE; empty: the tokenizer's code that starts with the language, e.g. de -> de_DE)")
    quantization: Literal["none", "4bit", "8bit"] = param(
        "none", "load a hub causal LM quantised by bitsandbytes (4bit: NF4, QLoRA); needs a CUDA GPU")
    gradient_checkpointing: bool = param(False, "recompute activations in the backward pass (less memory)")
    max_new_tokens: int = param(32, "instruction tuning: greedy generation length of evaluation")


@dataclass
class ClientConfig:
    """Local training of every client.

    ``mixed_precision``: ``auto`` trains under bfloat16 autocast on a CUDA device that
    supports it (float16 with loss scaling on older GPUs) and in float32 on the CPU;
    ``bf16`` / ``fp16`` force a dtype, ``off`` always trains in float32.
    """

    epochs: int = param(1, "local epochs per round")
    batch_size: int = param(32, "local batch size")
    optimizer: Literal["sgd", "adam", "adamw"] = param("adamw", "local optimiser")
    lr: float = param(1e-3, "local learning rate")
    momentum: float = param(0.0, "SGD momentum")
    weight_decay: float = param(0.0, "weight decay")
    eval_batch_size: int = param(128, "batch size of evaluation and prototypes")
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = param(
        "auto", "auto: bfloat16 (float16 + loss scaling) on a GPU, float32 on the CPU")


@dataclass
class StrategyConfig:
    """The server strategy and what wraps it.

    ``name`` is a key of the strategy registry (``fedsec.registry.STRATEGIES``:
    ``fedavg``, ``fedavgm``, ``fedadam``, ``fedprox``, the robust rules ``krum``,
    ``multikrum``, ``bulyan``, ``median``, ``trimmed_mean``, ``rfa``, and ``fedmnmt``).
    ``wrappers`` is a comma-separated chain of strategy wrappers (``WRAPPERS``, e.g.
    ``fedglad``) around it, ``defenses`` a chain of server defenses (``DEFENSES``:
    ``flame``, ``fltrust``, ``foolsgold``, ``norm_clip``) that screen or rewrite the
    updates before the wrapped strategy aggregates them. Each method's parameters
    are the config section named after it (``krum.byzantine``, ``fedglad.gamma``).
    """

    name: str = param("fedavg", "strategy registry key (STRATEGIES)")
    wrappers: str = param("none", "chain of strategy wrappers around it (WRAPPERS: fedglad)")
    defenses: str = param("none", "chain of server defenses, outermost first (DEFENSES)")


@dataclass
class AttackConfig:
    """Poisoned clients. Data poisoning and model poisoning are separate and combinable.

    ``malicious_clients``: comma-separated partition ids, or a fraction in (0, 1)
    (e.g. ``0.2``) drawn with ``run.seed``. ``data_poison`` is a key of
    ``DATA_POISONS`` (``none``, ``badnet``, ``insertsent``, ``label_flip``), with the
    poisoning parameters every data poison shares (``poison_rate``, ``target_label``,
    ``clean_label``, ``trigger``, ``dba_parts``); ``model_poison`` a comma-separated
    chain of ``MODEL_POISONS`` applied in order (``boost``, ``sign_flip``, ``gaussian``,
    ``neurotoxin``, e.g. ``neurotoxin,boost``); ``scale`` is the strength every
    model-poisoning attack reads (0: the method's own default; each method's
    docstring says what it scales). ``local_training`` replaces the malicious
    clients' training step (``w2s_attack``); ``omniscient`` (``alie``, ``ipm``,
    ``min_max``, ``min_sum``) rewrites the malicious updates on the server's explicit
    simulation channel; ``release`` (``weight_poison``) makes the federation start
    from a weight-poisoned release of ``model.name``. ``rounds``: comma-separated
    rounds in which the malicious clients attack (empty: every round; in the others
    they behave honestly). Each method's parameters are the section named after it.
    """

    malicious_clients: str = param("", "ids (\"0,3\") or a fraction (\"0.2\", drawn with the seed)")
    rounds: str = param("", "rounds in which they attack (empty: all)")
    data_poison: str = param("none", "DATA_POISONS key")
    poison_rate: float = param(0.1, "fraction of a malicious client's rows poisoned")
    target_label: int = param(1, "the backdoor's target class")
    clean_label: bool = param(False, "poison target-class rows, labels kept")
    trigger: str = param("", "trigger words (comma-separated; empty: the poison's default)")
    dba_parts: int = param(1, "split the trigger across the malicious clients (DBA)")
    model_poison: str = param("none", "chain of MODEL_POISONS applied to the outgoing update")
    scale: float = param(0.0, "strength of a model-poisoning attack (0: the method's default)")
    local_training: str = param("none", "LOCAL_TRAININGS key replacing the malicious training step")
    omniscient: str = param("none", "OMNISCIENT_ATTACKS key (server-side simulation channel)")
    release: str = param("none", "RELEASES key: the federation starts from this release of model.name")


@dataclass
class DefenseConfig:
    """Client-side defenses: which clients run them, and which.

    ``clients``: ``honest`` (every non-malicious client), ``all`` (also the
    malicious ids: models clients whose data were poisoned without their
    knowledge) or comma-separated ids. ``data_filter`` is a key of
    ``DATA_FILTERS`` (``psim``), ``local_training`` one of ``LOCAL_TRAININGS``
    (``w2s_defense``); ``inference_filter`` (``psim``) a server-side screen of
    test inputs. Each method's parameters are the section named after it.
    """

    clients: str = param("honest", "honest, all, or ids: who runs the client-side defenses")
    data_filter: str = param("none", "DATA_FILTERS key")
    inference_filter: str = param("none", "INFERENCE_FILTERS key (server-side screen of test inputs)")
    local_training: str = param("none", "LOCAL_TRAININGS key replacing the defended training step")


@dataclass
class RebalanceConfig:
    """Classifier re-balancing for long-tailed data: ``method`` is a key of
    ``REBALANCERS`` (``none``, ``redgrape``, ``creff``); its parameters are the
    section named after it."""

    method: str = param("none", "REBALANCERS key")


@dataclass
class FaultsConfig:
    """Injected client faults for reliability tests (``clients.faults``).

    ``clients`` and ``rounds`` are comma-separated ids (``rounds`` empty: all);
    ``mode`` ``raise`` raises in the client, ``exit`` ends its worker process,
    ``nan`` / ``shape`` send an update with NaN values / a wrongly shaped tensor.
    """

    clients: str = param("", "ids of clients with injected faults")
    rounds: str = param("", "rounds with faults (empty: all)")
    mode: Literal["raise", "exit", "nan", "shape"] = param(
        "raise", "raise, exit, nan (NaN update) or shape (wrongly shaped update)")


CORE_SECTIONS: dict[str, type] = {
    "run": RunConfig, "federation": FederationConfig, "data": DataConfig, "model": ModelConfig,
    "client": ClientConfig, "strategy": StrategyConfig, "attack": AttackConfig, "defense": DefenseConfig,
    "rebalance": RebalanceConfig, "faults": FaultsConfig,
}


@dataclass
class MethodParams:
    """A method's own parameters: the config section named ``section`` (e.g. ``neurotoxin``).

    Subclasses are dataclasses of scalars declared next to the method's code and
    registered with it (``REGISTRY.register(name, params=...)``); the experiment
    schema is the core sections plus every registered method's section, so
    ``--set neurotoxin.ratio=0.1``, YAML/TOML sections and Flower's flat run config
    all reach them. :meth:`check` runs when the method is selected.
    """

    section: ClassVar[str] = ""
    renamed: ClassVar[dict[str, str]] = {}  # an old key -> what replaces it (named in the unknown-key error)

    def check(self, cfg: Config) -> None:
        """Raise ``ConfigError`` (naming the keys) if these values cannot work in ``cfg``."""

    def require(self, condition: bool, key: str, message: str) -> None:
        """Raise ``ConfigError`` for ``{section}.{key}`` unless ``condition``."""
        if not condition:
            raise ConfigError(f"{self.section}.{key}={getattr(self, key)!r}: {message}")

    def positive(self, *keys: str) -> None:
        """Every one of ``keys`` must be > 0."""
        for key in keys:
            self.require(getattr(self, key) > 0, key, "must be > 0")


def schema() -> dict[str, type]:
    """Section name -> dataclass: the core sections, then every registered method's, by name."""
    from fedsec.registry import REGISTRIES

    sections: dict[str, type] = dict(CORE_SECTIONS)
    declared: dict[str, type] = {}
    for registry in REGISTRIES.values():
        for entry in registry.entries():
            params = entry.params
            if params is None:
                continue
            owner = sections.get(params.section) or declared.get(params.section)
            if owner is not None and owner is not params:
                raise TypeError(f"config section '{params.section}' is declared twice: by "
                                f"{owner.__module__}.{owner.__name__} and {params.__module__}.{params.__name__}")
            declared[params.section] = params
    return {**sections, **dict(sorted(declared.items()))}


class Config:
    """A whole experiment: the core sections and one section per registered method with parameters.

    A section is read as an attribute (``cfg.federation.num_clients``,
    ``cfg.neurotoxin.ratio``) or by key (``cfg.get("neurotoxin.ratio")``).
    """

    def __init__(self) -> None:
        self.__dict__["_sections"] = {name: kind() for name, kind in schema().items()}

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("_sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(f"the config has no section '{name}': sections are {', '.join(sections)}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("set config values with Config.set('section.key', value)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_flat() == other.to_flat()

    def __getstate__(self) -> dict[str, Any]:
        return {"json": self.to_json()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "json" not in state:
            raise ConfigError("this checkpoint was written by a fedsec before method-owned config sections "
                              "(0.2); it cannot be resumed: start the run afresh")
        self.__dict__["_sections"] = Config.from_json(state["json"]).__dict__["_sections"]

    @property
    def sections(self) -> dict[str, Any]:
        """Section name -> its dataclass instance."""
        return self.__dict__["_sections"]

    # ---------------------------------------------------------------- building
    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> Config:
        """Build from ``{"section.key": value}``; unknown keys are errors."""
        cfg = cls()
        for key, value in flat.items():
            cfg.set(key, value)
        cfg.validate()
        return cfg

    @classmethod
    def from_dict(cls, nested: dict[str, Any]) -> Config:
        """Build from ``{"section": {"key": value}}``."""
        flat: dict[str, Any] = {}
        for section, values in nested.items():
            if not isinstance(values, dict):
                raise ConfigError(
                    f"'{section}': expected a table of keys, got {values!r}; "
                    f"sections are {', '.join(schema())}"
                )
            for key, value in values.items():
                flat[f"{section}.{key}"] = value
        return cls.from_flat(flat)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> Config:
        """Read a YAML or TOML file, then apply ``key=value`` overrides.

        A file may start from another one: ``base: ../default.yaml`` (relative
        to the file) loads that config first and overlays this file's sections.
        """
        cfg = cls.from_dict(read_config_file(Path(path)))
        for item in overrides or []:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override '{item}' is not of the form section.key=value")
            cfg.set(key.strip(), parse_yaml(raw) if raw.strip() else "")
        cfg.validate()
        return cfg

    def set(self, key: str, value: Any) -> None:
        """Set ``section.key`` to ``value``, coerced to the field's type."""
        section_name, _, name = key.partition(".")
        section = self.sections.get(section_name)
        fields = {f.name for f in dataclasses.fields(section)} if section is not None else set()
        if name not in fields:
            renamed = {old: new for kind in schema().values() for old, new in getattr(kind, "renamed", {}).items()}
            keys = {s: [f.name for f in dataclasses.fields(values)] for s, values in self.sections.items()}
            raise unknown_key(key, keys, renamed)
        hint_type = typing.get_type_hints(type(section))[name]
        setattr(section, name, coerce(key, value, hint_type))

    # ---------------------------------------------------------------- checking
    def validate(self) -> None:
        """Check ranges and cross-key constraints of the core, then of every selected method,
        then how the selected methods compose (``fedsec.registry.Traits``); raise ``ConfigError``."""
        from fedsec.registry import DATA_POISONS, DATASETS, MODELS, selected

        check_core(self)
        if self.model.quantization != "none" and self.model.name in MODELS:
            raise ConfigError(f"model.quantization={self.model.quantization} loads a hub causal LM quantised; "
                              f"model.name={self.model.name} is an offline model built here: use a hub id or "
                              "set model.quantization=none")
        if self.model.quantization != "none" and self.model.peft == "none":
            raise ConfigError(f"model.quantization={self.model.quantization} freezes the quantised weights: it needs "
                              "a PEFT tuner (model.peft=lora), not model.peft=none")
        attack, defense = self.attack, self.defense
        chosen = selected(self)
        poison = DATA_POISONS[attack.data_poison]
        if defense.inference_filter != "none" and not getattr(poison, "has_trigger", False):
            raise ConfigError(f"defense.inference_filter={defense.inference_filter} screens triggered inputs: "
                              f"attack.data_poison={attack.data_poison} has no trigger (set a trigger-based poison)")
        for _, _, entry in chosen:
            if entry.params is not None:
                self.sections[entry.params.section].check(self)
        modality = DATASETS.entry(self.data.name).traits.modalities
        if modality is not None and modality != {"translation"}:
            for key, value in (("data.pairs", self.data.pairs), ("model.language_codes", self.model.language_codes)):
                if value:
                    raise ConfigError(f"{key}={value!r} is for translation: data.name={self.data.name} is "
                                      f"{next(iter(modality))} data")
        if modality is not None:
            check_modality(self, next(iter(modality)))
            if self.model.quantization != "none" and "instruction" not in modality:
                raise ConfigError(f"model.quantization={self.model.quantization} is for instruction tuning of causal "
                                  f"LMs; data.name={self.data.name} is not instruction data")
        _check_model(self, chosen)
        _check_broadcast(self, chosen)

    # ---------------------------------------------------------------- output
    def get(self, key: str) -> Any:
        """Return the value of ``section.key``."""
        section, _, name = key.partition(".")
        return getattr(self.sections[section], name)

    def to_flat(self) -> dict[str, Scalar]:
        """The Flower run-config form: ``{"section.key": scalar}``."""
        return {
            f"{section}.{k}": v
            for section, values in self.to_dict().items()
            for k, v in values.items()
        }

    def to_dict(self) -> dict[str, dict[str, Scalar]]:
        """The nested form written to ``config.yaml``."""
        return {name: dataclasses.asdict(values) for name, values in self.sections.items()}

    def to_json(self) -> str:
        """A compact, canonical JSON string (travels to clients in messages)."""
        return json.dumps(self.to_flat(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        """Inverse of :meth:`to_json`."""
        return cls.from_flat(json.loads(text))

    @classmethod
    def from_message(cls, config: Any) -> Config:
        """The experiment carried by a message's ConfigRecord (parsed once per process).

        The ClientApp and every Mod read it from each message; the result is
        cached by the JSON text, so treat it as read-only.
        """
        from fedsec.protocol import EXPERIMENT

        return _parse_cached(str(config[EXPERIMENT]))

    def dump(self, path: str | Path) -> None:
        """Write the resolved config as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def check_model_modality(key: str, name: str, cfg: Config, modality: str) -> None:
    """Refuse a registered model (``key`` = ``name``) built for other data than ``modality``."""
    from fedsec.registry import MODELS

    allowed = MODELS.entry(name).traits.modalities if name in MODELS else None
    if allowed is not None and modality not in allowed:
        raise ConfigError(f"{key}={name} is a model for {', '.join(sorted(allowed))} data, but "
                          f"data.name={cfg.data.name} is {modality} data")


def check_modality(cfg: Config, modality: str) -> None:
    """Refuse the model and every selected method that do not work on ``modality`` data (naming the key)."""
    from fedsec.registry import selected

    check_model_modality("model.name", cfg.model.name, cfg, modality)
    for key, _, entry in selected(cfg):
        allowed = entry.traits.modalities
        if allowed is not None and modality not in allowed:
            raise ConfigError(f"{key}={entry.name} works on {', '.join(sorted(allowed))} data, but "
                              f"data.name={cfg.data.name} is {modality} data")


def _check_model(cfg: Config, chosen: list[tuple[str, Any, Any]]) -> None:
    """Every selected method's required model capabilities are among those ``model.name`` provides."""
    from fedsec.registry import MODELS, PRETRAINED_PROVIDES

    name = cfg.model.name
    provides = MODELS.entry(name).traits.provides if name in MODELS else PRETRAINED_PROVIDES
    for key, _, entry in chosen:
        missing = entry.traits.requires - provides
        if missing:
            raise ConfigError(f"{key}={entry.name} needs a model with {', '.join(sorted(missing))}: model.name={name} "
                              f"provides {', '.join(sorted(provides)) or 'none of the capabilities'}")


def _check_broadcast(cfg: Config, chosen: list[tuple[str, Any, Any]]) -> None:
    """A method that sends clients different parameters excludes every method that compares
    updates with one global model."""
    for key, _, entry in chosen:
        if entry.traits.broadcast_of(cfg) != "per_client":
            continue
        for other_key, _, other in chosen:
            if other is not entry and other.traits.global_model:
                raise ConfigError(
                    f"{key}={entry.name} sends each client its own parameters (per-client broadcast), while "
                    f"{other_key}={other.name} compares the updates with one global model: they cannot be "
                    f"combined{_broadcast_hint(cfg, entry)}")


def _broadcast_hint(cfg: Config, entry: Any) -> str:
    params = entry.params
    return f" (see the parameters of {params.section}: {', '.join(f.name for f in dataclasses.fields(params))})" \
        if params is not None and callable(entry.traits.broadcast) else ""


@functools.lru_cache(maxsize=8)
def _parse_cached(text: str) -> Config:
    return Config.from_json(text)


def int_list(text: str) -> list[int]:
    """Parse ``"1, 3,5"`` into ``[1, 3, 5]`` (empty string: empty list)."""
    return [int(item) for item in text.split(",") if item.strip()]


def malicious_ids(spec: str, num_clients: int, seed: int) -> list[int]:
    """Partition ids of the malicious clients: explicit ids, or a seeded fraction of all clients."""
    spec = spec.strip()
    if not spec:
        return []
    if "." in spec:
        fraction = float(spec)
        if not 0.0 < fraction < 1.0:
            raise ValueError("a fraction must lie in (0, 1)")
        count = max(1, round(fraction * num_clients))
        rng = random.Random(seed * 7919 + 17)
        return sorted(rng.sample(range(num_clients), count))
    ids = sorted(set(int_list(spec)))
    if any(not 0 <= i < num_clients for i in ids):
        raise ValueError(f"ids must lie in 0..{num_clients - 1}")
    return ids


def read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The nested sections of a config file, with its ``base`` chain merged in."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' chain loops")
    text = path.read_text()
    try:
        nested = (tomllib.loads(text) if path.suffix == ".toml" else parse_yaml(text)) or {}
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: not valid {path.suffix[1:]}: {err}") from err
    if not isinstance(nested, dict):
        raise ConfigError(f"{path}: a config file is a mapping of sections (run:, data:, ...), "
                          f"not a {type(nested).__name__}")
    base = nested.pop("base", None)
    if base is None:
        return nested
    merged = read_config_file(path.parent / str(base), (*seen, path.resolve()))
    for section, values in nested.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def name_list(value: str) -> list[str]:
    """A comma-separated chain of registry names (``none`` alone when empty)."""
    return [item.strip() for item in value.split(",") if item.strip()] or ["none"]


def attacking(cfg: Config, server_round: int) -> list[int]:
    """The malicious ids that attack in ``server_round`` (none outside ``attack.rounds``)."""
    rounds = int_list(cfg.attack.rounds)
    if rounds and server_round not in rounds:
        return []
    return malicious_ids(cfg.attack.malicious_clients, cfg.federation.num_clients, cfg.run.seed)


def defended_ids(cfg: Config) -> list[int]:
    """Partition ids that run the client-side defenses (``defense.clients``)."""
    everyone = range(cfg.federation.num_clients)
    if cfg.defense.clients == "all":
        return list(everyone)
    if cfg.defense.clients == "honest":
        malicious = set(malicious_ids(cfg.attack.malicious_clients, cfg.federation.num_clients, cfg.run.seed))
        return [pid for pid in everyone if pid not in malicious]
    return int_list(cfg.defense.clients)



def check_core(cfg: Any) -> None:
    """The core sections' ranges and cross-key constraints (``cfg``: a :class:`Config`, or any object with the
    core sections as attributes and ``get(key)``, as :mod:`fedsec.precheck` builds before plug-ins load)."""
    fed, data, client = cfg.federation, cfg.data, cfg.client
    _positive("run.num_rounds", cfg.run.num_rounds)
    _positive("run.round_timeout", cfg.run.round_timeout)
    _positive("federation.num_clients", fed.num_clients)
    _positive("federation.clients_per_round", fed.clients_per_round)
    if fed.clients_per_round > fed.num_clients:
        raise ConfigError(
            f"federation.clients_per_round={fed.clients_per_round} exceeds "
            f"federation.num_clients={fed.num_clients}: at most num_clients can be sampled"
        )
    if not 0.0 <= fed.fraction_evaluate <= 1.0:
        raise ConfigError("federation.fraction_evaluate must lie in [0, 1]")
    _positive("federation.num_cpus", fed.num_cpus)
    if fed.num_gpus < 0:
        raise ConfigError("federation.num_gpus must be >= 0")
    _positive("data.alpha", data.alpha)
    _positive("data.max_length", data.max_length)
    _positive("data.classes_per_client", data.classes_per_client)
    if data.imbalance_factor < 1:
        raise ConfigError("data.imbalance_factor must be >= 1 (1 = no long tail)")
    for key in ("data.train_size", "data.test_size", "data.validation_size", "data.min_partition_size"):
        if cfg.get(key) < 0:
            raise ConfigError(f"{key} must be >= 0 (0 = keep all)")
    if data.eval_split == "validation" and data.validation_size == 0:
        raise ConfigError("data.eval_split=validation needs a validation split: set data.validation_size > 0")
    if not 0 <= data.few_shot <= data.many_shot:
        raise ConfigError("data.few_shot and data.many_shot must satisfy 0 <= few_shot <= many_shot")
    _positive("model.rank", cfg.model.rank)
    if cfg.model.adapter_size < 0:
        raise ConfigError("model.adapter_size must be >= 0 (0 = d_model / 16, the paper's ratio)")
    _positive("model.adapter_keep", cfg.model.adapter_keep)
    _positive("model.max_new_tokens", cfg.model.max_new_tokens)
    if cfg.model.quantization != "none" and fed.num_gpus == 0:
        raise ConfigError(f"model.quantization={cfg.model.quantization} trains on a CUDA GPU (bitsandbytes): set "
                          "federation.num_gpus > 0, or model.quantization=none on the CPU")
    _positive("client.epochs", client.epochs)
    _positive("client.batch_size", client.batch_size)
    _positive("client.eval_batch_size", client.eval_batch_size)
    _positive("client.lr", client.lr)
    for key in ("faults.clients", "faults.rounds", "attack.rounds"):
        try:
            int_list(cfg.get(key))
        except ValueError as err:
            raise ConfigError(f"{key}={cfg.get(key)!r}: expected comma-separated integers") from err
    attack = cfg.attack
    if not 0.0 <= attack.poison_rate <= 1.0:
        raise ConfigError("attack.poison_rate must lie in [0, 1]")
    if attack.scale < 0:
        raise ConfigError("attack.scale must be >= 0")
    _positive("attack.dba_parts", attack.dba_parts)
    try:
        malicious = malicious_ids(attack.malicious_clients, fed.num_clients, cfg.run.seed)
    except ValueError as err:
        raise ConfigError(f"attack.malicious_clients={attack.malicious_clients!r}: {err}") from err
    for key in ("attack.model_poison", "attack.local_training", "attack.omniscient"):
        if name_list(cfg.get(key)) != ["none"] and not malicious:
            raise ConfigError(f"{key}={cfg.get(key)} is configured but attack.malicious_clients selects "
                              "no client")
    if attack.data_poison != "none" and not malicious and attack.release == "none":
        raise ConfigError("attack.data_poison is set but attack.malicious_clients selects no client "
                          "(and attack.release=none)")
    defense = cfg.defense
    if defense.clients not in ("all", "honest"):
        try:
            int_list(defense.clients)
        except ValueError as err:
            raise ConfigError(f"defense.clients={defense.clients!r}: expected all, honest or "
                              "comma-separated ids") from err


def unknown_key(key: str, keys: dict[str, list[str]], renamed: dict[str, str]) -> ConfigError:
    """The error for ``key`` not in ``keys`` (section -> its keys): its replacement if it was renamed, else the
    closest keys, the section's keys or the sections."""
    if key in renamed:
        return ConfigError(f"unknown key '{key}': it was renamed, use {renamed[key]}")
    section_name = key.partition(".")[0]
    everything = [f"{s}.{k}" for s, names in keys.items() for k in names]
    close = difflib.get_close_matches(key, everything, n=3, cutoff=0.6)
    fields = keys.get(section_name)
    hint = f"; did you mean {' or '.join(close)}?" if close else (
        f"; keys of '{section_name}' are {', '.join(sorted(fields))}" if fields else
        f"; sections are {', '.join(keys)}")
    return ConfigError(f"unknown key '{key}'{hint}")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key} must be > 0, got {value}")


def _number(text: str) -> Any:
    """``text`` as an int or float when it spells one (YAML 1.1 reads ``5e-5`` as a string)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def coerce(key: str, value: Any, hint: Any) -> Scalar:
    """Coerce ``value`` to the type ``hint`` or raise a ``ConfigError``."""
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(
                f"{key}={value!r} is not allowed: choose one of {', '.join(map(str, allowed))}"
            )
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if hint in (int, float) and isinstance(value, str):
        value = _number(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"{key}={value!r}: expected an integer")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r}: expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected a string")
        return str(value)
    raise TypeError(f"unsupported config type {hint} for {key}")
