"""Europarl (Koehn, 2005) from the hub, the corpus of Fed-MNMT's many-to-many setting.

"Communication Efficient Federated Learning for Multilingual Neural Machine
Translation with Adapter" (Liu et al., Findings of ACL 2023) trains one client per
language direction of Europarl v8 (official code ``lancopku/FedMNMT``). This loader
reads each direction ``src-tgt`` of ``data.pairs`` (empty: the official 12 m2m
directions, ``exp_lang_pairs/mbart_europarl_m2m.txt``) from the hub config of its two
languages in alphabetical order (``Helsinki-NLP/europarl``, config ``de-fr``) and
prepares it as the official ``data_preprocess.py`` and ``data_utils.py`` do:

- a seeded shuffle (seed 2022) cut 60 / 20 / 20 into train / dev / test (fedsec
  shuffles each pair with its own generator; the official script draws one stream
  over the pairs in sorted order, so the sentences chosen differ, not the recipe);
- in each split, in that order, the first lines whose two sides both have more than
  one word (``check_data``) are kept: ``data.train_size`` / ``data.test_size`` split
  equally over the pairs (the official ``--uniform`` mode: 5000 / 1500 per pair), or
  with size 0 the official default, 1 % of the split (``num_instances = len / 100``).

The dev split is not read: no fedsec method selects on it. Language families for
``fedmnmt.families`` (the official ``lang_group_ep``): :data:`FAMILIES`.
"""

from __future__ import annotations

import math

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, Features, Value

from fedsec.config import ConfigError, DataConfig
from fedsec.data.registry import DATASETS, TRANSLATION, parse_pairs

HUB_ID = "Helsinki-NLP/europarl"
M2M_PAIRS = "de-fr,nl-pl,en-lt,fr-nl,it-sl,es-lv,pl-en,sl-es,sl-lt,lt-de,lv-it,lv-pl"
FAMILIES = "de,en,nl;fr,it,es;pl,sl;lt,lv"
SPLIT_SEED, TRAIN_FRACTION, DEV_FRACTION = 2022, 0.6, 0.2


def _valid(line: str) -> bool:
    """The official ``check_data`` for space-separated languages: more than one word."""
    return len(line.split()) > 1


def _first_valid(sources: list[str], targets: list[str], order: np.ndarray, count: int) -> list[int]:
    kept: list[int] = []
    for i in order:
        if len(kept) >= count:
            break
        if _valid(sources[i]) and _valid(targets[i]):
            kept.append(int(i))
    return kept


def _direction(src: str, tgt: str, train_size: int, test_size: int) -> tuple[list[tuple[str, str]], ...]:
    config = "-".join(sorted((src, tgt)))
    try:
        loaded = datasets.load_dataset(HUB_ID, config, split="train")
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"data.pairs: '{src}-{tgt}' is not a Europarl pair ({HUB_ID} has no config "
                          f"'{config}'): {err}") from err
    flat = loaded.flatten()
    sources, targets = flat[f"translation.{src}"], flat[f"translation.{tgt}"]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(sources))
    n_train, n_dev = int(len(order) * TRAIN_FRACTION), int(len(order) * DEV_FRACTION)
    train_order, test_order = order[:n_train], order[n_train + n_dev:]
    train = _first_valid(sources, targets, train_order, train_size or len(train_order) // 100)
    test = _first_valid(sources, targets, test_order, test_size or len(test_order) // 100)
    return tuple([(sources[i], targets[i]) for i in rows] for rows in (train, test))


@DATASETS.register("europarl", traits=TRANSLATION)
def europarl(cfg: DataConfig) -> tuple[Dataset, Dataset]:
    """Europarl directions of ``data.pairs`` (default: Fed-MNMT's 12 m2m directions), one label per direction."""
    pairs = parse_pairs(cfg.pairs or M2M_PAIRS)
    per_pair = [math.ceil(size / len(pairs)) if size else 0 for size in (cfg.train_size, cfg.test_size)]
    names = [f"{s}-{t}" for s, t in pairs]
    features = Features({"source": Value("string"), "target": Value("string"), "pair": Value("string"),
                         "label": ClassLabel(names=names)})
    columns: tuple[dict[str, list], ...] = tuple({"source": [], "target": [], "pair": [], "label": []}
                                                 for _ in range(2))
    for label, (src, tgt) in enumerate(pairs):
        for split, rows in zip(columns, _direction(src, tgt, *per_pair), strict=True):
            split["source"] += [s for s, _ in rows]
            split["target"] += [t for _, t in rows]
            split["pair"] += [names[label]] * len(rows)
            split["label"] += [label] * len(rows)
    train, test = (Dataset.from_dict(split, features=features) for split in columns)
    return train, test
