"""Defenses: the server rules and client defenses on their own (fast) and inside real runs (slow).

The federated runs use the inline backend (the same ServerApp loop and
ClientApp, clients in this process) on the digits backdoor config.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_inline

from fedsec.app.server import build_strategy
from fedsec.config import Config, ConfigError
from strategies import DEFENSES, STRATEGIES
from strategies.flame import majority_cluster
from strategies.foolsgold import foolsgold_weights
from strategies.rfa import geometric_median
from strategies.update_filter import UpdateFilter

SIGN_FLIP = ("attack.data_poison=none", "attack.model_poison=sign_flip", "attack.scale=10")
BOOST = ("attack.model_poison=boost",)


# ------------------------------------------------------------------ unit level
def test_foolsgold_silences_sybils_and_keeps_distinct_clients() -> None:
    rng = np.random.default_rng(0)
    honest = rng.normal(size=(4, 30))
    sybil = rng.normal(size=30)
    histories = np.vstack([honest, sybil + 0.01 * rng.normal(size=30), sybil + 0.01 * rng.normal(size=30)])
    weights = foolsgold_weights(histories, kappa=1.0)
    assert weights[4] == weights[5] == 0.0
    assert (weights[:4] > 0.5).all()


def test_flame_clusters_out_the_odd_directions() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=40)
    updates = np.vstack([base + 0.1 * rng.normal(size=40) for _ in range(7)] + [-base, rng.normal(size=40) * 5])
    keep = majority_cluster(updates)
    assert not keep[7:].any()
    assert keep[:7].sum() >= len(updates) // 2 + 1  # HDBSCAN may leave peripheral honest updates out


def test_geometric_median_resists_one_huge_outlier() -> None:
    points = np.vstack([np.ones((6, 3)), np.full((1, 3), 1e6)])
    np.testing.assert_allclose(geometric_median(points, np.ones(7), iterations=50), np.ones(3), atol=1e-2)
    assert np.abs(np.average(points, axis=0, weights=np.ones(7)) - 1).max() > 1e4  # the mean does not


def test_defenses_wrap_fedglad_and_the_aggregation_rule(tiny_cfg) -> None:
    cfg = Config.from_flat(
        {**tiny_cfg.to_flat(), "strategy.defenses": "flame,foolsgold", "strategy.wrappers": "fedglad"}
    )
    strategy = build_strategy(cfg)
    assert isinstance(strategy, UpdateFilter) and type(strategy).__name__ == "Flame"
    assert type(strategy.inner).__name__ == "FoolsGold" and type(strategy.inner.inner).__name__ == "FedGLAD"


def test_robust_settings_are_validated(tiny_cfg) -> None:
    flat = tiny_cfg.to_flat()
    with pytest.raises(ConfigError, match="bulyan"):
        Config.from_flat({**flat, "strategy.name": "bulyan"})  # 3 clients per round < 4f + 3
    with pytest.raises(ConfigError, match="clip_norm"):
        Config.from_flat({**flat, "strategy.defenses": "norm_clip"})
    with pytest.raises(ConfigError, match="strategy.defenses"):
        Config.from_flat({**flat, "strategy.defenses": "flame,nonsense"})


# ------------------------------------------------------------- federated runs
ALL_SERVER_SETUPS = [(name, "none") for name in STRATEGIES if name != "fedmnmt"] + [  # fedmnmt: translation only
    ("fedavg", name) for name in DEFENSES if name != "none"
]


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "defense"), ALL_SERVER_SETUPS)
def test_every_strategy_rejects_bad_updates(tmp_path, strategy: str, defense: str) -> None:
    mode = "nan" if len(strategy + defense) % 2 else "shape"
    rows = run_inline("backdoor_digits.yaml", tmp_path, "attack.data_poison=none", "run.num_rounds=2",
                      f"strategy.name={strategy}", f"strategy.defenses={defense}", "norm_clip.clip_norm=5",
                      "faults.clients=3", f"faults.mode={mode}",
                      "fedadam.server_lr=0.01")
    for row in rows[1:]:
        assert row["rejected_clients"] == [3] and 3 not in row["clients"]
        assert np.isfinite(row["loss"]) and row["aggregate_rejected"] == 0
        assert abs(row["bytes_up"] - row["bytes_down"]) <= 8  # every reply counted, even if a rule consumes it
    assert rows[-1]["accuracy"] > 0.3


@pytest.fixture(scope="module")
def fedavg_under_attack(tmp_path_factory) -> dict[str, dict]:
    """FedAvg's final row under the sign-flip and the boosted-backdoor attacker."""
    return {name: run_inline("backdoor_digits.yaml", tmp_path_factory.mktemp(name), *attack)[-1]
            for name, attack in (("sign_flip", SIGN_FLIP), ("boost", BOOST))}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["krum", "median", "trimmed_mean"])
