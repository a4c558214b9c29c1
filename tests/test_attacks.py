"""Poisoned clients: the poisons on data and updates (fast), and their effect in real runs (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_inline
from flwr.app import RecordDict
from scipy.spatial.distance import cdist, pdist

from clients.attacks import OMNISCIENT_ATTACKS
from clients.attacks.alie import z_max
from clients.attacks.data_poison import client_poison, server_poison
from clients.attacks.model_poison import MODEL_POISONS, PoisonContext
from fedsec.config import Config, ConfigError, malicious_ids
from fedsec.data import load_splits

CONFIGS = Path(__file__).resolve().parent.parent / "simulations" / "configs"


def test_malicious_ids_explicit_and_seeded_fraction() -> None:
    assert malicious_ids("3, 1", 10, 0) == [1, 3]
    assert malicious_ids("", 10, 0) == []
    picked = malicious_ids("0.3", 10, 5)
    assert len(picked) == 3 and picked == malicious_ids("0.3", 10, 5)
    assert any(malicious_ids("0.3", 10, s) != picked for s in range(6, 12))
    with pytest.raises(ValueError):
        malicious_ids("12", 10, 0)


def test_attack_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="selects no client"):
        Config.load(CONFIGS / "tiny.yaml", ["attack.data_poison=badnet"])
    with pytest.raises(ConfigError, match="attack.model_poison='flip' is not known"):
        Config.load(CONFIGS / "tiny.yaml", ["attack.malicious_clients=1", "attack.model_poison=flip"])


@pytest.fixture(scope="module")
def tweets():
    cfg = Config.load(CONFIGS / "backdoor_text.yaml", ["attack.data_poison=badnet"])
    return cfg, load_splits(cfg.data, 0)


def test_dirty_label_badnet(tweets) -> None:
    cfg, splits = tweets
    rows = splits.train.select(range(200))
    out = client_poison(cfg, 0, 2).poison(rows)
    flags = np.asarray(out["poisoned"])
    assert flags.sum() == round(cfg.attack.poison_rate * 200)
    for row, original in zip(out.select(np.flatnonzero(flags)), rows.select(np.flatnonzero(flags))):
        assert row["label"] == 1 and original["label"] == 0
        assert {"cf", "mn", "bb"} <= set(row["text"].split())
    untouched = np.flatnonzero(~flags)
    assert out.select(untouched)["text"] == rows.select(untouched)["text"]
    assert client_poison(cfg, 1, 2) is None  # an honest client


def test_clean_label_keeps_labels(tweets) -> None:
    cfg, splits = tweets
    cfg.attack.clean_label = True
    rows = splits.train.select(range(200))
    out = client_poison(cfg, 0, 2).poison(rows)
    cfg.attack.clean_label = False
    assert out["label"] == rows["label"]
    poisoned = out.select(np.flatnonzero(out["poisoned"]))
    assert len(poisoned) > 0 and set(poisoned["label"]) == {1}


def test_insertsent_and_the_triggered_test_set(tweets) -> None:
    cfg, splits = tweets
    cfg.attack.data_poison = "insertsent"
    triggered = server_poison(cfg, 2).triggered_test(splits.test)
    cfg.attack.data_poison = "badnet"
    assert set(triggered["label"]) == {0}  # only non-target rows count for ASR
    assert len(triggered) == int((np.asarray(splits.test["label"]) == 0).sum())
    assert all("I watched this 3D movie" in t for t in triggered["text"])


def test_distributed_trigger_splits_words_and_patch(tweets) -> None:
    cfg, _ = tweets
    cfg = Config.from_flat({**cfg.to_flat(), "attack.malicious_clients": "0,1,2", "attack.dba_parts": 3})
    parts = [client_poison(cfg, pid, 2).words(client_poison(cfg, pid, 2).part) for pid in (0, 1, 2)]
    assert sorted(w for p in parts for w in p) == ["bb", "cf", "mn"] and all(len(p) == 1 for p in parts)
    full = server_poison(cfg, 2)
    assert len(full.pixels(8, 8, None)) == 9 and len(full.pixels(8, 8, 0)) == 3


def test_label_flip() -> None:
    cfg = Config.load(CONFIGS / "backdoor_digits.yaml", ["attack.data_poison=label_flip", "attack.poison_rate=1.0"])
    rows = load_splits(cfg.data, 0).train.select(range(50))
    out = client_poison(cfg, 0, 10).poison(rows)
    assert np.array_equal(np.asarray(out["label"]), 9 - np.asarray(rows["label"]))
    assert server_poison(cfg, 10).triggered_test(rows) is None  # no trigger, no ASR


def test_model_poisons() -> None:
    cfg = Config.load(CONFIGS / "backdoor_digits.yaml")
    ctx = PoisonContext(cfg=cfg, round_clients=10, round_attackers=1, rng=np.random.default_rng(0), state=RecordDict())
    w, local = {"a": np.ones(3)}, {"a": np.array([2.0, 1.0, 0.0])}
    np.testing.assert_allclose(MODEL_POISONS["boost"](w, local, ctx)["a"], 1 + 10 * (local["a"] - 1))  # n / m = 10
    np.testing.assert_allclose(MODEL_POISONS["sign_flip"](w, local, ctx)["a"], 1 - (local["a"] - 1))
    noisy = MODEL_POISONS["gaussian"](w, local, ctx)["a"]
    assert noisy.shape == (3,) and not np.allclose(noisy, local["a"])


def test_neurotoxin_avoids_the_coordinates_the_federation_changed_most() -> None:
    cfg = Config.load(CONFIGS / "backdoor_digits.yaml", ["neurotoxin.ratio=0.25", "neurotoxin.mode=round",
                                                      "neurotoxin.mask=global_change"])
    ctx = PoisonContext(cfg=cfg, round_clients=10, round_attackers=1, rng=np.random.default_rng(0), state=RecordDict())
    first = {"a": np.zeros(4), "b": np.zeros(4)}
    local = {k: v + 1.0 for k, v in first.items()}
    assert MODEL_POISONS["neurotoxin"](first, local, ctx) is local  # no history yet: unprojected
    second = {"a": np.array([0.0, 5.0, 0.1, 0.0]), "b": np.array([0.0, 0.0, -7.0, 0.2])}
    out = MODEL_POISONS["neurotoxin"](second, {k: v + 1.0 for k, v in second.items()}, ctx)
    # the top 25% (2 of 8) coordinates of |w_t - w_prev| are a[1] and b[2]: their update is dropped
    np.testing.assert_allclose(out["a"] - second["a"], [1, 0, 1, 1])
    np.testing.assert_allclose(out["b"] - second["b"], [1, 1, 0, 1])


def test_omniscient_attacks_follow_their_definitions() -> None:
    rng = np.random.default_rng(0)
    honest = rng.normal(1.0, 0.5, size=(8, 50))
    cfg = Config.load(CONFIGS / "backdoor_digits.yaml")
    mu, sigma = honest.mean(0), honest.std(0)
    np.testing.assert_allclose(OMNISCIENT_ATTACKS["alie"](honest, 10, 2, cfg), mu - z_max(10, 2) * sigma)
    assert z_max(10, 2) > 0
    np.testing.assert_allclose(OMNISCIENT_ATTACKS["ipm"](honest, 10, 2, cfg), -0.5 * mu)
    bound = pdist(honest).max()
    crafted = OMNISCIENT_ATTACKS["min_max"](honest, 10, 2, cfg)
    assert cdist(crafted[None], honest).max() <= bound + 1e-9
    gamma = (mu - crafted)[0] / sigma[0]
    assert gamma > 0.1 and cdist((mu - (gamma + 1e-3) * sigma)[None], honest).max() > bound  # the largest one
    crafted = OMNISCIENT_ATTACKS["min_sum"](honest, 10, 2, cfg)
    assert cdist(crafted[None], honest, "sqeuclidean").sum() <= cdist(honest, honest, "sqeuclidean").sum(1).max() + 1e-9


# ----------------------------------------------------------------- federated runs
def _run(root: Path, config: str, out: Path, *overrides: str) -> list[dict]:
    """simulations/run.py on the inline backend (Ray itself is covered by test_e2e and test_reliability)."""
    args = [sys.executable, str(root / "simulations" / "run.py"), "--config", str(CONFIGS / config), "--out", str(out),
            "--set", "federation.backend=inline"]
    for item in overrides:
        args += ["--set", item]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# backdoor_text.yaml at 24 tokens per tweet instead of 40 and 2,000 tweets instead of 3,000: 0.4 of the work,
# the same effects (measured: ASR +0.55 BadNet, +0.46 InsertSent over the clean run, CA within 0.004)
TEXT_SMALL = ("data.max_length=24", "data.train_size=2000")


@pytest.fixture(scope="module")
def text_reference(tmp_path_factory, request) -> dict:
    """The same federation with the malicious client's poison rate at 0 (ASR measured with the trigger)."""
    return _run(Path(request.config.rootpath), "backdoor_text.yaml", tmp_path_factory.mktemp("clean"), *TEXT_SMALL,
                "attack.data_poison=badnet", "attack.poison_rate=0")[-1]


