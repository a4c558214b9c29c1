"""Data poisoning: the base class, the registry, and backdoor triggers in general.

A data poison turns a malicious client's clean rows into its training rows
(wrapping the honest client's data); a trigger-based poison can also build the
triggered test set on which the server measures the attack success rate:

    ASR = |{x in test : y(x) != target, f(T(x)) = target}| / |{x in test : y(x) != target}|

with T the full trigger. Poisoned training rows carry ``poisoned = True`` so
that defenses can be scored against the truth.
"""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from fedsec.config import AttackConfig, Config, ConfigError, malicious_ids
from fedsec.data import labels_of
from fedsec.experiment import Batch, Experiment
from fedsec.metrics import headline
from fedsec.registry import DATA_POISONS, EVALUATION_METRICS
from fedsec.training import predict

__all__ = ["DATA_POISONS", "DataPoison", "TriggerPoison"]


class DataPoison:
    """Identity poison (``none``); subclasses change rows."""

    has_trigger = False  # a trigger-based poison builds the triggered test set (ASR)

    def __init__(self, cfg: AttackConfig, num_classes: int, part: int | None, seed: int) -> None:
        """``part``: this client's share of a distributed trigger (None: the full trigger)."""
        if not 0 <= cfg.target_label < num_classes:
            raise ConfigError(f"attack.target_label={cfg.target_label} is not a class id (0..{num_classes - 1})")
        self.cfg = cfg
        self.num_classes = num_classes
        self.part = part
        self.seed = seed

    @classmethod
    def from_config(cls, cfg: Config, num_classes: int, part: int | None, seed: int) -> DataPoison:
        """The poison of experiment ``cfg`` (a poison with its own config section reads it here)."""
        return cls(cfg.attack, num_classes, part, seed)

    def poison(self, ds: Dataset) -> Dataset:
        """The client's training rows (here: unchanged)."""
        return ds

    def triggered_test(self, ds: Dataset) -> Dataset | None:
        """Test rows for ASR, or None when the poison has no trigger."""
        return None


DATA_POISONS.register("none")(DataPoison)


def client_poison(cfg: Config, partition_id: int, num_classes: int) -> DataPoison | None:
    """The data poison of a malicious client (its share of a distributed trigger), else None."""
    malicious = malicious_ids(cfg.attack.malicious_clients, cfg.federation.num_clients, cfg.run.seed)
    if cfg.attack.data_poison == "none" or partition_id not in malicious:
        return None
    part = malicious.index(partition_id) if cfg.attack.dba_parts > 1 else None
    return DATA_POISONS[cfg.attack.data_poison].from_config(cfg, num_classes, part, cfg.run.seed * 1000 + partition_id)


def server_poison(cfg: Config, num_classes: int) -> DataPoison:
    """The poison with the full trigger, for the server's ASR test set."""
    return DATA_POISONS[cfg.attack.data_poison].from_config(cfg, num_classes, None, cfg.run.seed)


class TriggerPoison(DataPoison):
    """A backdoor through a trigger, dirty-label or clean-label.

    Dirty-label: a ``poison_rate`` fraction of the client's rows, drawn from the
    non-target classes, get the trigger and the target label. Clean-label: the
    same fraction drawn from the target class only gets the trigger, labels
    kept.
    """

    has_trigger = True

    def apply(self, row: dict, rng: np.random.Generator, part: int | None) -> dict:
        """Insert the trigger (or ``part`` of it) into one row."""
        raise NotImplementedError

    def poison(self, ds: Dataset) -> Dataset:
        rng = np.random.default_rng(self.seed)
        labels = labels_of(ds)
        target = self.cfg.target_label
        pool = np.flatnonzero(labels == target) if self.cfg.clean_label else np.flatnonzero(labels != target)
        count = min(len(pool), int(round(self.cfg.poison_rate * len(ds))))
        chosen = np.sort(rng.choice(pool, count, replace=False)) if count else np.array([], dtype=int)
        rows = ds.to_list()
        for index in chosen:
            rows[index] = {**self.apply(rows[index], rng, self.part), "label": target}
        flags = np.zeros(len(ds), dtype=bool)
        flags[chosen] = True
        return _rebuild(ds, rows).add_column("poisoned", flags.tolist())

    def triggered_test(self, ds: Dataset) -> Dataset:
        rng = np.random.default_rng(self.seed + 1)
        keep = ds.select(np.flatnonzero(labels_of(ds) != self.cfg.target_label))
        return _rebuild(keep, [self.apply(row, rng, None) for row in keep.to_list()])


def triggered_data(experiment: Experiment) -> Batch | None:
    """The featurized triggered non-target test rows of the configured backdoor, or None (cached)."""

    def build() -> Batch | None:
        triggered = server_poison(experiment.cfg, experiment.num_classes).triggered_test(experiment.splits.test)
        return None if triggered is None else experiment.featurize(triggered)

    return experiment.cached("triggered-test", build)


_LAST_EVALUATION: dict[str, object] = {}  # the clean logits of the last evaluation and its triggered logits


def triggered_logits(experiment: Experiment, logits: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Logits of the loaded model on :func:`triggered_data`, or None without a trigger.

    ``logits`` (the same evaluation's clean test logits) identifies the evaluation: the evaluation
    hooks that need the triggered logits (ASR, an inference filter) share one forward pass.
    """
    if _LAST_EVALUATION.get("clean") is logits:
        return _LAST_EVALUATION["triggered"]  # type: ignore[return-value]
    data = triggered_data(experiment)
    triggered = None if data is None else predict(experiment.model, data, experiment.cfg.client.eval_batch_size,
                                                   device)
    _LAST_EVALUATION.update(clean=logits, triggered=triggered)
    return triggered


headline("asr", "attack success rate")


@EVALUATION_METRICS.register("asr")
def attack_success_rate(experiment: Experiment, logits: torch.Tensor, device: torch.device) -> dict[str, float]:
    """ASR of the configured backdoor on the triggered non-target test rows (none without a trigger)."""
    triggered = triggered_logits(experiment, logits, device)
    if triggered is None:
        return {}
    return {"asr": (triggered.argmax(1) == experiment.cfg.attack.target_label).float().mean().item()}


def _rebuild(like: Dataset, rows: list[dict]) -> Dataset:
    """A Dataset of ``rows`` with the features of ``like``."""
    columns = {name: [row[name] for row in rows] for name in like.column_names}
    return Dataset.from_dict(columns, features=like.features)


def insert_words(text: str, words: list[str], rng: np.random.Generator) -> str:
    """Insert each of ``words`` at a random word position of ``text``."""
    tokens = text.split()
    for word in words:
        tokens.insert(int(rng.integers(0, len(tokens) + 1)), word)
    return " ".join(tokens)
