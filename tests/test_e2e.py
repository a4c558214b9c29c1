"""End-to-end runs of simulations/run.py through the real Flower Simulation Engine (Ray)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

VOLATILE = {"round_seconds", "ray_nodes"}  # ray_nodes: 0 on the inline backend


def _run(root: Path, out: Path, *overrides: str, config: str = "tiny.yaml") -> subprocess.CompletedProcess:
    args = [sys.executable, str(root / "simulations" / "run.py"), "--config",
            str(root / "simulations" / "configs" / config), "--out", str(out)]
    for item in overrides:
        args += ["--set", item]
    return subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, request):
    root = Path(request.config.rootpath)
    out = tmp_path_factory.mktemp("tiny")
    proc = _run(root, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, out, proc


def test_outputs_are_written(tiny_run) -> None:
    _, out, proc = tiny_run
    rows = _rows(out)
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    for row in rows[1:]:
        for key in ("accuracy", "loss", "bytes_up", "bytes_down", "round_seconds", "failures", "clients"):
            assert key in row
        assert row["failures"] == 0 and len(row["clients"]) == 3
        assert row["bytes_up"] == row["bytes_down"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 3 and summary["final"]["accuracy"] == rows[-1]["accuracy"]
    assert yaml.safe_load((out / "config.yaml").read_text())["run"]["out_dir"] == str(out)
    assert (out / "metrics.png").stat().st_size > 1000
    assert "final accuracy" in proc.stdout


def test_console_is_quiet_and_the_log_file_holds_the_rest(tiny_run) -> None:
    """The console shows fedsec's progress and table only; Flower's and Ray's lines go to run.log."""
    _, out, proc = tiny_run
    for noise in ("Traceback", "FutureWarning", "DeprecationWarning", "DEPRECATED", "\x1b[", "fedsec: [fedsec]"):
        assert noise not in proc.stderr and noise not in proc.stdout, noise
    assert proc.stderr.count("fedsec: round") == 3
    log = (out / "run.log").read_text()
    assert "flwr" in log and "\x1b[" not in log


def test_federated_training_learns(tiny_run) -> None:
    rows = _rows(tiny_run[1])
    assert rows[0]["accuracy"] < 0.2  # untrained: chance on 10 digits
    assert rows[-1]["accuracy"] > 0.6
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_same_seed_same_metrics_on_ray_and_inline(tiny_run, tmp_path) -> None:
    """A second run with the same seed, on the inline backend, writes the Ray run's metrics exactly."""
    root, out, _ = tiny_run
    proc = _run(root, tmp_path, "federation.backend=inline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]  # noqa: E731
    assert strip(_rows(tmp_path)) == strip(_rows(out))


def test_text_lora_run_sends_only_adapters(tmp_path, request) -> None:
    """The text path (tiny BERT + LoRA on the tweets) end to end; bytes are LoRA + head only (inline backend:
    the Ray path is covered by the other runs here)."""
    root = Path(request.config.rootpath)
    proc = _run(root, tmp_path, "federation.backend=inline", "model.name=tiny-bert", "model.peft=lora",
                "data.name=tweets_polarity", "data.train_size=400", "data.test_size=100", "data.balanced=true",
                "data.max_length=24", "run.num_rounds=1", "client.lr=0.005", "federation.clients_per_round=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = _rows(tmp_path)[1]
    sys.path.insert(0, str(root))
    from fedsec.config import Config
    from fedsec.experiment import Experiment
    from fedsec.params import get_arrays, payload_bytes

    cfg = Config.load(tmp_path / "config.yaml")
    per_client = payload_bytes(get_arrays(Experiment(cfg).model))
    assert row["bytes_up"] == row["bytes_down"] == 4 * per_client
    assert per_client < 100_000  # the tiny BERT itself is ~8 MB


def test_bad_config_fails_loudly(tmp_path, request) -> None:
    root = Path(request.config.rootpath)
    proc = _run(root, tmp_path, "federation.clients_per_round=9")
    assert proc.returncode == 2
    assert "federation.clients_per_round=9 exceeds federation.num_clients=4" in proc.stderr