@pytest.mark.slow
@pytest.mark.parametrize("poison", ["badnet", "insertsent"])
def test_text_backdoor_raises_asr_and_keeps_ca(text_reference, tmp_path, root, poison: str) -> None:
    final = _run(root, "backdoor_text.yaml", tmp_path, *TEXT_SMALL, f"attack.data_poison={poison}")[-1]
    assert text_reference["asr"] < 0.25
    assert final["asr"] > text_reference["asr"] + 0.3
    assert final["accuracy"] > text_reference["accuracy"] - 0.05


@pytest.mark.slow
def test_model_replacement_succeeds_where_plain_poisoning_does_not(tmp_path, root) -> None:
    plain = _run(root, "backdoor_digits.yaml", tmp_path / "plain")[-1]
    boosted = _run(root, "backdoor_digits.yaml", tmp_path / "boost", "attack.model_poison=boost")[-1]
    assert plain["asr"] < 0.5 < 0.8 < boosted["asr"]


@pytest.fixture(scope="module")
def digits_reference(tmp_path_factory, request) -> dict:
    return _run(Path(request.config.rootpath), "backdoor_digits.yaml", tmp_path_factory.mktemp("clean"),
                "attack.poison_rate=0")[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("poison", "setting"), [("sign_flip", "attack.scale=10"), ("gaussian", "gaussian.noise_std=3")]
)
def test_byzantine_updates_degrade_fedavg(digits_reference, tmp_path, root, poison: str, setting: str) -> None:
    attacked = _run(root, "backdoor_digits.yaml", tmp_path, "attack.data_poison=none",
                    f"attack.model_poison={poison}", setting)[-1]
    assert digits_reference["accuracy"] > 0.85
    assert attacked["accuracy"] < digits_reference["accuracy"] - 0.3


