"""The same ServerApp/ClientApp on a real Flower deployment: a SuperLink and SuperNodes on
127.0.0.1, submitted with ``flwr run`` (insecure, then TLS with SuperNode authentication);
a run that fails is reported as failed (``flwr run`` itself exits 0)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "simulations" / "deploy"))
from local_federation import LocalFederation, RunResult, run_config_string  # noqa: E402

pytestmark = pytest.mark.cluster

RUN_CONFIG = ("run.num_rounds=1 data.name='digits' model.name='cnn' model.peft='none' data.test_size=300 "
              "client.optimizer='sgd' client.lr=0.05 client.momentum=0.9 client.epochs=2 "
              "federation.num_clients=2 federation.clients_per_round=2")


@pytest.fixture
def app(root: Path, tmp_path: Path) -> Path:
    """A clean copy of the project: ``flwr run`` builds the app from a directory."""
    target = tmp_path / "app"
    shutil.copytree(root, target, ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "__pycache__",
                                                                 ".pytest_cache"))
    return target


def test_run_config_quotes_what_the_shell_unquoted() -> None:
    """``-- data.name='digits'`` reaches Python as ``data.name=digits``: quote it again for flwr."""
    from flwr.common.config import parse_config_args

    overrides = ["run.num_rounds=2", "data.name=digits", "model.name='cnn'", 'model.peft="none"',
                 "client.lr=0.05", "data.balanced=false", "run.out_dir=/abs/out dir", "data.path=it's.csv", "x=a=b"]
    joined = run_config_string(overrides)
    assert joined.startswith("run.num_rounds=2 data.name='digits' model.name='cnn' model.peft=\"none\" ")
    assert parse_config_args([joined]) == {
        "run.num_rounds": 2, "data.name": "digits", "model.name": "cnn", "model.peft": "none", "client.lr": 0.05,
        "data.balanced": False, "run.out_dir": "/abs/out dir", "data.path": "it's.csv", "x": "a=b"}
    for bad in ("run.num_rounds", "=2", "a b=2"):
        with pytest.raises(ValueError, match="not key=value"):
            run_config_string([bad])


def test_a_run_result_is_ok_only_when_completed() -> None:
    assert RunResult(1, "finished:completed").returncode == 0
    assert RunResult(1, "finished:failed", "ServerApp raised").returncode == 1
    assert RunResult(1, "finished:stopped").returncode == 1


def _run_and_check(federation: LocalFederation, app: Path, out: Path) -> None:
    done = federation.run(app, f"{RUN_CONFIG} run.out_dir='{out}'")
    assert (out / "summary.json").is_file(), (
        done.stdout[-3000:] + done.stderr[-3000:] + federation.log("superlink")[-3000:]
    )
    assert done.ok and done.status == "finished:completed", (done.status, done.details)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[1]["clients"] == [0, 1]  # both SuperNodes trained, each on its own partition
    assert rows[1]["accuracy"] > rows[0]["accuracy"] + 0.1
    assert rows[1]["bytes_up"] == rows[1]["bytes_down"] > 0


@pytest.mark.slow
def test_insecure_superlink_with_two_supernodes(app: Path, tmp_path: Path) -> None:
    with LocalFederation(tmp_path / "federation") as federation:
        federation.start_superlink()
        for i in range(2):
            federation.start_supernode(i, num_partitions=2)
        federation.wait_online(2)
        _run_and_check(federation, app, tmp_path / "out")
        # flwr run accepts this run (exit 0); the ServerApp then fails: reported as failed
        failed = federation.run(app, f"{RUN_CONFIG} strategy.name='nope' run.out_dir='{tmp_path / 'bad'}'",
                                timeout=300)
        assert failed.status == "finished:failed" and failed.returncode == 1, (failed.status, failed.stdout)
        assert "strategy.name='nope' is not known" in failed.stdout


@pytest.mark.slow
def test_tls_with_supernode_auth_refuses_an_unregistered_node(app: Path, tmp_path: Path) -> None:
    with LocalFederation(tmp_path / "federation", tls=True, auth=True) as federation:
        federation.start_superlink()
        assert "https://127.0.0.1" in federation.log("superlink")
        for i in range(2):
            federation.start_supernode(i, num_partitions=2)
        federation.wait_online(2)
        intruder = federation.start_supernode(2, num_partitions=2, register=False, partition_id=0)
        assert intruder.wait(timeout=120) != 0, federation.log("supernode-2")
        assert "Failed to activate SuperNode" in federation.log("supernode-2")
        assert federation.online_nodes() == 2
        _run_and_check(federation, app, tmp_path / "out")
