"""A real Flower deployment on one machine: a SuperLink and N SuperNodes on 127.0.0.1.

    .venv/bin/python simulations/deploy/local_federation.py --supernodes 2                 # insecure
    .venv/bin/python simulations/deploy/local_federation.py --supernodes 2 --tls --auth    # TLS + node auth
    .venv/bin/python simulations/deploy/local_federation.py --tls --auth -- run.num_rounds=2 data.name='digits'

Each SuperNode gets ``partition-id=<i> num-partitions=<N>`` in its node config, so it
loads its own partition where it runs. ``--tls`` generates a test CA and server
certificate (``make_credentials.py``); ``--auth`` starts the SuperLink with
``--enable-supernode-auth`` and registers each SuperNode's public key with
``flwr supernode register`` before the SuperNode starts. The experiment is submitted with
``flwr run . <connection> --run-config ... --format json``; its logs are streamed with
``flwr log <run-id> --stream`` and its final status read with ``flwr ls --run-id <run-id>
--format json``: the script exits 1 unless the run ends ``finished:completed`` (``flwr run``
itself exits 0 even when the run fails later).

Overrides after ``--`` are ``key=value`` run-config entries. Values that are not TOML
numbers or booleans are quoted for ``flwr`` (the shell has already stripped your quotes),
so ``data.name=digits`` and ``data.name='digits'`` both work. The SuperLink and SuperNodes
run in the project root, so relative paths (the default ``run.out_dir``, ``data.path``)
resolve there, as for ``simulations/run.py`` run from the root. Every process this script
starts is stopped when it ends (also on Ctrl-C or SIGTERM). On real devices run the same
commands on each machine (see ``README.md`` next to this file); this script is the recipe,
executable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_credentials import make_supernode_key, make_tls  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONNECTION = "fedsec-local"
COMPLETED = "finished:completed"


def toml_value(value: str) -> str:
    """``value`` as ``flwr --run-config`` needs it: TOML numbers and booleans and values already
    in quotes as given, anything else as a quoted TOML string."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = None
    if isinstance(parsed, (bool, int, float)):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"  # a TOML literal string: no escapes needed
    if '"' not in value:
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string with escapes
    raise ValueError(f"cannot quote {value!r} for flwr: it holds both quote characters")


def run_config_string(overrides: list[str]) -> str:
    """``key=value`` overrides (as the shell passed them) as one ``flwr run --run-config`` string."""
    entries = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key or any(c.isspace() for c in key):
            raise ValueError(f"run-config override {override!r} is not key=value")
        entries.append(f"{key}={toml_value(value)}")
    return " ".join(entries)


