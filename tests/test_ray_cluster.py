"""Multi-node Ray: run.py attaches to a running two-node cluster and clients run on both nodes;
``simulations/cluster/cluster.yaml`` passes the checks ``ray up`` makes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

CLUSTER_TEMP_DIR = "/tmp/ray-fedsec"  # noqa: S108 - cluster.yaml's Ray temp dir on the nodes, not a temp file here


def test_cluster_yaml_passes_ray_ups_checks(root: Path) -> None:
    """The file against Ray's schema, then what ``ray up`` validates (the config with Ray's
    defaults filled in, through Ray's private helpers); only the sources are mounted, and the
    environment, results and credentials are left out of every rsync."""
    import jsonschema
    import ray
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((root / "simulations" / "cluster" / "cluster.yaml").read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    validate_config(prepare_config(config))

    mounts = {local.removeprefix("./").rstrip("/") for local in config["file_mounts"].values()}
    assert all((root / local).exists() for local in mounts) and "." not in mounts and "" not in mounts
    project = tomllib.loads((root / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"], "tasks.py"} <= mounts
    assert {".venv", "outputs", ".git", "__pycache__", "credentials"} <= set(config["rsync_exclude"])
    assert config["rsync_filter"] == [".gitignore"]
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert not re.search(r"(^|[;&|]\s*)ray ", command), f"not the venv's ray: {command}"
        assert "ray stop" not in command or f"[ -e {CLUSTER_TEMP_DIR}/ray_current_cluster ]" in command, command
        assert "ray start" not in command or f"--temp-dir={CLUSTER_TEMP_DIR}" in command, command


@pytest.fixture
def two_node_cluster():
    """A Ray head and a second node on this machine, one CPU each (separate raylets)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_gpu_request_the_cluster_cannot_meet_fails_at_once(two_node_cluster, root, tmp_path) -> None:
    """--ray-address: the cluster's resources are read before the run; a GPU per client on a cluster of
    CPU nodes is refused with the key named instead of waiting for round_timeout."""
    args = [sys.executable, str(root / "simulations" / "run.py"), "--config",
            str(root / "simulations" / "configs" / "tiny.yaml"), "--out", str(tmp_path),
            "--ray-address", two_node_cluster.address, "--set", "federation.num_gpus=0.25"]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"federation.num_gpus=0.25 asks for a GPU per client, but the Ray cluster at {two_node_cluster.address} " \
           "has no GPU" in proc.stderr
