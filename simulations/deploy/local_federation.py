"""A real Flower deployment on one machine: a SuperLink and N SuperNodes on 127.0.0.1.

    python simulations/deploy/local_federation.py --supernodes 2                 # insecure
    python simulations/deploy/local_federation.py --supernodes 2 --tls --auth    # TLS + node auth
    python simulations/deploy/local_federation.py --tls --auth -- run.num_rounds=2 data.name='digits'

Each SuperNode gets ``partition-id=<i> num-partitions=<N>`` in its node config, so it
loads its own partition where it runs. ``--tls`` generates a test CA and server
certificate (``make_credentials.py``); ``--auth`` starts the SuperLink with
``--enable-supernode-auth`` and registers each SuperNode's public key with
``flwr supernode register`` before the SuperNode starts. The experiment is submitted with
``flwr run . <connection> --run-config ...``. On real devices run the same commands on
each machine (see ``README.md`` next to this file); this script is the recipe, executable.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_credentials import make_supernode_key, make_tls  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CONNECTION = "fedsec-local"


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
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

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
        proc = subprocess.Popen(command, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
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

    def flwr(self, *args: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
        """Run the ``flwr`` CLI against this federation's SuperLink connection."""
        return subprocess.run([str(BIN / "flwr"), *args], env=self.env, cwd=self.workdir, capture_output=True,
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

    def run(self, app: Path, run_config: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
        """``flwr run <app> <connection> --run-config ... --stream``: blocks until the run ends."""
        return self.flwr("run", str(app), CONNECTION, "--run-config", run_config, "--stream", timeout=timeout)

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
    parser.add_argument("--workdir", type=Path, default=ROOT / "outputs" / "deploy")
    parser.add_argument("overrides", nargs="*", help="run-config overrides, e.g. run.num_rounds=2")
    args = parser.parse_args()
    n = args.supernodes
    run_config = " ".join([f"federation.num_clients={n}", f"federation.clients_per_round={n}", *args.overrides])
    with LocalFederation(args.workdir, tls=args.tls or args.auth, auth=args.auth) as federation:
        federation.start_superlink()
        for i in range(n):
            federation.start_supernode(i, n)
        federation.wait_online(n)
        print(f"SuperLink {federation.address} with {n} SuperNodes online; logs in {federation.logs}", flush=True)
        done = federation.run(ROOT, run_config)
        print(done.stdout[-6000:], done.stderr[-3000:], sep="\n")
        return done.returncode


if __name__ == "__main__":
    sys.exit(main())
