"""Third-party plug-ins: a package declaring a ``fedsec.plugins`` entry point adds methods that
configs select by name, with their own parameter sections, in a federated run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "tests" / "plugin_example"

RUN = """
import json, sys
from fedsec.app.inline import run_inline
from fedsec.config import Config
cfg = Config.load(sys.argv[1], sys.argv[3:] + ["federation.backend=inline", f"run.out_dir={sys.argv[2]}"])
run_inline(cfg)
"""


def _installed(tmp_path: Path) -> dict[str, str]:
    """An environment in which the example plug-in is installed: its dist-info with the entry point."""
    site = tmp_path / "site"
    info = site / "fedsec_example_plugin-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fedsec-example-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[fedsec.plugins]\nexample = fedsec_example_plugin\n")
    path = os.pathsep.join([str(site), str(PLUGIN), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _run(env: dict[str, str], out: Path, *overrides: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(ROOT / "simulations" / "configs" / "backdoor_digits.yaml"), str(out),
         "run.num_rounds=3", "attack.data_poison=none", "attack.malicious_clients=0,1", *overrides],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_without_the_plugin_its_names_are_unknown(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), str(ROOT)])}  # importable, not installed
    proc = subprocess.run([sys.executable, "-c", "from fedsec.config import Config; "
                           "Config.from_flat({'strategy.defenses': 'norm_outlier'})"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode != 0 and "strategy.defenses='norm_outlier' is not known" in proc.stderr


@pytest.mark.slow
def test_an_installed_plugin_attack_and_defense_run_by_name(tmp_path) -> None:
    """The plug-in's attack ruins FedAvg; its defense rejects exactly the two attackers and recovers."""
    env = _installed(tmp_path)
    attacked = _run(env, tmp_path / "attacked", "attack.model_poison=random_direction",
                    "random_direction.norm_factor=100")
    defended = _run(env, tmp_path / "defended", "attack.model_poison=random_direction",
                    "random_direction.norm_factor=100", "strategy.defenses=norm_outlier", "norm_outlier.factor=3")
    clean = _run(env, tmp_path / "clean", "attack.malicious_clients=")
    for row in defended[1:]:
        assert (row["defense_tp"], row["defense_fp"]) == (2, 0)
    assert attacked[-1]["accuracy"] < clean[-1]["accuracy"] - 0.3
    assert defended[-1]["accuracy"] > clean[-1]["accuracy"] - 0.05
    config = (tmp_path / "defended" / "config.yaml").read_text()
    assert "norm_outlier:\n  factor: 3.0" in config and "random_direction:\n  norm_factor: 100.0" in config
