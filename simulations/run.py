"""Run a fedsec experiment in Flower's Simulation Engine (Ray backend).

    python simulations/run.py                                   # the default experiment
    python simulations/run.py --config simulations/configs/digits.yaml --out outputs/digits
    python simulations/run.py --set strategy.name=fedadam --set fedadam.server_lr=0.01
    python simulations/run.py --resume outputs/default/latest  # continue after the last completed round

Each run gets its own directory OUT: ``--out DIR`` exactly (refused if DIR holds
an earlier run, unless ``--overwrite``), else ``run.out_dir/<timestamp>`` with
``run.out_dir/latest`` pointing at the newest. Writes OUT/config.yaml,
OUT/metrics.jsonl (a row per round), OUT/summary.json, OUT/metrics.png and
OUT/run.log (fedsec's and Flower's log lines and the warnings raised in this
process; the console shows fedsec's progress and table only). Exits non-zero if
the run did not complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if TYPE_CHECKING:
    from fedsec.config import Config

DEFAULT_CONFIG = ROOT / "simulations" / "configs" / "default.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML or TOML experiment config")
    parser.add_argument("--out", default=None, help="output directory, exactly (default: run.out_dir/<timestamp>)")
    parser.add_argument("--overwrite", action="store_true", help="let --out replace an earlier run in that directory")
    parser.add_argument("--resume", metavar="DIR", default=None,
                        help="continue the run in DIR from its last checkpoint (DIR/config.yaml is the config)")
    parser.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="attach to a running Ray cluster (auto or host:port); sets federation.ray_address")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set data.alpha=0.1 (repeatable)")
    return parser.parse_args(argv)


def run_ray(cfg: Config, resume: bool) -> None:
    """Flower's Simulation Engine: one Ray actor per ``num_cpus`` / ``num_gpus`` share."""
    from flwr.simulation import run_simulation

    from fedsec.app.client_app import app as client_app
    from fedsec.app.server_app import make_server_app

    # Ray workers import fedsec, clients and strategies from the project root.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    fed = cfg.federation
    run_simulation(
        server_app=make_server_app(cfg, resume=resume),
        client_app=client_app,
        num_supernodes=fed.num_clients,
        backend_config={
            "client_resources": {"num_cpus": fed.num_cpus, "num_gpus": fed.num_gpus},
            # actors' output (library warnings, tracebacks) stays in Ray's session logs; failed clients
            # are reported by the round loop
            "init_args": {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                          **({"address": fed.ray_address} if fed.ray_address else {})},
        },
    )


def run_inline(cfg: Config, resume: bool) -> None:
    """The same apps in this process, clients one after the other (``fedsec.app.inline``)."""
    from fedsec.app.inline import run_inline as run

    run(cfg, resume=resume)


BACKENDS: dict[str, Callable[[Config, bool], None]] = {"ray": run_ray, "inline": run_inline}
LOG_NAME = "run.log"
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pkl", "metrics.png", LOG_NAME)


def output_dir(args: argparse.Namespace, configured: str) -> tuple[Path, bool]:
    """Where this run writes, and whether this call created that directory: ``--resume DIR`` (links
    resolved) and ``--out DIR`` exactly, else a new ``<run.out_dir>/<timestamp>`` claimed atomically."""
    if args.resume:
        if args.out or args.overwrite:
            raise FileExistsError("--resume continues the run in its own directory: --out and --overwrite do not "
                                  "apply")
        return Path(args.resume).resolve(), False
    if args.out:
        out = Path(args.out)
        if not args.overwrite and held_run(out):
            raise FileExistsError(f"{out} holds an earlier run: pass --overwrite to replace it, "
                                  f"--resume {out} to continue it, or another --out")
        return out, False
    if args.overwrite:
        raise FileExistsError("--overwrite applies to --out DIR; without --out every run gets a new directory")
    base, stamp, n = Path(configured), time.strftime("%Y%m%d-%H%M%S"), 1
    base.mkdir(parents=True, exist_ok=True)
    while True:
        out = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            out.mkdir()  # atomic: two runs started in the same second get different directories
            return out, True
        except FileExistsError:
            n += 1


