"""Run a fedsec experiment in Flower's Simulation Engine (Ray backend).

    python simulations/run.py                                   # the default experiment
    python simulations/run.py --config simulations/configs/digits.yaml --out outputs/digits
    python simulations/run.py --set strategy.name=fedadam --set fedadam.server_lr=0.01
    python simulations/run.py --resume outputs/default         # continue after the last completed round

Writes OUT/config.yaml, OUT/metrics.jsonl (a row per round), OUT/summary.json
and OUT/metrics.png. Exits non-zero if the run did not complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
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
    parser.add_argument("--out", default=None, help="output directory (overrides run.out_dir)")
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
            "init_args": {"include_dashboard": False, **({"address": fed.ray_address} if fed.ray_address else {})},
        },
    )


def run_inline(cfg: Config, resume: bool) -> None:
    """The same apps in this process, clients one after the other (``fedsec.app.inline``)."""
    from fedsec.app.inline import run_inline as run

    run(cfg, resume=resume)


BACKENDS: dict[str, Callable[[Config, bool], None]] = {"ray": run_ray, "inline": run_inline}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from fedsec.config import Config, ConfigError

    if args.resume and not (Path(args.resume) / "checkpoint.pkl").is_file():
        print(f"fedsec: nothing to resume: {args.resume} holds no checkpoint.pkl", file=sys.stderr)
        return 2
    config_path = Path(args.resume) / "config.yaml" if args.resume else Path(args.config)
    out_override = args.resume or args.out
    if args.ray_address:
        args.overrides.append(f"federation.ray_address={args.ray_address}")
    try:
        cfg = Config.load(config_path, args.overrides + ([f"run.out_dir={out_override}"] if out_override else []))
    except ConfigError as err:
        print(f"fedsec: config error: {err}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s fedsec: %(message)s"))
    logging.getLogger("fedsec").addHandler(handler)
    logging.getLogger("fedsec").setLevel(logging.INFO)
    out = Path(cfg.run.out_dir)
    summary_path = out / "summary.json"
    summary_path.unlink(missing_ok=True)

    from fedsec.experiment import get_experiment

    try:  # load data, partitions and model now: bad input fails before Ray starts
        get_experiment(cfg)
    except ConfigError as err:
        print(f"fedsec: config error: {err}", file=sys.stderr)
        return 2

    BACKENDS[cfg.federation.backend](cfg, args.resume is not None)
    if not summary_path.is_file():
        print(f"fedsec: the run did not complete; rounds finished so far are in {out / 'metrics.jsonl'}",
              file=sys.stderr)
        return 1
    summary = json.loads(summary_path.read_text())
    if summary["rounds"] != cfg.run.num_rounds:
        print(f"fedsec: only {summary['rounds']} of {cfg.run.num_rounds} rounds completed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
