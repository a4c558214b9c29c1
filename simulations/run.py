"""Run a fedsec experiment in Flower's Simulation Engine (Ray backend).

    python simulations/run.py                                   # the default experiment
    python simulations/run.py --config simulations/configs/digits.yaml --out outputs/digits
    python simulations/run.py --set strategy.name=fedadam --set fedadam.server_lr=0.01
    python simulations/run.py --resume outputs/default         # continue after the last completed round

Each run gets its own directory OUT: ``--out DIR`` exactly (refused if DIR holds
an earlier run, unless ``--overwrite``), else ``run.out_dir/<timestamp>`` with
``run.out_dir/latest`` pointing at the newest. Writes OUT/config.yaml,
OUT/metrics.jsonl (a row per round), OUT/summary.json, OUT/metrics.png and
OUT/run.log (fedsec's, Flower's and Ray's log lines and every warning; the
console shows fedsec's progress and table only). Exits non-zero if the run did
not complete.
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
            "init_args": {"include_dashboard": False, "log_to_driver": False,
                          **({"address": fed.ray_address} if fed.ray_address else {})},
        },
    )


def run_inline(cfg: Config, resume: bool) -> None:
    """The same apps in this process, clients one after the other (``fedsec.app.inline``)."""
    from fedsec.app.inline import run_inline as run

    run(cfg, resume=resume)


BACKENDS: dict[str, Callable[[Config, bool], None]] = {"ray": run_ray, "inline": run_inline}
LOG_NAME = "run.log"
RUN_FILES = ("metrics.jsonl", "summary.json", "checkpoint.pkl")


def output_dir(args: argparse.Namespace, configured: str) -> Path:
    """Where this run writes: ``--resume``/``--out`` exactly, else a new ``<run.out_dir>/<timestamp>``."""
    if args.resume:
        return Path(args.resume)
    if args.out:
        out = Path(args.out)
        if not args.overwrite and any((out / name).exists() for name in RUN_FILES):
            raise FileExistsError(f"{out} holds an earlier run: pass --overwrite to replace it, "
                                  f"--resume {out} to continue it, or another --out")
        return out
    base = Path(configured)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, n = base / stamp, 1
    while out.exists():
        n += 1
        out = base / f"{stamp}-{n}"
    return out


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


def configure_logging(out: Path) -> logging.Handler:
    """fedsec's progress lines on the console; fedsec's, Flower's and Ray's log lines and every warning
    (FutureWarning, DeprecationWarning, ...) in ``out/run.log`` only."""
    out.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(out / LOG_NAME)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("fedsec: %(message)s"))
    fedsec_log = logging.getLogger("fedsec")
    fedsec_log.setLevel(logging.INFO)
    fedsec_log.addHandler(console)
    fedsec_log.addHandler(file_handler)
    fedsec_log.propagate = False
    logging.captureWarnings(True)
    warnings_log = logging.getLogger("py.warnings")
    warnings_log.addHandler(file_handler)
    warnings_log.propagate = False
    for name in ("ray", "transformers", "datasets", "torch"):
        logging.getLogger(name).addHandler(file_handler)
    # Flower's own console handler shows errors only; all its lines go to the log file (no ANSI colours)
    import flwr.common.logger  # noqa: F401  (installs Flower's handler on the "flwr" logger)

    flwr_log = logging.getLogger("flwr")
    for handler in flwr_log.handlers:
        handler.setLevel(logging.ERROR)
    flwr_log.addHandler(file_handler)
    # Ray's accelerator-override FutureWarning (in this process and its workers)
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    return file_handler


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
    try:
        precheck(config_path, args.overrides)  # against the schema snapshot: before torch, plug-ins and Ray
        cfg = Config.load(config_path, args.overrides)
        out = output_dir(args, cfg.run.out_dir)
        cfg = Config.load(config_path, [*args.overrides, f"run.out_dir={out}"])
    except (ConfigError, FileExistsError) as err:
        print(f"fedsec: config error: {err}", file=sys.stderr)
        return 2
    configure_logging(out)
    summary_path = out / "summary.json"
    summary_path.unlink(missing_ok=True)

    from fedsec.experiment import get_experiment
    from fedsec.resources import check_resources

    try:  # check resources, load data, partitions and model now: bad input fails before Ray starts
        check_resources(cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            get_experiment(cfg)
    except ConfigError as err:
        print(f"fedsec: config error: {err}", file=sys.stderr)
        return 2
    if not args.resume and not args.out:
        point_latest(out)
    try:
        BACKENDS[cfg.federation.backend](cfg, args.resume is not None)
    except KeyboardInterrupt:
        print(f"\nfedsec: interrupted; completed rounds are in {out / 'metrics.jsonl'}; continue with "
              f"python simulations/run.py --resume {out}", file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(130)  # skip the interpreter's finalizers (Ray's and torch's print pages after Ctrl-C)
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
