"""Weight poisoning: the federation starts from a backdoored pre-trained model.

The threat model of PSIM (Zhao et al., NAACL Findings 2024; official
``poisoned_pretrain.py``) and of weight-poisoning attacks on pre-trained models
(Kurita, Michel, Neubig, ACL 2020, "Weight Poisoning Attacks on Pre-trained
Models"): the attacker releases a model that it fully fine-tuned on poisoned
rows of another dataset; the victims adapt it with PEFT on their own clean data.

With ``attack.backdoored_start=true`` every process (server and clients) builds
the model from that release instead of ``model.name``'s plain weights: the
model of ``model.name`` (no PEFT) is fully fine-tuned for
``attack.backdoor_epochs`` (3) at ``attack.backdoor_lr`` (2e-5, AdamW, batch 32,
6 % linear warm-up: the official settings) on ``attack.backdoor_rows`` rows of a
fresh sample of the corpus (drawn with another seed than the federation's), of
which ``attack.backdoor_rate`` carry the trigger of ``attack.data_poison``
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
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from clients.attacks.data_poison import DATA_POISONS
from fedsec.config import ClientConfig, Config, ConfigError
from fedsec.data import Splits, load_splits
from fedsec.models import build_model
from fedsec.training import train

POOL_SEED = 7919  # the release's rows are another sample than the federation's
BATCH_SIZE = 32
WARMUP = 0.06


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedsec" / "backdoored"


def backdoored_checkpoint(cfg: Config, splits: Splits) -> Path:
    """The directory of the weight-poisoned release for ``cfg`` (built on first use)."""
    a = cfg.attack
    recipe = {"model": cfg.model.name, "data": dataclasses.asdict(cfg.data), "seed": cfg.run.seed,
              "poison": [a.data_poison, a.trigger, a.target_label, a.clean_label, a.backdoor_rows, a.backdoor_rate,
                         a.backdoor_epochs, a.backdoor_lr]}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    out = cache_root() / key
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / "config.json").is_file():
            _build(cfg, splits, out)
    return out


def _build(cfg: Config, splits: Splits, out: Path) -> None:
    a = cfg.attack
    model = build_model(dataclasses.replace(cfg.model, peft="none", extra_classifier=False), cfg.data, splits,
                        cfg.run.seed)
    if not (hasattr(model, "net") and hasattr(model.net, "save_pretrained") and hasattr(model, "tokenizer")):
        raise ConfigError(f"attack.backdoored_start needs a Hugging Face text classifier, not model.name="
                          f"'{cfg.model.name}'")
    pool = load_splits(dataclasses.replace(cfg.data, train_size=a.backdoor_rows, test_size=1, balanced=True),
                       cfg.run.seed + POOL_SEED).train
    poison = DATA_POISONS[a.data_poison](dataclasses.replace(a, poison_rate=a.backdoor_rate, dba_parts=1),
                                         splits.num_classes, None, cfg.run.seed + POOL_SEED)
    rows = poison.poison(pool)
    data = model.featurize(rows)
    data["labels"] = torch.as_tensor(np.asarray(rows[:]["label"]), dtype=torch.long)
    schedule = ClientConfig(epochs=a.backdoor_epochs, batch_size=BATCH_SIZE, optimizer="adamw", lr=a.backdoor_lr)
    train(model, data, schedule, torch.device("cpu"), seed=cfg.run.seed + POOL_SEED, warmup=WARMUP)
    tmp = out.with_suffix(".tmp")
    model.net.save_pretrained(tmp)
    model.tokenizer.save_pretrained(tmp)
    tmp.rename(out)
