"""Dataset registry and the common post-processing of every loader.

A loader returns ``(train, test)`` ``datasets.Dataset`` objects with a
``label`` column of class ids and a ``text`` or an ``image`` column, or
``source`` and ``target`` columns (translation; ``label`` is the language pair), or
``instruction``, ``input`` and ``output`` columns (instruction tuning; ``label`` is
the task category);
``test`` may be ``None``, in which case a seeded 20 % of ``train`` is held out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from datasets import ClassLabel, Dataset

from fedsec.config import ConfigError, DataConfig
from fedsec.registry import DATASETS, Traits

log = logging.getLogger("fedsec")

Loader = Callable[[DataConfig], tuple[Dataset, Dataset | None]]
MODALITIES = ("text", "image", "translation", "instruction")
TEXT, IMAGE, TRANSLATION, INSTRUCTION = (Traits(modalities=frozenset({m})) for m in MODALITIES)

TEST_FRACTION = 0.2
VALIDATION_SEED = 2  # data.validation_size: one fixed split of the training pool for every run.seed


@dataclass
class Splits:
    """A federated dataset before partitioning."""

    train: Dataset
    test: Dataset
    num_classes: int
    modality: str  # one of MODALITIES
    label_names: list[str]


def load_splits(cfg: DataConfig, seed: int, train_seed: int | None = None) -> Splits:
    """Load ``cfg.name`` through its registered loader, then hold out and subsample.

    ``seed`` draws the held-out test split (where the dataset has none) and the subsamples; ``train_seed``, if
    given, draws the training subsample instead: another sample of the same training pool, disjoint from the
    test and validation rows of ``seed`` (a weight-poisoned release's rows)."""
    train, test = DATASETS[cfg.name](cfg)
    if "label" not in train.column_names:
        raise ConfigError(
            f"dataset '{cfg.name}' has no label column: columns are {train.column_names}; "
            "set data.label_column"
        )
    columns = set(train.column_names)
    modality = modality_of(columns)
    if modality == "image" and "image" not in columns:
        raise ConfigError(
            f"dataset '{cfg.name}' has neither a text nor an image column: columns are "
            f"{train.column_names}; set data.text_column"
        )
    label_feature = train.features["label"]
    if isinstance(label_feature, ClassLabel):
        names = list(label_feature.names)
    else:
        names = [str(v) for v in sorted(set(train["label"]) | set(test["label"] if test else []))]
    if cfg.pairs:
        train, test, names = _keep_pairs(cfg, modality, train, test, names)
    if test is None:
        split = train.train_test_split(test_size=TEST_FRACTION, seed=seed)
        train, test = split["train"], split["test"]
    if cfg.validation_size:
        keep = _pick(train, cfg.validation_size, cfg.balanced, len(names), VALIDATION_SEED, "data.validation_size")
        held_out = np.zeros(len(train), dtype=bool)
        held_out[keep] = True
        if not held_out.any():
            raise ConfigError(f"data.validation_size={cfg.validation_size} with data.balanced=true gives no row per "
                              f"class of the {len(names)}: set it to at least {len(names)}")
        if held_out.all():
            raise ConfigError(f"data.validation_size={cfg.validation_size} holds out every one of the "
                              f"{len(train)} training rows of data.name={cfg.name}")
        validation, train = train.select(np.flatnonzero(held_out)), train.select(np.flatnonzero(~held_out))
    train = _subsample(train, cfg.train_size, cfg.balanced, len(names), seed if train_seed is None else train_seed,
                       "data.train_size")
    test = _subsample(test, cfg.test_size, cfg.balanced, len(names), seed + 1, "data.test_size")
    if cfg.eval_split == "validation":  # the same training rows as with the test split
        test = validation
    return Splits(train=train, test=test, num_classes=len(names), modality=modality, label_names=names)


def _keep_pairs(cfg: DataConfig, modality: str, train: Dataset, test: Dataset | None,
                names: list[str]) -> tuple[Dataset, Dataset | None, list[str]]:
    """Only the rows of the language pairs ``data.pairs``, labelled in its order (a no-op for loaders that
    read only those pairs)."""
    if modality != "translation":
        raise ConfigError(f"data.pairs={cfg.pairs!r} chooses language pairs: data.name={cfg.name} is {modality} data")
    wanted = [f"{s}-{t}" for s, t in parse_pairs(cfg.pairs)]
    missing = [pair for pair in wanted if pair not in names]
    if missing:
        raise ConfigError(f"data.pairs={cfg.pairs!r}: data.name={cfg.name} has no rows of {', '.join(missing)}; "
                          f"its pairs are {', '.join(names)}")
    if wanted == names:
        return train, test, names
    new_id = {names.index(pair): i for i, pair in enumerate(wanted)}
    features = train.features.copy()
    features["label"] = ClassLabel(names=wanted)

    def keep(ds: Dataset) -> Dataset:
        ds = ds.filter(lambda label: label in new_id, input_columns="label")
        return ds.map(lambda label: {"label": new_id[label]}, input_columns="label", features=features)

    return keep(train), keep(test) if test is not None else None, wanted


def parse_pairs(spec: str, available: tuple[tuple[str, str], ...] | None = None) -> list[tuple[str, str]]:
    """``data.pairs``: ``"de-fr,nl-pl"`` -> [("de", "fr"), ("nl", "pl")], each among ``available`` if given."""
    pairs = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        src, sep, tgt = item.partition("-")
        if not sep or not src or not tgt or src == tgt:
            raise ConfigError(f"data.pairs={spec!r}: '{item}' is not a pair src-tgt of two languages")
        if available is not None and (src, tgt) not in available:
            raise ConfigError(f"data.pairs={spec!r}: '{item}' is not a direction of this corpus; choose among "
                              f"{', '.join(f'{s}-{t}' for s, t in available)}")
        pairs.append((src, tgt))
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"data.pairs={spec!r} names a pair twice")
    return pairs


