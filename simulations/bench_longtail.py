"""Benchmark: FedAvg vs CReFF vs RedGrape on long-tailed data, imbalance factors 10 and 100, over seeds.

    python simulations/bench_longtail.py      # simulations/configs/longtail_digits.yaml, 3 seeds

Every cell runs the same federation (same partitions, same sampled clients per
seed); they differ in ``rebalance.method``. Writes OUT/longtail.csv and
OUT/longtail.md (final overall, many-, medium- and few-shot accuracy, and the
mean few-shot accuracy over the last 5 rounds, mean ± std) and OUT/longtail_paired.md
(paired per-seed differences with 95% CIs) and prints both.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulations.benchmark import Cell, bench_parser, bench_paths, paired_table, run_cell, tabulate  # noqa: E402

METHODS = {"FedAvg": ["rebalance.method=none"], "CReFF": ["rebalance.method=creff"],
           "RedGrape": ["rebalance.method=redgrape", "model.extra_classifier=true"]}


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "longtail_digits.yaml")
    parser.add_argument("--imbalance", default="10,100", help="comma-separated imbalance factors")
    args = parser.parse_args(argv)
    config, out = bench_paths(args, "bench_longtail")
    cells = [Cell(f"{method}, IF {factor}", [f"data.imbalance_factor={factor}", *overrides], group=f"IF {factor}")
             for factor in args.imbalance.split(",") for method, overrides in METHODS.items()]
    results = {cell.label: [run_cell(config, cell, seed, out) for seed in range(args.seeds)] for cell in cells}
    final = lambda key: lambda r: r["summary"]["final"][key]  # noqa: E731
    metrics = {
        "accuracy": final("accuracy"),
        "many-shot": final("many_accuracy"),
        "medium-shot": final("medium_accuracy"),
        "few-shot": final("few_accuracy"),
        "few-shot (last 5 rounds)": lambda r: sum(x["few_accuracy"] for x in r["rows"][-5:]) / 5,
    }
    print(tabulate(results, metrics, cells, out, "longtail"))
    comparisons = [(f"{a}, IF {f}", f"{b}, IF {f}") for f in args.imbalance.split(",")
                   for a, b in (("RedGrape", "FedAvg"), ("RedGrape", "CReFF"), ("CReFF", "FedAvg"))]
    paired = {k: metrics[k] for k in ("accuracy", "few-shot", "few-shot (last 5 rounds)")}
    print(paired_table(results, paired, comparisons, out, "longtail"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
