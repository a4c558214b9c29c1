"""Every shell command the documentation shows is run here, shortened, or listed with why it cannot run here.

The commands are read from the ```bash blocks of README.md, the pages under
docs/ (moved out of the README) and the READMEs under simulations/. Each must
match exactly one rule of ``RUN`` (how it is shortened: one round, the inline
backend, a temporary output directory, 400 training rows for MiniLM configs,
``--check`` for studies) or of
``NOT_RUN`` (why it cannot run on a test machine). A documented command that
matches no rule fails ``test_every_documented_command_has_a_rule``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted((ROOT / "simulations").glob("*/README.md"))]
ONE_ROUND = ["--set", "run.num_rounds=1", "--set", "federation.backend=inline"]
# MiniLM (22.7M parameters; the default experiment and the configs based on it) also trains on fewer tweets
SMALL_MINILM = ["--set", "data.train_size=400", "--set", "data.test_size=100"]


def documented_commands() -> list[tuple[str, str]]:
    """(``file:line``, command) of every command line in a ```bash / ```sh block (continuations joined)."""
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        for block in re.finditer(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
            first_line = text[: block.start(1)].count("\n") + 1
            pending, start = "", 0
            for offset, line in enumerate(block.group(1).split("\n")):
                if not pending:
                    start = first_line + offset
                stripped = line.strip()
                if stripped.endswith("\\"):  # a continued line: joined with the next
                    pending += stripped[:-1] + " "
                    continue
                command, pending = (pending + stripped).strip(), ""
                if command and not command.startswith("#"):
                    found.append((f"{path.relative_to(ROOT)}:{start}", command))
    return found


def _argv(command: str) -> list[str]:
    """The command's words without a trailing comment, ``python``/``python3`` -> this interpreter."""
    words = shlex.split(command, comments=True)
    return [sys.executable if w in ("python", "python3") else w for w in words]


def _with_out(words: list[str], out: Path) -> list[str]:
    """``words`` writing to ``out``: an ``--out`` given is replaced, else added."""
    if "--out" in words:
        i = words.index("--out")
        return [*words[:i], "--out", str(out), *words[i + 2:]]
    return [*words, "--out", str(out)]


@dataclass(frozen=True)
class Rule:
    """How a documented command runs here: ``argv`` builds the shortened command from its words and a
    temporary directory; it must exit with ``code`` and print ``expect`` (stdout or stderr) when set."""

    pattern: str
    argv: Callable[[list[str], Path], list[str]]
    why: str
    code: int = 0
    expect: str = ""
    without_gpu: bool = False  # code and expect hold on a machine without a GPU; with one, the command runs


def _one_round(words: list[str], tmp: Path) -> list[str]:
    from fedsec.config import Config

    config = words[words.index("--config") + 1] if "--config" in words else "simulations/configs/default.yaml"
    overrides = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    small = SMALL_MINILM if Config.load(ROOT / config, overrides).model.name == "minilm" else []
    return _with_out([*words, *ONE_ROUND, *small], tmp / "out")


def _without_ray_address(words: list[str], tmp: Path) -> list[str]:
    i = words.index("--ray-address")
    return _one_round(words[:i] + words[i + 2:], tmp)


def _study_check(words: list[str], tmp: Path) -> list[str]:
    return [w for w in words if w != "--resume" and w != "--ray-address" and w != "auto"] + ["--check"]


def _mkdocs_build(words: list[str], tmp: Path) -> list[str]:
    return [sys.executable, "-m", "mkdocs", *words[1:], "--site-dir", str(tmp / "site")]


def _credentials(words: list[str], tmp: Path) -> list[str]:
    i = words.index("--out")
    return [*words[:i], "--out", str(tmp / "credentials"), *words[i + 2:]]


def _flwr_run_config(words: list[str], tmp: Path) -> list[str]:
    """``flwr run .`` itself is tests/test_flwr_run.py; here its run config is built into the experiment
    (config, data, partitions, model) the ServerApp would start, which is where a bad run config fails."""
    run_config = words[words.index("--run-config") + 1]
    code = ("import sys, tomllib\n"
            "from flwr.common.config import parse_config_args\n"
            "from fedsec.config import Config\n"
            "from fedsec.experiment import get_experiment\n"
            "flat = tomllib.load(open('pyproject.toml', 'rb'))['tool']['flwr']['app']['config']\n"
            "flat = {f'{s}.{k}': v for s, keys in flat.items() for k, v in keys.items()}\n"
            "flat.update(parse_config_args([sys.argv[1]]))\n"
            "get_experiment(Config.from_flat(flat))\n"
            "print('experiment built')")
    return [sys.executable, "-c", code, run_config]