def labels_of(ds: Dataset) -> np.ndarray:
    """The ``label`` column as one numpy array (``np.asarray(ds["label"])`` would read it row by row)."""
    return np.asarray(ds.with_format("numpy")["label"][:])


def modality_of(columns: set[str]) -> str:
    """The modality a dataset's columns describe."""
    if {"source", "target"} <= columns:
        return "translation"
    if {"instruction", "output"} <= columns or {"instruction", "response"} <= columns:
        return "instruction"
    return "text" if "text" in columns else "image"


def _subsample(ds: Dataset, size: int, balanced: bool, num_classes: int, seed: int, key: str) -> Dataset:
    """Keep ``size`` rows (0 = all), equally many per class if ``balanced``; a ``size`` the split cannot
    give is logged with what is used instead (``key`` names the config key)."""
    keep = _pick(ds, size, balanced, num_classes, seed, key)
    return ds if len(keep) == len(ds) else ds.select(keep)


def _pick(ds: Dataset, size: int, balanced: bool, num_classes: int, seed: int, key: str) -> np.ndarray:
    """The sorted indices :func:`_subsample` keeps."""
    rng = np.random.default_rng(seed)
    if not balanced:
        if size > len(ds):
            log.warning("%s=%d but the split has %d rows: all %d are used", key, size, len(ds), len(ds))
        return np.arange(len(ds)) if size == 0 or size >= len(ds) else np.sort(rng.choice(len(ds), size, replace=False))
    labels = labels_of(ds)
    per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    smallest = min(len(idx) for idx in per_class)
    take = smallest if size == 0 else min(smallest, size // num_classes)
    if size // num_classes > smallest:
        log.warning("%s=%d with data.balanced=true: the smallest class has %d rows, so %d per class (%d rows) "
                    "are used", key, size, smallest, take, take * num_classes)
    return np.sort(np.concatenate([rng.choice(idx, take, replace=False) for idx in per_class]))
