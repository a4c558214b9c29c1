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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shard", default="", metavar="I/N",
                     help="run shard I of N: the selected tests' modules dealt to N shards (tasks.py's fast lane)")


@pytest.hookimpl(trylast=True)  # after -m has deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--shard I/N``: whole modules (their module-scoped fixtures run once) dealt to N shards, the
    module with the most selected tests first, each to the shard with the fewest tests so far."""
    spec = config.getoption("--shard")
    if not spec:
        return
    try:
        index, count = (int(x) for x in spec.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--shard {spec}: expected I/N, e.g. 0/2") from None
    if not 0 <= index < count:
        raise pytest.UsageError(f"--shard {spec}: I must lie in 0..N-1")
    sizes: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        sizes[module] = sizes.get(module, 0) + 1
    loads, mine = [0] * count, set()
    for module in sorted(sizes, key=lambda m: (-sizes[m], m)):
        shard = loads.index(min(loads))
        loads[shard] += sizes[module]
        if shard == index:
            mine.add(module)
    kept = [item for item in items if item.nodeid.split("::")[0] in mine]
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid.split("::")[0] not in mine])
    items[:] = kept


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A shard that was dealt no module passes (pytest would exit 5, "no tests collected")."""
    if session.config.getoption("--shard") and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


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
