"""Benchmark of the study runner: the same study with one run at a time and with parallel trials.

    python simulations/bench_study.py                                          # defense_matrix_small.yaml
    python simulations/bench_study.py --study simulations/studies/defense_matrix.yaml --parallel 2

Runs the study twice into OUT/sequential and OUT/parallel (``--max-concurrent 1``
and ``--max-concurrent N``), then prints both wall times, the speedup, and whether
the two ``results.csv`` agree on every metric (determinism: a run's numbers do not
depend on what runs beside it). First it measures the machine's own ceilings: two
fixed single-threaded workloads, compute-bound (a pure-Python loop and small in-cache
matrix products) and memory-bound (streaming an array far larger than the caches), each
timed in one process alone and then in N processes at once; N x (time alone) / (time of
the N at once) is the most N parallel runs of that kind of work can gain on this
machine, whatever the study runner does. The third probe is the study's own work: its first
cell's first run (inline, one torch thread, after a warm-up run in the same process), so its
ceiling is what N runs of this study can gain with no Ray, Tune or report in the way.
Figures go to the "Studies" guide (docs/guide/studies.md).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


PROBES = {  # single-threaded workloads, each timed inside its process from the "go" line on
    "compute": """
import sys, time, torch
torch.set_num_threads(1)
a = torch.randn(96, 96)
print('ready', flush=True)
sys.stdin.readline()
t0 = time.perf_counter()
x = 0
for i in range(15_000_000):
    x += i % 7
for _ in range(20_000):
    a = torch.tanh(a @ a / 96)
print(time.perf_counter() - t0)
""",  # a Python loop and in-cache matrix products
    "memory": """
import sys, time, torch
torch.set_num_threads(1)
a = torch.randn(32_000_000)
print('ready', flush=True)
sys.stdin.readline()
t0 = time.perf_counter()
for _ in range(400):
    a.mul_(1.0000001)
print(time.perf_counter() - t0)
""",  # streaming 128 MB through memory, far beyond the caches
    "workload": """
import sys, time, torch
sys.path.insert(0, {root!r})
from pathlib import Path
from simulations.study import Study
from fedsec.app.inline import run_inline
study = Study.load({study!r}, validate=False)
torch.set_num_threads(max(1, int(study.resources.num_cpus)))  # as a trial does
cell, seed = study.cells()[0], study.seeds[0]
run_inline(study.config(cell, seed, Path({out!r}) / "warm-up"))  # imports, files read once per process
print('ready', flush=True)
sys.stdin.readline()
t0 = time.perf_counter()
run_inline(study.config(cell, seed, Path({out!r}) / "timed"))
print(time.perf_counter() - t0)
""",  # one run of the study, as a trial runs it
}


def machine_ceiling(n: int, probe: str, study: str, out: str) -> tuple[float, float, float]:
    """(seconds alone, seconds of the slowest of n at once, n x alone / slowest) for a probe workload,
    each timed inside its process (the interpreter's and torch's start-up and the workload probe's
    warm-up run excluded); the n processes start together once every one has said it is ready."""
    def run(copies: int) -> float:
        scripts = [PROBES[probe].format(root=str(ROOT), study=study, out=f"{out}/{probe}-{copies}-{i}")
                   for i in range(copies)]
        procs = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True) for script in scripts]
        for proc in procs:  # each has imported (and warmed up) and waits for the go line
            line = "start"
            while line and line.strip() != "ready":  # the warm-up run's own log lines come first
                line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {probe} probe ended before its timed part")
        for proc in procs:
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

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    ceilings = {}
    for probe in PROBES:
        alone, together, ceilings[probe] = machine_ceiling(args.parallel, probe, args.study, str(out / "probes"))
        print(f"machine ceiling ({probe}-bound probe): {alone:.2f} s alone, {together:.2f} s as {args.parallel} "
              f"processes at once: at most {ceilings[probe]:.2f}x from {args.parallel} parallel runs", flush=True)
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
          f"{seconds['sequential'] / seconds['parallel']:.2f}x (machine ceilings: "
          f"compute-bound {ceilings['compute']:.2f}x, "
          f"memory-bound {ceilings['memory']:.2f}x, this study's run {ceilings['workload']:.2f}x); "
          f"identical results: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
