"""FedGLAD: the indicator on constructed updates, the clip bounds, exact composition."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdam, FedAvg, FedAvgM, FedProx
from flwr.supercore.task_identity import TaskIdentity

from strategies.fedglad import FedGLAD, clip_bounds, gsi

pytestmark = pytest.mark.cluster

KEYS = ["a", "b"]


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


def test_identical_updates_give_one() -> None:
    u = {"a": np.array([1.0, -2.0]), "b": np.array([[0.5]])}
    assert gsi([u, u, u], np.full(3, 1 / 3), KEYS) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [2, 4, 7])
def test_orthogonal_equal_norm_updates_give_sqrt_n(n: int) -> None:
    updates = [{"a": 3.0 * np.eye(n)[i], "b": np.zeros(1)} for i in range(n)]
    assert gsi(updates, np.full(n, 1 / n), KEYS) == pytest.approx(np.sqrt(n))


def test_gsi_grows_as_updates_cancel() -> None:
    base = np.array([1.0, 0.0])
    agree = [{"a": base + 0.1 * np.array([0, s]), "b": np.zeros(1)} for s in (1, -1)]
    cancel = [{"a": base * s + np.array([0, 0.1]), "b": np.zeros(1)} for s in (1, -0.8)]
    w = np.full(2, 0.5)
    assert gsi(cancel, w, KEYS) > gsi(agree, w, KEYS) >= 1.0


def test_clip_bounds_widen_with_the_round() -> None:
    assert clip_bounds(0, 0.02) == (1.0, 1.0)
    assert clip_bounds(10, 0.02) == pytest.approx((0.8, 1.2))
    assert clip_bounds(100, 0.02) == pytest.approx((0.0, 3.0))
    widths = [np.subtract(*clip_bounds(t, 0.02)[::-1]) for t in range(20)]
    assert all(b > a for a, b in zip(widths, widths[1:]))


class _Grid:
    def get_node_ids(self):
        return list(range(1, 6))


def _round(strategy, server_round: int, arrays: ArrayRecord, rng: np.random.Generator):
    random.seed(server_round)
    messages = list(strategy.configure_train(server_round, arrays, ConfigRecord(), _Grid()))
    replies = []
    for i, msg in enumerate(messages):
        local = {k: a.numpy() + rng.normal(0, 0.1 * (i + 1), a.numpy().shape).astype(np.float32)
                 for k, a in arrays.items()}
        content = RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in local.items()}),
                              "metrics": MetricRecord({"num-examples": 10 + 5 * i})})
        replies.append(Message(content=content, reply_to=msg))
    return strategy.aggregate_train(server_round, replies)


BASES = {
    "fedavg": lambda: FedAvg(min_available_nodes=5, min_train_nodes=3, fraction_train=0.6),
    "fedavgm": lambda: FedAvgM(min_available_nodes=5, min_train_nodes=3, fraction_train=0.6,
                               server_learning_rate=0.7, server_momentum=0.9),
    "fedadam": lambda: FedAdam(min_available_nodes=5, min_train_nodes=3, fraction_train=0.6, eta=0.05),
    "fedprox": lambda: FedProx(min_available_nodes=5, min_train_nodes=3, fraction_train=0.6, proximal_mu=0.1),
}


@pytest.mark.parametrize("name", sorted(BASES))
@pytest.mark.parametrize("variant", ["global", "groupwise"])
def test_without_adaptation_equals_the_plain_strategy(name: str, variant: str) -> None:
    start = ArrayRecord({"a": Array(np.ones((3, 2), np.float32)), "b": Array(np.zeros(4, np.float32))})
    plain, wrapped = BASES[name](), FedGLAD(BASES[name](), variant=variant, adapt=False)
    a = b = start
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    for rnd in range(1, 5):
        a, _ = _round(plain, rnd, a, rng_a)
        b, metrics = _round(wrapped, rnd, b, rng_b)
        assert ("gsi" in metrics) == (variant == "global")
        for key in start:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_running_mean_and_indicator() -> None:
    glad = FedGLAD(FedAvg(), beta=0.9)
    assert glad._indicator("g", 2.0) == 1.0 and glad.running_mean["g"] == 2.0
    assert glad._indicator("g", 3.0) == pytest.approx(1.5)
    assert glad.running_mean["g"] == pytest.approx(0.9 * 2.0 + 0.1 * 3.0)
    restored = pickle.loads(pickle.dumps(glad))  # what a checkpoint stores
    assert restored.running_mean == glad.running_mean


def _orthogonal_round(glad: FedGLAD):
    """Round 2 (t = 1) from w = 0 with 3 orthogonal unit updates and E_{t-1} = 1."""
    glad.running_mean["global"] = 1.0
    start = ArrayRecord({"a": Array(np.zeros(3, np.float32))})
    random.seed(0)
    messages = list(glad.configure_train(2, start, ConfigRecord(), _Grid()))
    replies = [Message(content=RecordDict({"arrays": ArrayRecord({"a": Array(np.eye(3, dtype=np.float32)[i])}),
                                           "metrics": MetricRecord({"num-examples": 1})}), reply_to=m)
               for i, m in enumerate(messages)]
    return glad.aggregate_train(2, replies)


def test_fedavg_update_is_scaled_by_the_clipped_indicator() -> None:
    """w_new = w + s_t (w_bar - w) with s_t = clip(GSI_t / E_{t-1}, 1 -/+ gamma t)."""
    glad = FedGLAD(FedAvg(min_available_nodes=5, min_train_nodes=3, fraction_train=0.6), gamma=0.5)
    arrays, metrics = _orthogonal_round(glad)
    assert metrics["gsi"] == pytest.approx(np.sqrt(3))
    s = min(np.sqrt(3) / 1.0, 1 + 0.5 * 1)  # t = 1
    np.testing.assert_allclose(arrays["a"].numpy(), s * np.full(3, 1 / 3), rtol=1e-6)
    assert metrics["server_lr"] == pytest.approx(s)


def test_fedadam_second_moment_sees_the_unscaled_gradient() -> None:
    inner = FedAdam(min_available_nodes=5, min_train_nodes=3, fraction_train=0.6, beta_1=0.9, beta_2=0.99)
    _, metrics = _orthogonal_round(FedGLAD(inner, gamma=0.5))
    s = metrics["server_lr"] / inner.eta
    assert s > 1.0
    delta = np.full(3, 1 / 3)
    np.testing.assert_allclose(inner.m_t["a"], 0.1 * s * delta, rtol=1e-5)
    np.testing.assert_allclose(inner.v_t["a"], 0.01 * delta**2, rtol=1e-5)


def test_bad_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="variant"):
        FedGLAD(FedAvg(), variant="layer")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["global", "groupwise"])
def test_fedglad_in_a_federated_run(tmp_path, root, variant: str) -> None:
    """FedGLAD wraps FedAvgM inside a real federated run and logs its indicator per round.

    The groupwise variant runs on the inline backend: the Ray path is covered by the
    global variant and by test_e2e / test_reliability.
    """
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(root / "simulations" / "run.py"),
         "--config", str(root / "simulations" / "configs" / "tiny.yaml"),
         "--out", str(tmp_path), "--set", "strategy.wrappers=fedglad", "--set", f"fedglad.variant={variant}",
         "--set", "strategy.name=fedavgm",
         "--set", "fedavgm.momentum=0.5"] + (["--set", "federation.backend=inline"] if variant == "groupwise" else []),
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][1:]
    suffix = "" if variant == "global" else "_mean"
    assert all(r[f"gsi{suffix}"] >= 1.0 and r[f"server_lr{suffix}"] > 0 for r in rows)
    assert rows[0][f"server_lr{suffix}"] == pytest.approx(1.0)  # round 1: clip range is [1, 1]
    assert rows[-1]["accuracy"] > 0.5