def held_run(out: Path) -> list[Path]:
    """The files of an earlier run in ``out`` (those a run writes, TensorBoard events included)."""
    if not out.is_dir():
        return []
    return [p for p in out.iterdir() if p.name in RUN_FILES or p.name.startswith("events.out.tfevents")]


def point_latest(out: Path) -> None:
    """``<parent>/latest`` -> ``out`` (a symbolic link; skipped where links cannot be made)."""
    latest = out.parent / "latest"
    try:
        if latest.is_symlink():
            latest.unlink()
        if not latest.exists():
            latest.symlink_to(out.name, target_is_directory=True)
    except OSError:
        pass


class RunLogging:
    """fedsec's progress lines on the console; fedsec's and Flower's log lines and the warnings raised in
    this process (FutureWarning, DeprecationWarning, ...) in ``out/run.log`` only. The clients' output on
    the Ray backend (their warnings and tracebacks) stays in Ray's session logs; failed clients are
    reported by the round loop. :meth:`close` removes and closes the handlers (``main`` may run again in
    the same process)."""

    LOGGERS = ("fedsec", "flwr", "py.warnings", "transformers", "datasets", "torch")

    def __init__(self, out: Path) -> None:
        self.file = logging.FileHandler(out / LOG_NAME)
        self.file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.console = logging.StreamHandler()
        self.console.setFormatter(logging.Formatter("fedsec: %(message)s"))
        fedsec_log = logging.getLogger("fedsec")
        fedsec_log.setLevel(logging.INFO)
        fedsec_log.propagate = False
        fedsec_log.addHandler(self.console)
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").propagate = False
        import flwr.common.logger  # noqa: F401  (installs Flower's console handler on the "flwr" logger)

        self.flower_levels = {h: h.level for h in logging.getLogger("flwr").handlers}
        for handler in self.flower_levels:  # Flower's console (ANSI colours) shows errors only
            handler.setLevel(logging.ERROR)
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self.file)
        # Ray's accelerator-override FutureWarning (in this process and its workers)
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

    def close(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self.file)
        logging.getLogger("fedsec").removeHandler(self.console)
        for handler, level in self.flower_levels.items():
            handler.setLevel(level)
        logging.captureWarnings(False)
        self.file.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fedsec.config import Config, ConfigError
    from fedsec.precheck import precheck

    if args.resume and not (Path(args.resume) / "checkpoint.pkl").is_file():
        print(f"fedsec: nothing to resume: {args.resume} holds no checkpoint.pkl", file=sys.stderr)
        return 2
    config_path = Path(args.resume) / "config.yaml" if args.resume else Path(args.config)
    if args.ray_address:
        args.overrides.append(f"federation.ray_address={args.ray_address}")
    created = False
    try:
        precheck(config_path, args.overrides)  # against the schema snapshot: before torch, plug-ins and Ray
        cfg = Config.load(config_path, args.overrides)
        out, created = output_dir(args, cfg.run.out_dir)
        cfg.set("run.out_dir", str(out))

        from fedsec.experiment import get_experiment
        from fedsec.resources import check_resources

        check_resources(cfg)  # then data, partitions and model: bad input fails before Ray starts
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            get_experiment(cfg)
    except (ConfigError, FileExistsError) as err:
        if created:
            out.rmdir()
        print(f"fedsec: config error: {err}", file=sys.stderr)
        return 2
    if args.out and args.overwrite:
        for path in held_run(out):
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # a resumed run's old summary must not count as completion
    if created:
        point_latest(out)
    run_logging = RunLogging(out)
    try:
        BACKENDS[cfg.federation.backend](cfg, args.resume is not None)
    except KeyboardInterrupt:
        print(f"\nfedsec: interrupted; completed rounds are in {out / 'metrics.jsonl'}; continue with "
              f"python simulations/run.py --resume {out}", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(130)  # skip the interpreter's finalizers (Ray's and torch's print pages after Ctrl-C)
    finally:
        run_logging.close()
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        print(f"fedsec: the run did not complete; rounds finished so far are in {out / 'metrics.jsonl'}; "
              f"log: {out / LOG_NAME}", file=sys.stderr)
        return 1
    summary = json.loads(summary_path.read_text())
    if summary["rounds"] != cfg.run.num_rounds:
        print(f"fedsec: only {summary['rounds']} of {cfg.run.num_rounds} rounds completed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
