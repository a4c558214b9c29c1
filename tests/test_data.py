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


def test_validation_split_is_fixed_held_out_and_evaluated_when_asked() -> None:
    base = dict(name="tweets_polarity", train_size=600, test_size=200, validation_size=300, balanced=True)
    runs = {(seed, split): load_splits(DataConfig(**base, eval_split=split), seed=seed)
            for seed in (0, 1) for split in ("test", "validation")}
    validation = runs[0, "validation"].test
    assert len(validation) == 300 and np.bincount(validation["label"]).tolist() == [150, 150]
    for seed in (0, 1):
        test_run, validation_run = runs[seed, "test"], runs[seed, "validation"]
        assert validation_run.train["text"] == test_run.train["text"]  # tune, then report on the same clients
        held_out = set(validation_run.test["text"])
        assert len(test_run.test) == 200 and not set(test_run.test["text"]) & held_out
        assert not set(test_run.train["text"]) & held_out
    without = load_splits(DataConfig(name="tweets_polarity", train_size=600, test_size=200, balanced=True), seed=0)
    assert without.test["text"] == runs[0, "test"].test["text"]  # the test split does not move


def test_validation_split_of_a_dataset_with_a_test_split(tmp_path) -> None:
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(100)]
    for name, part in (("train", rows[:80]), ("test", rows[80:])):
        (tmp_path / f"{name}.csv").write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in part))
    cfg = DataConfig(name="hf", path=str(tmp_path), test_size=0, validation_size=20, eval_split="validation")
    one, two = load_splits(cfg, seed=0), load_splits(cfg, seed=5)
    assert len(one.test) == 20 and one.test["text"] == two.test["text"]  # the same rows for every run.seed
    assert len(one.train) == 60 and not set(one.train["text"]) & set(one.test["text"])
    with pytest.raises(ConfigError, match="holds out every one"):
        load_splits(DataConfig(name="digits", validation_size=5000), seed=0)
    with pytest.raises(ConfigError, match="gives no row per class"):
        load_splits(DataConfig(name="digits", validation_size=9, balanced=True), seed=0)


def test_validation_keys_are_checked_at_config_time() -> None:
    from fedsec.config import Config

    with pytest.raises(ConfigError, match="data.eval_split=validation needs .*data.validation_size"):
        Config.from_dict({"data": {"eval_split": "validation"}})
    with pytest.raises(ConfigError, match="data.validation_size must be >= 0"):
        Config.from_dict({"data": {"validation_size": -1}})


def test_weight_poisoned_release_never_trains_on_the_test_or_validation_rows() -> None:
    from clients.attacks.weight_poison import release_data, release_pool
    from fedsec.config import Config

    flat = {"data.train_size": 600, "data.test_size": 200, "data.balanced": True, "data.validation_size": 300,
            "attack.data_poison": "badnet", "attack.release": "weight_poison", "attack.malicious_clients": ""}
    validation_cfg = Config.from_flat({**flat, "data.eval_split": "validation"})
    test_cfg = Config.from_flat(flat)
    assert release_data(validation_cfg) == release_data(test_cfg)  # one release for tuning and reporting
    pool = set(release_pool(validation_cfg)["text"])
    validation, test = (load_splits(c.data, c.run.seed).test for c in (validation_cfg, test_cfg))
    assert len(pool) == validation_cfg.weight_poison.rows and not pool & set(validation["text"])
    assert not pool & set(test["text"])  # tweets has no test split: the pool is drawn after the same hold-out
    assert len(pool & set(load_splits(test_cfg.data, test_cfg.run.seed).train["text"])) > 0  # another sample
    plain = Config.from_flat({key: value for key, value in flat.items() if key != "data.validation_size"})
    assert "validation_size" not in release_data(plain) and "eval_split" not in release_data(plain)
    assert not set(release_pool(plain)["text"]) & set(load_splits(plain.data, plain.run.seed).test["text"])