def test_robust_rules_withstand_sign_flip_and_boosting(fedavg_under_attack, tmp_path, strategy: str) -> None:
    flipped = run_inline("backdoor_digits.yaml", tmp_path / "flip", *SIGN_FLIP, f"strategy.name={strategy}")[-1]
    boosted = run_inline("backdoor_digits.yaml", tmp_path / "boost", *BOOST, f"strategy.name={strategy}")[-1]
    assert fedavg_under_attack["sign_flip"]["accuracy"] < 0.6 < 0.75 < flipped["accuracy"]
    assert fedavg_under_attack["boost"]["asr"] > 0.8 > 0.3 > boosted["asr"]


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "defense"), [("multikrum", "none"), ("fedavg", "flame")])
def test_detection_defenses_report_the_boosted_client(tmp_path, strategy: str, defense: str) -> None:
    rows = run_inline("backdoor_digits.yaml", tmp_path, *BOOST, f"strategy.name={strategy}",
                      f"strategy.defenses={defense}")[1:]
    assert all(0 in row["defense_rejected"] and row["defense_tp"] == 1 for row in rows)
    assert all(row["defense_fp"] == len(row["defense_rejected"]) - 1 for row in rows)
    assert rows[-1]["asr"] < 0.3


@pytest.mark.slow
def test_w2s_defense_unlearns_a_planted_backdoor(tmp_path) -> None:
    """Client 0 plants a boosted backdoor in rounds 1-2; afterwards everyone trains honestly."""
    setting = (*BOOST, "attack.rounds=1,2", "run.num_rounds=6", "w2s_defense.teacher=cnn",
               "w2s_defense.teacher_lr=0.001", "w2s_defense.teacher_epochs=3", "w2s_defense.lr=0.05",
               "w2s_defense.kl=1", "w2s_defense.features=0.0078125")
    plain = run_inline("backdoor_digits.yaml", tmp_path / "plain", *setting)
    defended = run_inline("backdoor_digits.yaml", tmp_path / "w2s", *setting, "defense.local_training=w2s_defense")
    assert plain[1]["asr"] > 0.9 and defended[1]["asr"] > 0.9  # the backdoor is in after round 1
    assert plain[-1]["asr"] > 0.2
    assert defended[-1]["asr"] < 0.05
    assert defended[-1]["accuracy"] > plain[-1]["accuracy"] - 0.03


def test_defended_strategies_are_checkpointable(tiny_cfg) -> None:
    """The whole strategy (defense state included) is pickled into checkpoint.pkl every round."""
    import pickle

    for defense in [d for d in DEFENSES if d != "none"]:
        flat = {**tiny_cfg.to_flat(), "strategy.defenses": defense, "norm_clip.clip_norm": 1.0}
        strategy = build_strategy(Config.from_flat(flat))
        assert type(pickle.loads(pickle.dumps(strategy))) is type(strategy)


@pytest.mark.slow
def test_defenses_compose_with_fedglad_on_lora_adapters(tmp_path) -> None:
    """FLAME around FedGLAD around Multi-Krum, on a PEFT model: only the adapters and head travel."""
    rows = run_inline("backdoor_text.yaml", tmp_path, "model.peft=lora", "data.train_size=600", "run.num_rounds=2",
                      "attack.data_poison=badnet", "attack.model_poison=boost", "federation.num_clients=5",
                      "strategy.name=multikrum", "strategy.wrappers=fedglad", "strategy.defenses=flame")
    for row in rows[1:]:
        assert "defense_rejected" in row and "gsi" in row
        assert row["bytes_up"] < 200_000  # LoRA adapters + head of tiny BERT, not the whole model
