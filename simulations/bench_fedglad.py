"""Benchmark: each base strategy with and without FedGLAD, over seeds.

    python simulations/bench_fedglad.py                       # digits, 3 seeds
    python simulations/bench_fedglad.py --config simulations/configs/fedglad_text.yaml --seeds 3

Under negative client sampling (many clients, few sampled, Dirichlet 0.1)
it writes OUT/fedglad.csv (one line per run), OUT/fedglad.md (mean ± std of
final accuracy, best accuracy and the mean accuracy of the last 5 rounds) and
prints the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulations.benchmark import Cell, bench_parser, bench_paths, run_cell, tabulate  # noqa: E402

# Base-specific server settings (FedAdam needs a small server step).
BASES: dict[str, list[str]] = {
    "fedavg": [],
    "fedavgm": ["fedavgm.server_lr=1.0", "fedavgm.momentum=0.9"],
    "fedadam": ["fedadam.server_lr=0.01"],
    "fedprox": ["fedprox.mu=0.01"],
}


def _fedglad(variant: str) -> list[str]:
    return (["strategy.wrappers=none"] if variant == "off"
            else ["strategy.wrappers=fedglad", f"fedglad.variant={variant}"])


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "fedglad_digits.yaml")
    parser.add_argument("--bases", default=",".join(BASES))
    parser.add_argument("--variants", default="off,global", help="FedGLAD modes to compare (off,global,groupwise)")
    args = parser.parse_args(argv)
    config, out = bench_paths(args, "bench_fedglad")
    cells = [
        Cell(label=f"{base}" + ("" if variant == "off" else f" + FedGLAD ({variant})"),
             overrides=[f"strategy.name={base}", *_fedglad(variant), *BASES[base]], group=base)
        for base in args.bases.split(",") for variant in args.variants.split(",")
    ]
    results = {}
    for cell in cells:
        results[cell.label] = [run_cell(config, cell, seed, out) for seed in range(args.seeds)]
    metrics = {
        "final acc": lambda r: r["summary"]["final"]["accuracy"],
        "best acc": lambda r: r["summary"]["best_accuracy"],
        "last-5 mean acc": lambda r: sum(x["accuracy"] for x in r["rows"][-5:]) / 5,
    }
    print(tabulate(results, metrics, cells, out, "fedglad"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
