"""Shared fixtures: offline environment, small configs, the repository root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def tiny_cfg():
    """The tiny test config (tiny BERT, 4 clients, 2 rounds)."""
    from fedsec.config import Config

    return Config.load(ROOT / "simulations" / "configs" / "tiny.yaml")


@pytest.fixture
def task_identity():
    """Messages need a task identity, which Flower's runtimes set; set one here."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


def run_inline(config: str, out: Path, *overrides: str) -> list[dict]:
    """A whole federated run on the inline backend in this process; its metrics rows."""
    import json

    from fedsec.app.inline import run_inline as run
    from fedsec.config import Config

    cfg = Config.load(ROOT / "simulations" / "configs" / config,
                      [*overrides, "federation.backend=inline", f"run.out_dir={out}"])
    run(cfg)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