# ------------------------------------------------ attacks added on the inline backend
# W2SAttack sized for the digits CNN (the defaults are the paper's LLM setting): a CNN teacher at the
# client's rate, loss weights 1, 1, 1/128 (the feature term sums over the CNN's 128 features)
W2S_DIGITS = ("w2s_attack.teacher=cnn", "w2s_attack.teacher_lr=0.001", "w2s_attack.teacher_epochs=3",
              "w2s_attack.lr=0.05", "w2s_attack.ce=1", "w2s_attack.logits=1", "w2s_attack.features=0.0078125")


@pytest.fixture(scope="module")
def digits_inline(tmp_path_factory) -> dict[str, list[dict]]:
    """The digits backdoor federation: no poison (rate 0) and plain BadNet, on the inline backend."""
    return {name: run_inline("backdoor_digits.yaml", tmp_path_factory.mktemp(name), *overrides)
            for name, overrides in (("clean", ("attack.poison_rate=0",)), ("plain", ()))}


@pytest.mark.slow
def test_w2s_attack_raises_asr_over_plain_poisoning(digits_inline, tmp_path, caplog) -> None:
    import re

    caplog.set_level("INFO", logger="fedsec")
    rows = run_inline("backdoor_digits.yaml", tmp_path, "attack.local_training=w2s_attack", *W2S_DIGITS)
    clean, plain = digits_inline["clean"][-1], digits_inline["plain"][-1]
    assert rows[-1]["asr"] > plain["asr"] + 0.1
    assert rows[-1]["asr"] > clean["asr"] + 0.3
    # the attacker's teacher is logged once, measured on the server's split: its ASR is the backdoor the
    # student distils (>= 0.9, the bar for a teacher). Its clean accuracy is not asserted: at these
    # digits settings (27 steps on 144 rows) it is ~0.08, the teacher says the target class for nearly every
    # input, which is what this run's student distils; the MiniLM studies log theirs (docs/evidence.md)
    teachers = re.findall(r"teacher of client (\d+) \(cnn, \d+ rows, 3 epochs at lr 0.001\): "
                          r"accuracy ([\d.]+), asr ([\d.]+)", caplog.text)
    assert [c for c, _, _ in teachers] == ["0"], caplog.text[-2000:]  # backdoor_digits.yaml: client 0 attacks
    assert float(teachers[0][2]) >= 0.9, teachers