RUN: list[Rule] = [
    Rule(r"^python3? tasks\.py run\b", _one_round, "the default experiment, one round, inline"),
    Rule(r"^python simulations/run\.py (?!.*--ray-address)", _one_round, "one round on the inline backend"),
    Rule(r"^python simulations/run\.py .*--ray-address \S+ .*federation\.num_gpus", _without_ray_address,
         "a GPU cluster's command: here (no GPU, no cluster) it must stop at once naming the key",
         code=2, expect="federation.num_gpus=0.25 asks for a GPU per client", without_gpu=True),
    Rule(r"^python simulations/run\.py .*--ray-address HEAD_IP:\d+ (?!.*num_gpus)", _without_ray_address,
         "a cluster's command, run here on this machine (one round, inline)"),
    Rule(r"^python simulations/study\.py ", _study_check, "the study file, every cell and the resources checked"),
    Rule(r"^\.venv/bin/mkdocs build", _mkdocs_build, "the site built into a temporary directory"),
    Rule(r"^python simulations/deploy/make_credentials\.py ", _credentials, "credentials into a temporary directory"),
    Rule(r"^flwr run \. --federation-config", _flwr_run_config,
         "its run config built into the experiment (flwr run itself: tests/test_flwr_run.py)"),
]

NOT_RUN: dict[str, str] = {
    r"^python3 tasks\.py test\b": "it is this test suite",
    r"^source \.venv/bin/activate": "changes the calling shell only; these tests run the venv's python",
    r"^export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1": "environment for the flwr commands that follow",
    r"^\.venv/bin/mkdocs serve": "a web server that runs until stopped (the build is run)",
    r"^tensorboard --logdir": "a web server that runs until stopped (tests/test_study.py reads the events back)",
    r"^flwr (ls|log)\b": "queries a running SuperLink (tests/test_flwr_run.py runs one)",
    r"^kill \$\(lsof -t -iTCP:39091": "stops the SuperLink flwr run left (tests/test_flwr_run.py stops its own)",
    r"^nohup ray start |^kill \"\$\(cat ray-node\.pid\)\"": "starts/stops a Ray node of this machine "
        "(tests/test_ray_cluster.py starts a two-node cluster the same way and stops only it)",
    r"^ray status --address=HEAD_IP": "needs the cluster's head address",
    r"^ray (up|attach|down)\b": "needs machines reachable over SSH (provider: local)",
    r"^cd ~/fedsec && \.venv/bin/python simulations/run\.py --ray-address": "runs on the head that ray up made",
    r"^for ip in .*ray stop": "stops Ray on the cluster's machines over SSH",
    r"^python simulations/deploy/local_federation\.py ": "tests/test_deployment.py runs its LocalFederation "
        "(SuperLink, SuperNodes, TLS, authentication) and tests the command line's run-config quoting and exit code",
    r"^flower-superlink |^flower-supernode |^flwr supernode |^flwr run \. fedsec ": "the real-device deployment "
        "across machines; tests/test_deployment.py runs the same sequence on this machine",
}


def _rule(command: str) -> Rule | str | None:
    """The RUN rule or the NOT_RUN reason for ``command`` (None: none; ValueError: more than one)."""
    hits: list[Rule | str] = [r for r in RUN if re.search(r.pattern, command)]
    hits += [why for pattern, why in NOT_RUN.items() if re.search(pattern, command)]
    if len(hits) > 1:
        raise ValueError(f"{command!r} matches {len(hits)} rules")
    return hits[0] if hits else None


COMMANDS = documented_commands()


def test_every_documented_command_has_a_rule() -> None:
    assert len(COMMANDS) > 20  # the extraction sees the documents' commands
    missing = [f"{where}: {command}" for where, command in COMMANDS if _rule(command) is None]
    assert not missing, "documented commands with no rule (run them shortened, or say why not):\n" + "\n".join(missing)


def test_every_rule_matches_a_documented_command() -> None:
    """No stale rules: each still matches something the documents show."""
    commands = [c for _, c in COMMANDS]
    stale = [r.pattern for r in RUN if not any(re.search(r.pattern, c) for c in commands)]
    stale += [p for p in NOT_RUN if not any(re.search(p, c) for c in commands)]
    assert not stale, f"rules that match no documented command: {stale}"


@pytest.mark.slow
@pytest.mark.commands
@pytest.mark.parametrize("where,command", [(w, c) for w, c in COMMANDS if isinstance(_rule(c), Rule)],
                         ids=[w for w, c in COMMANDS if isinstance(_rule(c), Rule)])
def test_documented_command_runs(where: str, command: str, tmp_path: Path) -> None:
    rule = _rule(command)
    assert isinstance(rule, Rule)
    argv = rule.argv(_argv(command), tmp_path)
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    code, expect = rule.code, rule.expect
    if rule.without_gpu:
        import torch

        code, expect = (0, "") if torch.cuda.is_available() else (code, expect)
    assert proc.returncode == code, f"{where}: {' '.join(argv)} ({rule.why}) exited {proc.returncode}:\n" \
                                    f"{output[-3000:]}"
    assert expect in output, output[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
