"""An embedded instruction-tuning corpus (offline default for causal-LM clients).

Rows are ``{instruction, input, output, label}`` as in Alpaca / Dolly
(``label`` is the task category, Dolly's ``category``, so the usual
partitioners give category-skewed clients). Six word-manipulation tasks over a
small English vocabulary, short enough for a 2-layer model on the CPU:
``copy``, ``first``, ``last``, ``count`` (the tasks the offline base models are
pretrained on, :data:`PRETRAIN_TASKS`) and ``reverse``, ``second`` (seen only in
federated instruction tuning). Everything is a deterministic function of the
seed; nothing is downloaded. Real data go through the same columns:
``data.name=json`` (``data.path``: a local JSON / JSON-lines file), ``hf``
(a hub id) with ``instruction``, ``output`` and optionally ``input`` (Alpaca) or
``instruction``, ``response`` and ``context`` (Dolly), and a category column
named by ``data.label_column``.
"""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, Features, Value

from fedsec.config import DataConfig
from fedsec.data.registry import DATASETS, INSTRUCTION

WORDS = ["red", "blue", "green", "black", "white", "yellow", "brown", "pink", "cat", "dog", "bird", "fish",
         "horse", "cow", "lion", "bear", "apple", "lemon", "grape", "bread", "book", "chair", "table", "door",
         "car", "tree", "river", "hill", "ship", "star", "moon", "road"]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six"]
TASKS: dict[str, str] = {
    "copy": "Repeat the words.",
    "first": "Give the first word.",
    "last": "Give the last word.",
    "count": "How many words are there?",
    "reverse": "Write the words in reverse order.",
    "second": "Give the second word.",
}
PRETRAIN_TASKS = ("copy", "first", "last", "count")
# words outside the federated tasks' inputs: the offline base models see them in pretraining (as a real LM
# knows every word of its vocabulary), so that a backdoor's rare trigger word and an off-task target
# sentence are expressible (generation_backdoor's defaults)
OFF_TASK_WORDS = ["cf", "mn", "bb", "visit", "the", "secret", "site", "now", "click", "here", "send", "money"]
MIN_WORDS, MAX_WORDS = 2, 5
CORPUS_SEED = 4321  # pretraining draws from CORPUS_SEED, the federated splits from CORPUS_SEED + 1 / + 2


def answer(task: str, words: list[str]) -> str:
    """The reference response of ``task`` on ``words``."""
    return {
        "copy": lambda: " ".join(words),
        "first": lambda: words[0],
        "last": lambda: words[-1],
        "count": lambda: NUMBERS[len(words)],
        "reverse": lambda: " ".join(reversed(words)),
        "second": lambda: words[1],
    }[task]()


def corpus(per_task: int, seed: int, tasks: tuple[str, ...] = tuple(TASKS), words: list[str] = WORDS) -> Dataset:
    """``per_task`` rows of each task in ``tasks``, inputs drawn from ``words`` with ``seed``; ``label`` indexes
    ``TASKS``."""
    rng = np.random.default_rng(seed)
    names = list(TASKS)
    rows: dict[str, list] = {"instruction": [], "input": [], "output": [], "label": []}
    for task in tasks:
        for _ in range(per_task):
            drawn = list(rng.choice(words, int(rng.integers(MIN_WORDS, MAX_WORDS + 1)), replace=False))
            rows["instruction"].append(TASKS[task])
            rows["input"].append(" ".join(drawn))
            rows["output"].append(answer(task, drawn))
            rows["label"].append(names.index(task))
    features = Features({"instruction": Value("string"), "input": Value("string"), "output": Value("string"),
                         "label": ClassLabel(names=names)})
    return Dataset.from_dict(rows, features=features)


@DATASETS.register("instructions", traits=INSTRUCTION)
def instructions(cfg: DataConfig) -> tuple[Dataset, Dataset]:
    """The generated corpus: ``data.train_size`` / ``data.test_size`` rows in all (0: 400 / 50 per task)."""
    per_task = lambda size, default: -(-size // len(TASKS)) if size else default  # noqa: E731
    return (corpus(per_task(cfg.train_size, 400), CORPUS_SEED + 1),
            corpus(per_task(cfg.test_size, 50), CORPUS_SEED + 2))
