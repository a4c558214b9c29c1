#!/usr/bin/env python3
"""Set up fedsec in ./.venv and run it: needs nothing but Python 3.11+.

    python3 tasks.py run  [run.py arguments]   # the default experiment
    python3 tasks.py test [pytest arguments]   # the test suite (no arguments: ruff, fast lane, slow lane)
    python3 tasks.py setup                     # only create/refresh the environment

The environment is (re)installed when pyproject.toml changes. torch is
installed first and pinned (TORCH_SPEC, default torch==2.13.0) so that no
other package pulls a different build.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".fedsec-installed"
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")


def setup() -> None:
    """Create ./.venv and install the project with its dev extras, if out of date."""
    if sys.version_info < (3, 11):
        sys.exit(f"fedsec needs Python 3.11+ (Flower >= 1.35 does), this is {sys.version.split()[0]}")
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + TORCH_SPEC.encode()).hexdigest()
    if STAMP.is_file() and STAMP.read_text() == want and PYTHON.is_file():
        return
    if not PYTHON.is_file():
        print("fedsec: creating .venv", flush=True)
        venv.create(VENV, with_pip=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print(f"fedsec: installing {TORCH_SPEC} and the project (a few minutes the first time)", flush=True)
    subprocess.run(pip + [TORCH_SPEC], check=True)
    subprocess.run(pip + ["-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(want)


def main() -> int:
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("help", [])
    if command not in ("setup", "run", "test"):
        print(__doc__)
        return 0 if command == "help" else 2
    setup()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if command == "run":
        return subprocess.call([str(PYTHON), str(ROOT / "simulations" / "run.py"), *args], cwd=ROOT, env=env)
    if command == "test":
        if args:
            return subprocess.call([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=env)
        return test_lanes(env)
    return 0


def test_lanes(env: dict[str, str]) -> int:
    """ruff, then the fast lane (``-m "not slow"``), then the slow lane; stop at the first that fails.

    The slow lane is two pytest processes at once, one per core (``OMP_NUM_THREADS=1``): the tests that
    start Ray, a Ray cluster, Ray Tune or a SuperLink (``cluster``: one after another, they use the whole
    machine and fixed ports), the documented commands (``commands``) and a few long runs (``heavy``, to
    even out the two) run in one, all other slow tests (the combination sweep among them) in the other.
    Each prints its 25 longest tests.
    """
    pytest = [str(PYTHON), "-m", "pytest", "--durations=25"]
    lanes = [
        ("lint", [[str(BIN / "ruff"), "check", "."]]),
        ("fast lane", [[str(PYTHON), "-m", "pytest", "-m", "not slow"]]),
        ("slow lane", [[*pytest, "-m", "slow and not (cluster or commands or heavy)"],
                       [*pytest, "-m", "slow and (cluster or commands or heavy)"]]),
    ]
    for name, commands in lanes:
        shown = " & ".join(" ".join(c if name == "lint" else c[1:]) for c in commands)
        print(f"fedsec: {name}: {shown}", flush=True)
        code = run_together(commands, {**env, "OMP_NUM_THREADS": "1"} if len(commands) > 1 else env)
        if code:
            print(f"fedsec: {name} failed (exit {code})", flush=True)
            return code
    return 0


def run_together(commands: list[list[str]], env: dict[str, str]) -> int:
    """Run ``commands`` at once; the first streams to the console, the others to a log each, printed when
    they end (also on an error or Ctrl-C, after every process is stopped); return the first non-zero exit
    status (0 if all pass)."""
    import contextlib
    import tempfile

    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in commands[1:]]
        procs: list[subprocess.Popen] = []
        try:
            procs.append(subprocess.Popen(commands[0], cwd=ROOT, env=env))
            for command, log in zip(commands[1:], logs):
                procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
            codes = [p.wait() for p in procs]
        except BaseException:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
            raise
        finally:
            for command, log in zip(commands[1:], logs):
                log.seek(0)
                print(f"fedsec: output of {' '.join(command[1:])}:", flush=True)
                sys.stdout.buffer.write(log.read())
                sys.stdout.flush()
    return next((c for c in codes if c), 0)


if __name__ == "__main__":
    sys.exit(main())
