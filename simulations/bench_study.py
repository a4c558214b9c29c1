"""Benchmark of the study runner: the same study with one run at a time and with parallel trials.

    python simulations/bench_study.py                                          # defense_matrix_small.yaml
    python simulations/bench_study.py --study simulations/studies/defense_matrix.yaml --parallel 2

Runs the study twice into OUT/sequential and OUT/parallel (``--max-concurrent 1``
and ``--max-concurrent N``), then prints both wall times, the speedup, and whether
the two ``results.csv`` agree on every metric (determinism: a run's numbers do not
depend on what runs beside it). First it measures the machine's own ceiling: a fixed
single-threaded workload (a pure-Python loop and small in-cache matrix products, no
I/O, no shared data) timed in one process alone and then in N processes at once;
N x (time alone) / (time of the N at once) is the most any N parallel runs can gain on
this machine, whatever the study runner does. Figures go to the "Studies" guide
(docs/guide/studies.md).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


PROBE = """
import sys, time, torch
torch.set_num_threads(1)
a = torch.randn(96, 96)
sys.stdin.readline()
t0 = time.perf_counter()
x = 0
for i in range(15_000_000):
    x += i % 7
for _ in range(20_000):
    a = torch.tanh(a @ a / 96)
print(time.perf_counter() - t0)
"""


def machine_ceiling(n: int) -> tuple[float, float, float]:
    """(seconds alone, seconds of the slowest of n at once, n x alone / slowest) for the probe workload,
    each timed inside its process (the interpreter's and torch's start-up excluded); the n
    processes start together only once every one has imported torch."""
    def run(copies: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True) for _ in range(copies)]
        for proc in procs:  # all imported (each waits for this line), then all start
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return max(float(proc.communicate()[0].split()[-1]) for proc in procs)

    alone, together = run(1), run(n)
    return alone, together, n * alone / together


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(ROOT / "simulations" / "studies" / "defense_matrix_small.yaml"))
    parser.add_argument("--parallel", type=int, default=2, help="concurrent runs of the parallel pass")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_study"))
    args = parser.parse_args(argv)
    import pandas as pd

    alone, together, ceiling = machine_ceiling(args.parallel)
    print(f"machine ceiling: the probe takes {alone:.2f} s alone and {together:.2f} s as {args.parallel} processes "
          f"at once: at most {ceiling:.2f}x from {args.parallel} parallel runs", flush=True)
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
          f"{seconds['sequential'] / seconds['parallel']:.2f}x (machine ceiling {ceiling:.2f}x); "
          f"identical results: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
