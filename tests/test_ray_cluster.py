"""Multi-node Ray: run.py attaches to a running two-node cluster and clients run on both nodes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def two_node_cluster():
    """A Ray head and a second node on this machine, one CPU each (separate raylets)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_run_attaches_to_a_two_node_cluster(two_node_cluster, root, tmp_path) -> None:
    args = [sys.executable, str(root / "simulations" / "run.py"), "--config",
            str(root / "simulations" / "configs" / "tiny.yaml"), "--out", str(tmp_path),
            "--ray-address", two_node_cluster.address, "--set", "run.num_rounds=2"]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(r["failures"] == 0 and len(r["clients"]) == 3 for r in rows[1:])
    assert max(r["ray_nodes"] for r in rows[1:]) == 2  # clients ran on both nodes
