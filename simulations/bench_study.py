"""Benchmark of the study runner: the same study with one run at a time and with parallel trials.

    python simulations/bench_study.py                                          # defense_matrix_small.yaml
    python simulations/bench_study.py --study simulations/studies/defense_matrix.yaml --parallel 2

Runs the study twice into OUT/sequential and OUT/parallel (``--max-concurrent 1``
and ``--max-concurrent N``), then prints both wall times, the speedup, and whether
the two ``results.csv`` agree on every metric (determinism: a run's numbers do not
depend on what runs beside it). Figures go to the "Studies" guide (docs/guide/studies.md).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(ROOT / "simulations" / "studies" / "defense_matrix_small.yaml"))
    parser.add_argument("--parallel", type=int, default=2, help="concurrent runs of the parallel pass")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_study"))
    args = parser.parse_args(argv)
    import pandas as pd

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    seconds, frames = {}, {}
    for name, concurrent in (("sequential", 1), ("parallel", args.parallel)):
        t0 = time.time()
        proc = subprocess.run([sys.executable, str(ROOT / "simulations" / "study.py"), args.study, "--out",
                               str(out / name), "--max-concurrent", str(concurrent)], cwd=ROOT)
        if proc.returncode:
            return proc.returncode
        seconds[name] = time.time() - t0
        frames[name] = pd.read_csv(out / name / "results.csv")
    same = frames["sequential"].equals(frames["parallel"])
    runs = len(frames["sequential"])
    print(f"\n{Path(args.study).name}: {runs} runs; one at a time {seconds['sequential']:.0f} s, "
          f"{args.parallel} at a time {seconds['parallel']:.0f} s: speedup "
          f"{seconds['sequential'] / seconds['parallel']:.2f}x; identical results: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
