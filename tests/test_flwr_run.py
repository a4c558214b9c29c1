"""`flwr run .` runs the same apps with the same config keys (local simulation SuperLink)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def _stop_local_superlink(flwr_home: Path) -> None:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "flower-superlink" in cmdline and str(flwr_home) in cmdline:
            for child in proc.children(recursive=True):
                child.kill()
            proc.kill()


def test_flwr_run_uses_the_run_config_keys(root, tmp_path) -> None:
    flwr = Path(sys.executable).parent / "flwr"
    assert flwr.is_file()
    flwr_home = tmp_path / "flwr-home"
    out = tmp_path / "out"
    app = tmp_path / "app"  # a clean copy: flwr builds the app from the directory
    shutil.copytree(root, app,
                    ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "__pycache__", ".pytest_cache"))
    env = {**os.environ, "FLWR_HOME": str(flwr_home), "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "PATH": f"{flwr.parent}{os.pathsep}{os.environ['PATH']}"}
    run_config = ("run.num_rounds=2 data.name='digits' model.name='cnn' model.peft='none' data.test_size=300 "
                  "client.optimizer='sgd' client.lr=0.05 client.momentum=0.9 client.epochs=2 "
                  f"federation.num_clients=4 federation.clients_per_round=4 run.out_dir='{out}'")
    try:
        proc = subprocess.run([str(flwr), "run", str(app), "--federation-config", "num-supernodes=4",
                               "--run-config", run_config, "--stream"],
                              cwd=app, env=env, capture_output=True, text=True, timeout=600)
    finally:
        _stop_local_superlink(flwr_home)
    assert (out / "summary.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[-1]["accuracy"] > 0.3 and rows[-1]["clients"] == [0, 1, 2, 3]
