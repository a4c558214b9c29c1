"""Benchmark: plain data poisoning vs W2SAttack against a LoRA federation, over seeds.

    python simulations/bench_w2s.py                 # simulations/configs/w2s_text.yaml, 3 seeds

Both cells poison the same rows of the same client (``attack.poison_rate``);
they differ only in the malicious client's training step (cross-entropy vs
W2SAttack's distillation from a fully fine-tuned teacher). Writes
OUT/w2s.csv and OUT/w2s.md (final CA and ASR, best ASR, mean ± std) and prints the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulations.benchmark import Cell, bench_parser, bench_paths, run_cell, tabulate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "w2s_text.yaml")
    args = parser.parse_args(argv)
    config, out = bench_paths(args, "bench_w2s")
    cells = [
        Cell("no attack (rate 0)", ["attack.poison_rate=0"]),
        Cell("plain poisoning", ["attack.local_training=none"]),
        Cell("W2SAttack", ["attack.local_training=w2s_attack"]),
    ]
    results = {cell.label: [run_cell(config, cell, seed, out) for seed in range(args.seeds)] for cell in cells}
    metrics = {
        "final CA": lambda r: r["summary"]["final"]["accuracy"],
        "final ASR": lambda r: r["summary"]["final"]["asr"],
        "max ASR": lambda r: max(x["asr"] for x in r["rows"][1:]),
    }
    print(tabulate(results, metrics, cells, out, "w2s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
