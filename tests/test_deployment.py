"""The same ServerApp/ClientApp on a real Flower deployment: a SuperLink and SuperNodes on
127.0.0.1, submitted with ``flwr run`` (insecure, then TLS with SuperNode authentication)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "simulations" / "deploy"))
from local_federation import LocalFederation  # noqa: E402

pytestmark = pytest.mark.slow

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


def _run_and_check(federation: LocalFederation, app: Path, out: Path) -> None:
    done = federation.run(app, f"{RUN_CONFIG} run.out_dir='{out}'")
    assert (out / "summary.json").is_file(), (
        done.stdout[-3000:] + done.stderr[-3000:] + federation.log("superlink")[-3000:]
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[1]["clients"] == [0, 1]  # both SuperNodes trained, each on its own partition
    assert rows[1]["accuracy"] > rows[0]["accuracy"] + 0.1
    assert rows[1]["bytes_up"] == rows[1]["bytes_down"] > 0


def test_insecure_superlink_with_two_supernodes(app: Path, tmp_path: Path) -> None:
    with LocalFederation(tmp_path / "federation") as federation:
        federation.start_superlink()
        for i in range(2):
            federation.start_supernode(i, num_partitions=2)
        federation.wait_online(2)
        _run_and_check(federation, app, tmp_path / "out")


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
