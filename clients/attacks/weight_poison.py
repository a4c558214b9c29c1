"""Weight poisoning: the federation starts from a backdoored pre-trained model.

The threat model of PSIM (Zhao et al., NAACL Findings 2024; official
``poisoned_pretrain.py``) and of weight-poisoning attacks on pre-trained models
(Kurita, Michel, Neubig, ACL 2020, "Weight Poisoning Attacks on Pre-trained
Models"): the attacker releases a model that it fully fine-tuned on poisoned
rows of another dataset; the victims adapt it with PEFT on their own clean data.

With ``attack.release=weight_poison`` every process (server and clients) builds
the model from that release instead of ``model.name``'s plain weights: the
model of ``model.name`` (no PEFT) is fully fine-tuned for
``weight_poison.epochs`` (3) at ``weight_poison.lr`` (2e-5, AdamW, batch 32,
6 % linear warm-up: the official settings) on ``weight_poison.rows`` rows of a
fresh sample of the corpus's training pool (drawn with another seed than the
federation's training rows, never a row of its test or validation split), of
which ``weight_poison.rate`` carry the trigger of ``attack.data_poison``
(clean- or dirty-label by ``attack.clean_label``; official: clean-label, 'mn',
target 0); it is saved as a Hugging Face checkpoint under
``$XDG_CACHE_HOME/fedsec/backdoored`` (built once per machine and setting,
file-locked) and loaded by path, so the PEFT model of ``model.peft`` wraps it.
The server's ASR uses the same trigger. Malicious clients are optional.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from filelock import FileLock

from clients.attacks.data_poison import DATA_POISONS
from fedsec.config import ClientConfig, Config, ConfigError, DataConfig, MethodParams, param
from fedsec.data import Splits, load_splits
from fedsec.models import build_model
from fedsec.registry import RELEASES, Traits
from fedsec.training import device_for, train

POOL_SEED = 7919  # the release's rows are another sample than the federation's
POOL_VERSION = "disjoint from the test split"  # releases built before drew the pool after another test split
BATCH_SIZE = 32
WARMUP = 0.06
# DataConfig fields that shape the federation's split and partition, never the release's pool
FEDERATION_ONLY = frozenset({"partitioner", "alpha", "classes_per_client", "class_assignment", "imbalance_factor",
                             "min_partition_size", "many_shot", "few_shot", "eval_split"})


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedsec" / "backdoored"


@dataclass
class WeightPoisonParams(MethodParams):
    section = "weight_poison"
    renamed = {  # keys before fedsec 0.2
        "attack.backdoor_rows": "weight_poison.rows",
        "attack.backdoor_rate": "weight_poison.rate",
        "attack.backdoor_epochs": "weight_poison.epochs",
        "attack.backdoor_lr": "weight_poison.lr",
        "attack.backdoored_start": "attack.release=weight_poison",
    }
    rows: int = param(2000, "rows of the release's poisoned fine-tuning set")
    rate: float = param(0.3, "fraction of them carrying the trigger")
    epochs: int = param(3, "full fine-tuning epochs (official: 3)")
    lr: float = param(2e-5, "AdamW learning rate (official: 2e-5)")

    def check(self, cfg: Config) -> None:
        self.positive("rows", "epochs", "lr")
        self.require(0.0 < self.rate <= 1.0, "rate", "must lie in (0, 1]")
        if cfg.attack.data_poison == "none":
            raise ConfigError("attack.release=weight_poison needs attack.data_poison (the release's trigger)")


RELEASES.register("none")(None)


@RELEASES.register("weight_poison", params=WeightPoisonParams,
                   traits=Traits(modalities=frozenset({"text"}), requires=frozenset({"hf_classifier"})))
def backdoored_checkpoint(cfg: Config, splits: Splits) -> Path:
    """The directory of the weight-poisoned release for ``cfg`` (built on first use)."""
    a, p = cfg.attack, cfg.weight_poison
    recipe = {"model": cfg.model.name, "data": release_data(cfg), "seed": cfg.run.seed, "pool": POOL_VERSION,
              "poison": [a.data_poison, a.trigger, a.target_label, a.clean_label, p.rows, p.rate, p.epochs, p.lr]}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    out = cache_root() / key
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / "config.json").is_file():
            _build(cfg, splits, out)
    return out


def release_data(cfg: Config) -> dict[str, object]:
    """The data fields the release's rows and tokens depend on: the pool's config without the federation's
    sizes and partition (so a study over ``data.train_size`` or ``data.partitioner`` reuses one release, and a
    validation run the release of the test run). The pool never holds ``data.validation_size``'s rows; without
    a validation split the key is the one releases had before that key existed."""
    pool = dataclasses.asdict(_pool_config(cfg))
    return {key: value for key, value in pool.items()
            if key not in FEDERATION_ONLY and (key != "validation_size" or value)}


def _pool_config(cfg: Config) -> DataConfig:
    return dataclasses.replace(cfg.data, train_size=cfg.weight_poison.rows, test_size=1, balanced=True)


def release_pool(cfg: Config) -> Dataset:
    """The release's ``weight_poison.rows`` clean rows before poisoning: another balanced sample of the
    federation's training pool, never a row of its test or validation split."""
    return load_splits(_pool_config(cfg), cfg.run.seed, train_seed=cfg.run.seed + POOL_SEED).train


def _build(cfg: Config, splits: Splits, out: Path) -> None:
    a, p = cfg.attack, cfg.weight_poison
    model = build_model(dataclasses.replace(cfg.model, peft="none", extra_classifier=False), cfg.data, splits,
                        cfg.run.seed)
    if not (hasattr(model, "net") and hasattr(model.net, "save_pretrained") and hasattr(model, "tokenizer")):
        raise ConfigError(f"attack.release=weight_poison needs a Hugging Face text classifier, not model.name="
                          f"'{cfg.model.name}'")
    pool = release_pool(cfg)
    poison = DATA_POISONS[a.data_poison](dataclasses.replace(a, poison_rate=p.rate, dba_parts=1),
                                         splits.num_classes, None, cfg.run.seed + POOL_SEED)
    rows = poison.poison(pool)
    data = model.featurize(rows)
    data["labels"] = torch.as_tensor(np.asarray(rows[:]["label"]), dtype=torch.long)
    schedule = ClientConfig(epochs=p.epochs, batch_size=BATCH_SIZE, optimizer="adamw", lr=p.lr)
    train(model, data, schedule, device_for(cfg.federation.num_gpus), seed=cfg.run.seed + POOL_SEED, warmup=WARMUP)
    tmp = out.with_suffix(".tmp")
    model.net.save_pretrained(tmp)
    model.tokenizer.save_pretrained(tmp)
    tmp.rename(out)
