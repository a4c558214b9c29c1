"""The experiment configuration: one typed, validated schema.

A config is a set of sections (``run``, ``federation``, ``data``, ``model``,
``client``, ``strategy``), each a dataclass of scalar fields. Files are YAML or
TOML with one table per section; ``--set section.key=value`` overrides a field.
Every value is a scalar so that the flattened form (``"data.alpha": 0.1``) is
exactly a Flower run config: ``flwr run . --run-config "data.alpha=0.1"``
accepts the same keys as ``python simulations/run.py --set data.alpha=0.1``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


Scalar = bool | int | float | str

CONFIG_KEY = "fedsec.config"  # where the config travels in a message's ConfigRecord
ROUND_CLIENTS_KEY = "round-clients"  # clients sampled this round (in every training instruction)
ROUND_ATTACKERS_KEY = "round-attackers"  # attacking clients among them (colluding attackers know it)


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 booleans: only true/false, so ``off``/``no`` stay strings."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)


class ConfigError(ValueError):
    """A configuration key is unknown or its value is not allowed."""


@dataclass
class RunConfig:
    """What identifies and drives one run."""

    seed: int = 0
    num_rounds: int = 5
    out_dir: str = "outputs/default"
    round_timeout: float = 3600.0


@dataclass
class FederationConfig:
    """How many clients there are, how many train per round, what each may use.

    ``backend``: ``ray`` is Flower's Simulation Engine (clients in Ray actors,
    ``num_cpus`` / ``num_gpus`` each); ``inline`` runs the same ServerApp loop
    and ClientApp in one process, clients one after the other (``fedsec.inline``).
    ``ray_address`` attaches the ``ray`` backend to a running Ray cluster
    (``auto`` or ``host:port``) instead of starting a local one.
    """

    num_clients: int = 10
    clients_per_round: int = 10
    fraction_evaluate: float = 0.0
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    backend: Literal["ray", "inline"] = "ray"
    ray_address: str = ""


@dataclass
class DataConfig:
    """Which dataset, how it is cut down and partitioned.

    ``name`` is a key of the dataset registry (``fedsec.data.DATASETS``);
    ``path`` is a local file or directory, or a Hugging Face hub id for ``hf``.
    With ``partitioner: longtail`` the server also reports many-, medium- and
    few-shot accuracy: classes with more than ``many_shot`` training samples,
    with ``few_shot`` to ``many_shot``, and with fewer than ``few_shot``.
    """

    name: str = "tweets_polarity"
    path: str = ""
    text_column: str = "text"
    label_column: str = "label"
    train_size: int = 0
    test_size: int = 1000
    balanced: bool = False
    max_length: int = 48
    partitioner: Literal["iid", "dirichlet", "pathological", "longtail", "natural"] = "dirichlet"
    alpha: float = 0.5
    classes_per_client: int = 2
    imbalance_factor: float = 100.0
    min_partition_size: int = 10
    many_shot: int = 100
    few_shot: int = 20


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

    name: str = "minilm"
    peft: Literal["none", "lora", "loha", "lokr", "ia3", "adapter"] = "lora"
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str = "query,value"
    extra_classifier: bool = False
    adapter_size: int = 0
    adapter_layers: Literal["all", "input", "middle", "output"] = "all"
    adapter_keep: int = 1
    train_layer_norms: bool = True


@dataclass
class ClientConfig:
    """Local training of every client.

    ``mixed_precision``: ``auto`` trains under bfloat16 autocast on a CUDA device that
    supports it (float16 with loss scaling on older GPUs) and in float32 on the CPU;
    ``bf16`` / ``fp16`` force a dtype, ``off`` always trains in float32.
    """

    epochs: int = 1
    batch_size: int = 32
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    eval_batch_size: int = 128
    mixed_precision: Literal["auto", "off", "bf16", "fp16"] = "auto"


@dataclass
class StrategyConfig:
    """The server strategy; ``name`` is a key of ``strategies.STRATEGIES``.

    ``fedglad`` wraps the strategy with FedGLAD's adaptive server learning rate
    (``global`` or ``groupwise``); ``off`` leaves it as it is. ``defenses`` is a
    comma-separated chain of server defenses (``strategies.DEFENSES``: ``flame``,
    ``fltrust``, ``foolsgold``, ``norm_clip``) that screen or rewrite the
    updates before the (FedGLAD-wrapped) strategy aggregates them; the robust
    aggregation rules themselves are strategies (``krum``, ``multikrum``,
    ``bulyan``, ``median``, ``trimmed_mean``, ``rfa``). ``byzantine`` is the
    number f of malicious clients per round that Krum, Multi-Krum and Bulyan
    assume; ``multikrum_keep`` 0 means n - f. ``fedmnmt`` (``strategies/fedmnmt.py``)
    clusters languages by ``mnmt_clustering``: ``family`` reads ``mnmt_families``
    (groups of languages, e.g. ``de,en,nl;fr,it,es``; empty: the embedded corpus's
    families), ``random`` draws as many groups, ``gradient`` clusters the clients'
    adapter updates of round ``mnmt_warmup`` (``mnmt_algorithm``, ``mnmt_k``
    clusters; 0: as many as families).
    """

    name: str = "fedavg"
    server_lr: float = 1.0
    server_momentum: float = 0.9
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3
    proximal_mu: float = 0.01
    fedglad: Literal["off", "global", "groupwise"] = "off"
    fedglad_gamma: float = 0.02
    fedglad_beta: float = 0.9
    defenses: str = "none"
    byzantine: int = 1
    multikrum_keep: int = 0
    trim_beta: float = 0.2
    rfa_iterations: int = 10
    clip_norm: float = 0.0
    noise_multiplier: float = 0.0
    fltrust_root_size: int = 100
    flame_lambda: float = 0.001
    foolsgold_kappa: float = 1.0
    mnmt_clustering: Literal["none", "random", "family", "gradient"] = "family"
    mnmt_families: str = ""
    mnmt_k: int = 0
    mnmt_warmup: int = 1
    mnmt_algorithm: Literal["agglomerative", "kmeans"] = "agglomerative"


@dataclass
class AttackConfig:
    """Poisoned clients. Data poisoning and model poisoning are separate and combinable.

    ``malicious_clients``: comma-separated partition ids, or a fraction in (0, 1)
    (e.g. ``0.2``) drawn with ``run.seed``. ``data_poison`` is a key of
    ``clients.attacks.DATA_POISONS`` (``none``, ``badnet``, ``insertsent``,
    ``label_flip``); ``model_poison`` a comma-separated chain of keys of
    ``clients.attacks.MODEL_POISONS`` applied in order (``none``, ``boost``,
    ``sign_flip``, ``gaussian``, ``neurotoxin``, e.g. ``neurotoxin,boost``).
    ``scale`` 0 means "derived": clients_per_round / number of malicious
    clients (model replacement). ``neurotoxin_*``: see ``clients/attacks/neurotoxin.py``
    (``step`` masks every local step, as the official code; ``round`` projects the
    round's update). ``local_training`` replaces the malicious
    clients' training step (``w2s_attack``; ``w2s_*`` are its teacher and loss
    weights a, b, c; ``w2s_lr`` the student's learning rate; defaults: the official
    OPT-1.3B setting, ``clients/attacks/w2s_attack.py``). ``omniscient`` (``alie``, ``ipm``, ``min_max``,
    ``min_sum``) rewrites the malicious updates on the server's explicit
    simulation channel, where the attacker reads the honest updates of its round;
    ``min_sum_bound``: ``min`` (the authors' code) or ``max`` (FLPoison's variant).
    ``backdoored_start``: the federation starts from a weight-poisoned release of
    ``model.name`` (``backdoor_*``: its poisoned fine-tuning; ``clients/attacks/weight_poison.py``).
    ``rounds``: comma-separated rounds in which the malicious clients attack
    (empty: every round; in the others they behave honestly), e.g. to
    measure how long a backdoor survives or how fast a defense removes it.
    """

    malicious_clients: str = ""
    rounds: str = ""
    data_poison: str = "none"
    poison_rate: float = 0.1
    target_label: int = 1
    clean_label: bool = False
    trigger: str = ""
    dba_parts: int = 1
    model_poison: str = "none"
    scale: float = 0.0
    noise_std: float = 0.1
    neurotoxin_ratio: float = 0.05
    neurotoxin_mode: Literal["step", "round"] = "step"
    neurotoxin_mask: Literal["gradient", "global_change"] = "gradient"
    local_training: str = "none"
    w2s_teacher: str = "minilm"
    w2s_teacher_epochs: int = 5
    w2s_teacher_lr: float = 2e-5
    w2s_lr: float = 2e-5
    w2s_ce: float = 6.0
    w2s_logits: float = 6.0
    w2s_features: float = 0.004
    omniscient: str = "none"
    min_sum_bound: Literal["min", "max"] = "min"
    backdoored_start: bool = False
    backdoor_rows: int = 2000
    backdoor_rate: float = 0.3
    backdoor_epochs: int = 3
    backdoor_lr: float = 2e-5


@dataclass
class DefenseConfig:
    """Client-side defenses: which clients run them and with what parameters.

    ``clients``: ``honest`` (every non-malicious client), ``all`` (also the
    malicious ids: models clients whose data were poisoned without their
    knowledge) or comma-separated ids. ``data_filter`` is a key of
    ``clients.DATA_FILTERS`` (``psim``), ``local_training`` one of
    ``clients.LOCAL_TRAININGS`` (``w2s_defense``). ``inference_filter`` (``psim``)
    is a server-side screen of test inputs (``clients/defenses/inference_filter.py``);
    ``psim_*``: ``clients/defenses/psim.py`` (defaults: the official probe).
    """

    clients: str = "honest"
    data_filter: str = "none"
    inference_filter: str = "none"
    local_training: str = "none"
    teacher: str = "minilm"
    teacher_epochs: int = 5
    teacher_lr: float = 2e-5
    w2s_lr: float = 2e-4
    w2s_ce: float = 5.0
    w2s_kl: float = 0.001
    w2s_features: float = 0.001
    temperature: float = 2.0
    psim_threshold: float = 0.7
    psim_tokens: int = 5
    psim_epochs: int = 1
    psim_lr: float = 2e-5
    psim_rows: int = 200


@dataclass
class RebalanceConfig:
    """Classifier re-balancing for long-tailed data (``strategies.REBALANCERS``).

    ``method``: ``none``, ``redgrape`` (needs ``model.extra_classifier``) or
    ``creff``. RedGrape: ``balanced_per_class`` real samples of every local class
    with at least that many (T), ``prototype_scale`` the step on the
    prototype-completed gradient (lambda), ``share_attractor`` false keeps each client's
    extra classifier personal (the official default), true averages it. CReFF: ``synthetic_per_class``
    federated features optimised for ``feature_steps`` at ``feature_lr``, then a
    fresh classifier trained on them for ``classifier_epochs`` at ``classifier_lr``.
    """

    method: str = "none"
    balanced_per_class: int = 8
    prototype_scale: float = 0.1
    share_attractor: bool = False
    synthetic_per_class: int = 100
    feature_steps: int = 100
    feature_lr: float = 0.1
    classifier_epochs: int = 300
    classifier_lr: float = 0.01


@dataclass
class FaultsConfig:
    """Injected client faults for reliability tests (``clients.faults``).

    ``clients`` and ``rounds`` are comma-separated ids (``rounds`` empty: all);
    ``mode`` ``raise`` raises in the client, ``exit`` ends its worker process,
    ``nan`` / ``shape`` send an update with NaN values / a wrongly shaped tensor.
    """

    clients: str = ""
    rounds: str = ""
    mode: Literal["raise", "exit", "nan", "shape"] = "raise"


@dataclass
class Config:
    """A whole experiment."""

    run: RunConfig = field(default_factory=RunConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    rebalance: RebalanceConfig = field(default_factory=RebalanceConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)

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
                    f"sections are {', '.join(_sections())}"
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
        cfg = cls.from_dict(_read(Path(path)))
        for item in overrides or []:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override '{item}' is not of the form section.key=value")
            cfg.set(key.strip(), _parse_yaml(raw) if raw.strip() else "")
        cfg.validate()
        return cfg

    def set(self, key: str, value: Any) -> None:
        """Set ``section.key`` to ``value``, coerced to the field's type."""
        section_name, _, name = key.partition(".")
        if section_name not in _sections():
            raise ConfigError(f"unknown key '{key}': sections are {', '.join(_sections())}")
        section = getattr(self, section_name)
        fields = {f.name: f for f in dataclasses.fields(section)}
        if name not in fields:
            raise ConfigError(
                f"unknown key '{key}': keys of '{section_name}' are {', '.join(fields)}"
            )
        hint = typing.get_type_hints(type(section))[name]
        setattr(section, name, _coerce(key, value, hint))

    # ---------------------------------------------------------------- checking
    def validate(self) -> None:
        """Check ranges and cross-field constraints; raise ``ConfigError``."""
        from fedsec.registry import check_registered

        fed, data, client = self.federation, self.data, self.client
        _positive("run.num_rounds", self.run.num_rounds)
        _positive("run.round_timeout", self.run.round_timeout)
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
        for key in ("data.train_size", "data.test_size", "data.min_partition_size"):
            if self.get(key) < 0:
                raise ConfigError(f"{key} must be >= 0 (0 = keep all)")
        _positive("model.rank", self.model.rank)
        if self.model.adapter_size < 0:
            raise ConfigError("model.adapter_size must be >= 0 (0 = d_model / 16, the paper's ratio)")
        _positive("model.adapter_keep", self.model.adapter_keep)
        _positive("client.epochs", client.epochs)
        _positive("client.batch_size", client.batch_size)
        _positive("client.eval_batch_size", client.eval_batch_size)
        _positive("client.lr", client.lr)
        if not 0.0 <= self.strategy.fedglad_beta < 1.0:
            raise ConfigError("strategy.fedglad_beta must lie in [0, 1)")
        if self.strategy.fedglad_gamma < 0:
            raise ConfigError("strategy.fedglad_gamma must be >= 0")
        self._validate_robust()
        if self.strategy.mnmt_k < 0 or self.strategy.mnmt_warmup < 1:
            raise ConfigError("strategy.mnmt_k must be >= 0 and strategy.mnmt_warmup >= 1")
        for key in ("faults.clients", "faults.rounds", "attack.rounds"):
            try:
                int_list(self.get(key))
            except ValueError as err:
                raise ConfigError(f"{key}={self.get(key)!r}: expected comma-separated integers") from err
        attack = self.attack
        if not 0.0 <= attack.poison_rate <= 1.0:
            raise ConfigError("attack.poison_rate must lie in [0, 1]")
        if attack.scale < 0 or attack.noise_std < 0:
            raise ConfigError("attack.scale and attack.noise_std must be >= 0")
        _positive("attack.dba_parts", attack.dba_parts)
        try:
            malicious = malicious_ids(attack.malicious_clients, fed.num_clients, self.run.seed)
        except ValueError as err:
            raise ConfigError(f"attack.malicious_clients={attack.malicious_clients!r}: {err}") from err
        attacking = (attack.data_poison, attack.model_poison, attack.local_training, attack.omniscient)
        if any(name != "none" for name in attacking[1:]) and not malicious:
            raise ConfigError("an attack is configured but attack.malicious_clients selects no client")
        if attack.data_poison != "none" and not malicious and not attack.backdoored_start:
            raise ConfigError("attack.data_poison is set but attack.malicious_clients selects no client "
                              "(and attack.backdoored_start is false)")
        if attack.backdoored_start and attack.data_poison == "none":
            raise ConfigError("attack.backdoored_start needs attack.data_poison (the release's trigger)")
        if not 0.0 < attack.backdoor_rate <= 1.0:
            raise ConfigError("attack.backdoor_rate must lie in (0, 1]")
        for key in ("attack.backdoor_rows", "attack.backdoor_epochs", "attack.backdoor_lr", "defense.psim_rows"):
            _positive(key, self.get(key))
        check_registered("attack.data_poison", attack.data_poison, "data_poisons")
        for name in name_list(attack.model_poison):
            check_registered("attack.model_poison", name, "model_poisons")
        check_registered("attack.local_training", attack.local_training, "local_trainings")
        check_registered("attack.omniscient", attack.omniscient, "omniscient_attacks")
        if not 0.0 < attack.neurotoxin_ratio < 1.0:
            raise ConfigError("attack.neurotoxin_ratio must lie in (0, 1)")
        for key in ("attack.w2s_teacher_epochs", "defense.teacher_epochs", "defense.psim_epochs", "defense.psim_tokens",
                    "attack.w2s_teacher_lr", "defense.teacher_lr", "defense.psim_lr", "defense.temperature",
                    "attack.w2s_lr", "defense.w2s_lr"):
            _positive(key, self.get(key))
        defense = self.defense
        if defense.clients not in ("all", "honest"):
            try:
                int_list(defense.clients)
            except ValueError as err:
                raise ConfigError(f"defense.clients={defense.clients!r}: expected all, honest or "
                                  "comma-separated ids") from err
        if not 0.0 < defense.psim_threshold <= 1.0:
            raise ConfigError("defense.psim_threshold must lie in (0, 1]")
        check_registered("defense.data_filter", defense.data_filter, "data_filters")
        check_registered("defense.local_training", defense.local_training, "local_trainings")
        check_registered("defense.inference_filter", defense.inference_filter, "inference_filters")
        if defense.inference_filter != "none" and attack.data_poison == "none":
            raise ConfigError(f"defense.inference_filter={defense.inference_filter} screens triggered inputs: "
                              "set attack.data_poison (the trigger whose ASR it is scored on)")
        check_registered("data.name", data.name, "datasets")
        check_registered("rebalance.method", self.rebalance.method, "rebalancers")
        for key in ("rebalance.balanced_per_class", "rebalance.synthetic_per_class", "rebalance.feature_steps",
                    "rebalance.feature_lr", "rebalance.classifier_epochs", "rebalance.classifier_lr"):
            _positive(key, self.get(key))
        if self.rebalance.prototype_scale < 0:
            raise ConfigError("rebalance.prototype_scale must be >= 0")
        if not 0 <= data.few_shot <= data.many_shot:
            raise ConfigError("data.few_shot and data.many_shot must satisfy 0 <= few_shot <= many_shot")
        check_registered("strategy.name", self.strategy.name, "strategies")
        self._validate_combinations()

    def _validate_combinations(self) -> None:
        """Refuse combinations that would run but compute something wrong."""
        s = self.strategy
        a = self.attack
        if "neurotoxin" in name_list(a.model_poison) and a.neurotoxin_mode == "step" and (
                self.rebalance.method == "redgrape" and a.local_training == "none"):
            raise ConfigError("attack.model_poison=neurotoxin with attack.neurotoxin_mode=step masks the steps of "
                              "fedsec.training.train, which rebalance.method=redgrape does not use: set "
                              "attack.neurotoxin_mode=round and attack.neurotoxin_mask=global_change")
        if a.neurotoxin_mode == "round" and a.neurotoxin_mask == "gradient" and "neurotoxin" in name_list(
                a.model_poison):
            raise ConfigError("attack.neurotoxin_mode=round projects the outgoing update, where no gradient is "
                              "known: set attack.neurotoxin_mask=global_change (or attack.neurotoxin_mode=step)")
        if self.rebalance.method == "redgrape" and not self.rebalance.share_attractor:
            # personal attractors: each client trains from its own extra classifier, while these measure
            # updates against the global one
            for key, value, off in (("strategy.fedglad", s.fedglad, "off"), ("strategy.defenses", s.defenses, "none"),
                                    ("attack.omniscient", a.omniscient, "none")):
                if name_list(value) != [off]:
                    raise ConfigError(f"rebalance.method=redgrape with personal bias attractors "
                                      f"(rebalance.share_attractor=false) cannot be combined with {key}={value}, "
                                      "which measures updates against the global model: set "
                                      f"rebalance.share_attractor=true or {key}={off}")
        if self.defense.inference_filter != "none":
            from clients.attacks.data_poison import DATA_POISONS, TriggerPoison

            if not issubclass(DATA_POISONS[a.data_poison], TriggerPoison):
                raise ConfigError(f"defense.inference_filter={self.defense.inference_filter} screens triggered "
                                  f"inputs: attack.data_poison={a.data_poison} has no trigger")
        if s.name == "fedmnmt":
            # Fed-MNMT sends every client its own cluster's adapters: a wrapper that measures
            # updates against one global model (FedGLAD, the screening defenses, the re-balancers,
            # the omniscient channel) would mix clusters and lose the per-pair evaluation view.
            for key, value, off in (("strategy.fedglad", s.fedglad, "off"), ("strategy.defenses", s.defenses, "none"),
                                    ("rebalance.method", self.rebalance.method, "none"),
                                    ("attack.omniscient", self.attack.omniscient, "none")):
                if name_list(value) != [off]:
                    raise ConfigError(f"strategy.name=fedmnmt cannot be combined with {key}={value}: Fed-MNMT "
                                      f"sends each client its cluster's adapters, while {key} compares updates "
                                      f"with one global model; set {key}={off}")

    def _validate_robust(self) -> None:
        from fedsec.registry import check_registered

        s, n = self.strategy, self.federation.clients_per_round
        for name in name_list(s.defenses):
            check_registered("strategy.defenses", name, "defenses")
        if s.byzantine < 0 or s.multikrum_keep < 0 or s.clip_norm < 0 or s.noise_multiplier < 0:
            raise ConfigError("strategy.byzantine, multikrum_keep, clip_norm and noise_multiplier must be >= 0")
        if not 0.0 <= s.trim_beta < 0.5:
            raise ConfigError("strategy.trim_beta must lie in [0, 0.5)")
        for key in ("strategy.rfa_iterations", "strategy.fltrust_root_size", "strategy.foolsgold_kappa"):
            _positive(key, self.get(key))
        needs = {"krum": 2 * s.byzantine + 3, "multikrum": 2 * s.byzantine + 3, "bulyan": 4 * s.byzantine + 3}
        if s.name in needs and n < needs[s.name]:
            raise ConfigError(f"strategy.name={s.name} with strategy.byzantine={s.byzantine} needs at least "
                              f"{needs[s.name]} clients per round, federation.clients_per_round={n}")
        if "norm_clip" in name_list(s.defenses) and s.clip_norm <= 0:
            raise ConfigError("strategy.defenses=norm_clip needs strategy.clip_norm > 0")

    # ---------------------------------------------------------------- output
    def get(self, key: str) -> Any:
        """Return the value of ``section.key``."""
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name)

    def to_flat(self) -> dict[str, Scalar]:
        """The Flower run-config form: ``{"section.key": scalar}``."""
        return {
            f"{section}.{k}": v
            for section, values in self.to_dict().items()
            for k, v in values.items()
        }

    def to_dict(self) -> dict[str, dict[str, Scalar]]:
        """The nested form written to ``config.yaml``."""
        return dataclasses.asdict(self)

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
        return _parse_cached(str(config[CONFIG_KEY]))

    def dump(self, path: str | Path) -> None:
        """Write the resolved config as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


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


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The nested sections of a config file, with its ``base`` chain merged in."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' chain loops")
    text = path.read_text()
    try:
        nested = (tomllib.loads(text) if path.suffix == ".toml" else _parse_yaml(text)) or {}
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: not valid {path.suffix[1:]}: {err}") from err
    base = nested.pop("base", None)
    if base is None:
        return nested
    merged = _read(path.parent / str(base), (*seen, path.resolve()))
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


def _sections() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


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


def _coerce(key: str, value: Any, hint: Any) -> Scalar:
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
