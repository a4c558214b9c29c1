"""Datasets and partitioners: sizes, label distributions, long-tailed counts, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from fedsec.config import ConfigError, DataConfig
from fedsec.data import load_splits, longtail_counts, partition
from fedsec.data.tweets import clean


def _label_matrix(train, parts, num_classes: int) -> np.ndarray:
    labels = np.asarray(train["label"])
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])


@pytest.fixture(scope="module")
def digits():
    return load_splits(DataConfig(name="digits", test_size=0), seed=0)


def test_digits_splits(digits) -> None:
    assert digits.modality == "image" and digits.num_classes == 10
    assert len(digits.train) + len(digits.test) == 1797
    assert np.asarray(digits.train[0]["image"]).shape == (1, 8, 8)


def test_tweets_polarity_is_real_and_balanced() -> None:
    splits = load_splits(DataConfig(name="tweets_polarity", train_size=1000, test_size=400, balanced=True), seed=0)
    assert splits.label_names == ["negative", "positive"]
    assert np.bincount(splits.train["label"]).tolist() == [500, 500]
    assert np.bincount(splits.test["label"]).tolist() == [200, 200]
    assert not set(splits.train["text"]) & set(splits.test["text"])  # no leakage


def test_clean_removes_urls_entities_and_mojibake() -> None:
    assert clean("RT @x: fun &amp; games http://t.co/abc \u00e4\u00f3_") == "RT @x: fun & games http"


def test_iid_partition_sizes_and_balance(digits) -> None:
    cfg = DataConfig(name="digits", partitioner="iid")
    train, parts = partition(digits.train, cfg, 10, 10, seed=0)
    sizes = [len(p) for p in parts]
    assert sum(sizes) == len(train) and max(sizes) - min(sizes) <= 1
    assert len(np.unique(np.concatenate(parts))) == len(train)  # disjoint, complete
    shares = _label_matrix(train, parts, 10) / np.array(sizes)[:, None]
    assert np.abs(shares - 0.1).max() < 0.12


def test_dirichlet_skew_grows_as_alpha_shrinks(digits) -> None:
    def skew(alpha: float) -> float:
        cfg = DataConfig(name="digits", partitioner="dirichlet", alpha=alpha, min_partition_size=5)
        train, parts = partition(digits.train, cfg, 10, 10, seed=0)
        m = _label_matrix(train, parts, 10)
        assert m.sum() == len(train)
        return float(np.mean((m / m.sum(1, keepdims=True)).max(1)))

    assert skew(0.1) > skew(1.0) > skew(100.0)
    assert skew(100.0) < 0.2


def test_pathological_classes_per_client(digits) -> None:
    cfg = DataConfig(name="digits", partitioner="pathological", classes_per_client=2)
    train, parts = partition(digits.train, cfg, 10, 10, seed=0)
    m = _label_matrix(train, parts, 10)
    assert ((m > 0).sum(1) <= 2).all()


def test_longtail_counts_follow_imbalance_factor(digits) -> None:
    counts = longtail_counts([100] * 10, 10.0)
    assert counts[0] == 100 and counts[-1] == 10
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    cfg = DataConfig(name="digits", partitioner="longtail", imbalance_factor=10.0, alpha=1.0, min_partition_size=0)
    train, parts = partition(digits.train, cfg, 5, 10, seed=0)
    global_counts = np.bincount(train["label"], minlength=10)
    assert global_counts[0] / global_counts[-1] == pytest.approx(10.0, rel=0.15)
    assert sum(len(p) for p in parts) == len(train)


def test_partitioning_is_seeded(digits) -> None:
    cfg = DataConfig(name="digits", partitioner="dirichlet", alpha=0.3, min_partition_size=5)
    a = partition(digits.train, cfg, 8, 10, seed=1)[1]
    b = partition(digits.train, cfg, 8, 10, seed=1)[1]
    c = partition(digits.train, cfg, 8, 10, seed=2)[1]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_local_csv_with_named_columns(tmp_path) -> None:
    path = tmp_path / "reviews.csv"
    rows = ["body,stars"] + [f"review number {i},{'good' if i % 2 else 'bad'}" for i in range(50)]
    path.write_text("\n".join(rows))
    splits = load_splits(DataConfig(name="csv", path=str(path), text_column="body", label_column="stars"), seed=0)
    assert splits.num_classes == 2 and splits.modality == "text"
    assert len(splits.train) + len(splits.test) == 50
    with pytest.raises(ConfigError, match="column 'label' does not exist"):
        load_splits(DataConfig(name="csv", path=str(path), text_column="body"), seed=0)


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such csv file"):
        load_splits(DataConfig(name="csv", path=str(tmp_path / "none.csv")), seed=0)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read it as json"):
        load_splits(DataConfig(name="json", path=str(broken)), seed=0)


def test_too_few_samples_for_clients(digits) -> None:
    with pytest.raises(ConfigError, match="cannot be split"):
        partition(digits.train.select(range(5)), DataConfig(name="digits", partitioner="iid"), 10, 10, seed=0)
