"""Benchmark: Fed-MNMT clustering modes (none / random / family / gradient) over seeds.

    python simulations/bench_mnmt.py      # simulations/configs/mnmt.yaml, 3 seeds

Every cell trains the same adapters on the same frozen backbone and language
pairs; they differ in ``fedmnmt.clustering``. Writes OUT/mnmt.csv and
OUT/mnmt.md (final macro and micro BLEU, macro BLEU averaged over the last 3
rounds, adapter bytes per round and the traffic saved against sending the full
model, mean ± std) and prints the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulations.benchmark import Cell, bench_parser, bench_paths, paired_table, run_cell, tabulate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "mnmt.yaml")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    config, out = bench_paths(args, "bench_mnmt")
    cells = [Cell(mode, [f"fedmnmt.clustering={mode}", f"run.num_rounds={args.rounds}"])
             for mode in ("none", "random", "family", "gradient")]
    results = {cell.label: [run_cell(config, cell, seed, out) for seed in range(args.seeds)] for cell in cells}
    final = lambda key: lambda r: r["summary"]["final"][key]  # noqa: E731
    metrics = {
        "BLEU macro": final("bleu_macro"),
        "BLEU micro": final("bleu_micro"),
        "BLEU macro (last 3 rounds)": lambda r: sum(x["bleu_macro"] for x in r["rows"][-3:]) / 3,
        "MB up per round": lambda r: r["rows"][-1]["bytes_up"] / 1e6,
        "traffic saved vs full model (%)": lambda r: 100 * (
            1 - (r["rows"][-1]["bytes_up"] + r["rows"][-1]["bytes_down"]) / r["rows"][-1]["bytes_full_model"]
        ),
    }
    print(tabulate(results, metrics, cells, out, "mnmt"))
    comparisons = [("family", "random"), ("gradient", "random"), ("random", "none"), ("family", "none")]
    print(paired_table(results, {k: metrics[k] for k in ("BLEU macro", "BLEU macro (last 3 rounds)")},
                       comparisons, out, "mnmt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