@dataclass
class RunResult:
    """How a submitted run ended: ``status`` is ``flwr ls``'s (``finished:completed``,
    ``finished:failed``, ``finished:stopped``); ``stdout`` holds the run's logs when captured."""

    run_id: int
    status: str
    details: str = ""
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED

    @property
    def returncode(self) -> int:
        return 0 if self.ok else 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalFederation:
    """SuperLink + SuperNodes as child processes; ``stop()`` ends them all."""

    workdir: Path
    tls: bool = False
    auth: bool = False
    port: int = field(default_factory=free_port)
    cwd: Path | None = None  # where the SuperLink (so the ServerApp) and SuperNodes run; default workdir
    processes: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.auth and not self.tls:
            raise ValueError("SuperNode authentication needs TLS (Flower refuses it on insecure links)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home = self.workdir / "flwr-home"
        self.credentials = self.workdir / "credentials"
        self.logs = self.workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        if self.tls:
            make_tls(self.credentials, ["127.0.0.1", "localhost"])
        self._write_connection()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "FLWR_HOME": str(self.home), "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
                "FLWR_DISABLE_UPDATE_CHECK": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def _write_connection(self) -> None:
        """The ``flwr`` CLI's SuperLink connection (``$FLWR_HOME/config.toml``)."""
        self.home.mkdir(parents=True, exist_ok=True)
        security = (f'root-certificates = "{(self.credentials / "ca.crt").as_posix()}"' if self.tls
                    else "insecure = true")
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{self.address}"\n{security}\n')

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(command, env=self.env, cwd=self.cwd or self.workdir, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def start_superlink(self, timeout: float = 60.0) -> None:
        command = [str(BIN / "flower-superlink"), "--host", "127.0.0.1", "--port", str(self.port),
                   "--disable-runtime-dependency-installation"]
        if self.tls:
            command += ["--ssl-ca-certfile", str(self.credentials / "ca.crt"),
                        "--ssl-certfile", str(self.credentials / "server.pem"),
                        "--ssl-keyfile", str(self.credentials / "server.key")]
        else:
            command.append("--insecure")
        if self.auth:
            command.append("--enable-supernode-auth")
        proc = self._spawn("superlink", command)
        deadline = time.monotonic() + timeout
        while "Uvicorn running" not in self.log("superlink"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SuperLink did not start:\n{self.log('superlink')[-3000:]}")
            time.sleep(0.5)

    def flwr(self, *args: str, timeout: float | None = 600.0, capture: bool = True) -> subprocess.CompletedProcess:
        """Run the ``flwr`` CLI against this federation's SuperLink connection (``capture=False``:
        its output goes to this process's stdout/stderr)."""
        return subprocess.run([str(BIN / "flwr"), *args], env=self.env, cwd=self.workdir, capture_output=capture,
                              text=True, timeout=timeout)

    def supernode_key(self, index: int, register: bool) -> Path:
        """Make SuperNode ``index``'s key pair; register its public key if asked. Returns the private key."""
        public = make_supernode_key(self.credentials, f"supernode-{index}")
        if register:
            done = self.flwr("supernode", "register", str(public), CONNECTION, timeout=60)
            if done.returncode != 0:
                raise RuntimeError(f"registering supernode-{index} failed:\n{done.stdout}\n{done.stderr}")
        return self.credentials / f"supernode-{index}"

    def start_supernode(self, index: int, num_partitions: int, register: bool = True,
                        partition_id: int | None = None) -> subprocess.Popen:
        command = [str(BIN / "flower-supernode"), "--superlink", self.address, "--port", str(free_port()),
                   "--max-retries", "3", "--max-wait-time", "30",
                   "--node-config", f"partition-id={index if partition_id is None else partition_id} "
                                    f"num-partitions={num_partitions}"]
        command += ["--root-certificates", str(self.credentials / "ca.crt")] if self.tls else ["--insecure"]
        if self.auth:
            command += ["--auth-supernode-private-key", str(self.supernode_key(index, register))]
        return self._spawn(f"supernode-{index}", command)

    def online_nodes(self) -> int:
        listing = self.flwr("supernode", "ls", CONNECTION, "--format", "json", timeout=60)
        return listing.stdout.count('"online"')

    def wait_online(self, count: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while self.online_nodes() < count:
            if time.monotonic() > deadline:
                logs = "\n".join(self.log(f"supernode-{i}")[-1500:] for i in range(count))
                raise RuntimeError(f"fewer than {count} SuperNodes came online:\n{logs}")
            time.sleep(1.0)

    def submit(self, app: Path, run_config: str) -> int:
        """``flwr run <app> <connection> --run-config ... --format json``; the new run's id.
        ``flwr run`` returns once the run is queued: see ``wait`` for how it ends."""
        done = self.flwr("run", str(app), CONNECTION, "--run-config", run_config, "--format", "json", timeout=300)
        text = done.stdout[done.stdout.find("{"):]
        try:
            reply = json.loads(text)
        except json.JSONDecodeError:
            reply = {}
        if not reply.get("success") or reply.get("run-id") is None:
            reason = reply.get("error-message") or f"{done.stdout}\n{done.stderr}"
            raise RuntimeError(f"flwr run did not start a run:\n{reason.strip()}")
        return int(reply["run-id"])

    def run_status(self, run_id: int) -> tuple[str, str]:
        """``flwr ls <connection> --run-id <id> --format json``: (status, status details)."""
        done = self.flwr("ls", CONNECTION, "--run-id", str(run_id), "--format", "json", timeout=60)
        try:
            runs = json.loads(done.stdout[done.stdout.find("{"):]).get("runs") or []
        except json.JSONDecodeError:
            runs = []
        if not runs:
            raise RuntimeError(f"flwr ls knows no run {run_id}:\n{done.stdout}\n{done.stderr}")
        return runs[0]["status"], runs[0].get("status-details") or ""

    def wait(self, run_id: int, timeout: float = 600.0, poll: float = 2.0) -> tuple[str, str]:
        """Poll ``flwr ls`` until run ``run_id`` has finished; its (status, details)."""
        deadline = time.monotonic() + timeout
        while True:
            status, details = self.run_status(run_id)
            if status.startswith("finished"):
                return status, details
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {status} after {timeout:.0f} s")
            time.sleep(poll)

    def run(self, app: Path, run_config: str, timeout: float | None = 600.0, capture: bool = True) -> RunResult:
        """Submit a run, follow its logs (``flwr log <id> --stream``, which returns when the run
        finishes) and return how it ended (``flwr ls``). After ``timeout`` seconds (None: no limit)
        the run is stopped (``flwr stop <id>``) and ``TimeoutError`` raised."""
        run_id = self.submit(app, run_config)
        started = time.monotonic()
        try:
            logs = self.flwr("log", str(run_id), CONNECTION, "--stream", timeout=timeout, capture=capture)
            left = 600.0 if timeout is None else timeout - (time.monotonic() - started)
            status, details = self.wait(run_id, timeout=max(left, 30.0))
        except (subprocess.TimeoutExpired, TimeoutError) as err:
            self.flwr("stop", str(run_id), CONNECTION, timeout=60)
            raise TimeoutError(f"run {run_id} did not finish in time; stopped it") from err
        return RunResult(run_id, status, details, logs.stdout or "", logs.stderr or "")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.processes.clear()

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--supernodes", type=int, default=2)
    parser.add_argument("--tls", action="store_true", help="TLS with a generated test CA")
    parser.add_argument("--auth", action="store_true", help="SuperNode authentication (implies --tls)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "deploy",
                        help="credentials, flwr-home and the processes' logs")
    parser.add_argument("--timeout", type=float, default=None, help="stop the run after this many seconds")
    parser.add_argument("overrides", nargs="*", help="run-config overrides, e.g. run.num_rounds=2 data.name=digits")
    args = parser.parse_args()
    n = args.supernodes
    try:
        run_config = run_config_string([f"federation.num_clients={n}", f"federation.clients_per_round={n}",
                                        *args.overrides])
    except ValueError as err:
        parser.error(str(err))
    # SIGTERM ends the script like Ctrl-C does, so the SuperLink and SuperNodes are stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with LocalFederation(args.workdir, tls=args.tls or args.auth, auth=args.auth, cwd=ROOT) as federation:
        federation.start_superlink()
        for i in range(n):
            federation.start_supernode(i, n)
        federation.wait_online(n)
        print(f"SuperLink {federation.address} with {n} SuperNodes online; logs in {federation.logs}; "
              f"relative paths in the run config resolve against {ROOT}", flush=True)
        try:
            result = federation.run(ROOT, run_config, timeout=args.timeout, capture=False)
        except (RuntimeError, TimeoutError) as err:
            print(f"local_federation: {err}", file=sys.stderr)
            return 1
        details = "" if result.details in ("", "N/A") else f" ({result.details})"
        line = f"run {result.run_id}: {result.status}{details}"
        print(line if result.ok else f"local_federation: {line}; logs in {federation.logs}",
              file=sys.stdout if result.ok else sys.stderr, flush=True)
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