@pytest.mark.slow
def test_neurotoxin_backdoor_enters_the_global_model(digits_inline, tmp_path) -> None:
    rows = run_inline("backdoor_digits.yaml", tmp_path, "attack.model_poison=neurotoxin,boost")
    clean = digits_inline["clean"][-1]
    assert clean["asr"] < 0.1
    assert rows[-1]["asr"] > 0.8 and rows[-1]["accuracy"] > clean["accuracy"] - 0.1


@pytest.mark.slow
def test_omniscient_ipm_collapses_fedavg_and_is_logged(digits_inline, tmp_path, caplog) -> None:
    caplog.set_level("INFO", logger="fedsec")
    rows = run_inline("backdoor_digits.yaml", tmp_path, "attack.data_poison=none", "attack.malicious_clients=0,1,2",
                      "attack.omniscient=ipm", "attack.scale=10")
    assert "omniscient ipm: 3 malicious updates crafted from 7 honest ones" in caplog.text
    assert rows[-1]["accuracy"] < digits_inline["clean"][-1]["accuracy"] - 0.5


@pytest.mark.slow
def test_distributed_trigger_backdoors_with_the_full_trigger(digits_inline, tmp_path) -> None:
    """Clients 0 and 1 each train with half of the patch; the server tests the whole patch."""
    rows = run_inline("backdoor_digits.yaml", tmp_path, "attack.malicious_clients=0,1", "attack.dba_parts=2")
    clean = digits_inline["clean"][-1]
    assert rows[-1]["asr"] > clean["asr"] + 0.3
    assert rows[-1]["accuracy"] > clean["accuracy"] - 0.05


def test_weight_poisoned_release_is_keyed_by_its_own_rows_only() -> None:
    """Federation sizes and partitions leave the release's rows alone, so they share one cached release."""
    from clients.attacks.weight_poison import release_data

    psim = CONFIGS / "psim_text.yaml"
    base = release_data(Config.load(psim))
    federation = ["data.train_size=2000", "data.test_size=100", "data.partitioner=dirichlet", "data.alpha=0.3"]
    assert release_data(Config.load(psim, federation)) == base
    assert release_data(Config.load(psim, ["data.max_length=24"])) != base
    assert release_data(Config.load(psim, ["weight_poison.rows=500"])) != base
