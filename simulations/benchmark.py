"""Run a grid of experiments over seeds and tabulate them (shared by the bench_* scripts).

Each cell is a label plus ``--set`` overrides; every (cell, seed) is one
``simulations/run.py`` process writing to ``OUT/<label>/seed<k>/``. A finished
run (its ``summary.json`` exists) is not run again, so an interrupted
benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench_parser(doc: str, config: str) -> argparse.ArgumentParser:
    """The options every bench_* script shares: ``--config`` (a file in simulations/configs), ``--seeds``, ``--out``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "simulations" / "configs" / config))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None, help="default: outputs/<benchmark>_<config name>")
    return parser


def bench_paths(args: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """(config file, output directory, created) of a parsed :func:`bench_parser`."""
    config = Path(args.config)
    out = Path(args.out or ROOT / "outputs" / f"{name}_{config.stem}")
    out.mkdir(parents=True, exist_ok=True)
    return config, out


@dataclass
class Cell:
    """One row of the table: a label and the config overrides that define it."""

    label: str
    overrides: list[str] = field(default_factory=list)
    group: str = ""


def run_cell(config: Path, cell: Cell, seed: int, out: Path) -> dict:
    """Run (or reuse) one experiment; return its summary plus per-round rows."""
    run_dir = out / cell.label / f"seed{seed}"
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        args = [sys.executable, str(ROOT / "simulations" / "run.py"), "--config", str(config),
                "--out", str(run_dir), "--set", f"run.seed={seed}"]
        for item in cell.overrides:
            args += ["--set", item]
        t0 = time.time()
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{cell.label} seed {seed} failed:\n{proc.stderr[-3000:]}")
        print(f"  {cell.label:<28} seed {seed}: {time.time() - t0:5.1f} s", flush=True)
    summary = json.loads(summary_path.read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"summary": summary, "rows": rows}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def tabulate(
    results: dict[str, list[dict]], metrics: dict[str, callable], cells: list[Cell], out: Path, name: str
) -> str:
    """Write ``name.csv`` (one line per run) and ``name.md`` (mean ± std per cell); return the markdown."""
    with (out / f"{name}.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "cell", "seed", *metrics])
        for cell in cells:
            for seed, result in enumerate(results[cell.label]):
                writer.writerow([cell.group, cell.label, seed, *(f"{fn(result):.4f}" for fn in metrics.values())])
    header = "| " + " | ".join(["setting", *metrics]) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 1)]
    for cell in cells:
        stats = [mean_std([fn(r) for r in results[cell.label]]) for fn in metrics.values()]
        lines.append("| " + " | ".join([cell.label, *(f"{m:.3f} ± {s:.3f}" for m, s in stats)]) + " |")
    table = "\n".join(lines)
    (out / f"{name}.md").write_text(table + "\n")
    return table


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """Mean of the per-seed differences a - b, its 95% t confidence interval and the paired t-test p-value.

    Runs with the same seed share partition, client sampling and initialisation, so the
    per-seed difference removes what the seeds have in common.
    """
    from scipy import stats

    diff = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diff)
    if len(diff) < 2 or statistics.stdev(diff) == 0:  # no spread to estimate: no interval, no test
        return mean, math.nan, math.nan, math.nan
    half = stats.t.ppf(0.975, len(diff) - 1) * statistics.stdev(diff) / len(diff) ** 0.5
    return mean, mean - half, mean + half, float(stats.ttest_rel(a, b).pvalue)


def paired_table(results: dict[str, list[dict]], metrics: dict[str, callable],
                 comparisons: list[tuple[str, str]], out: Path, name: str) -> str:
    """``name_paired.md``: for each (cell, baseline) and metric, the paired difference with its 95% CI,
    p-value, and "not distinguishable" where the interval covers 0."""
    lines = ["| comparison | metric | mean difference | 95% CI | p (paired t) | verdict |", "|---|---|---|---|---|---|"]
    for cell, baseline in comparisons:
        for metric, fn in metrics.items():
            mean, low, high, p = paired_difference([fn(r) for r in results[cell]], [fn(r) for r in results[baseline]])
            verdict = ("n/a (no spread over seeds)" if math.isnan(low) else
                       "not distinguishable" if low <= 0 <= high else ("higher" if low > 0 else "lower"))
            lines.append(f"| {cell} − {baseline} | {metric} | {mean:+.3f} | [{low:+.3f}, {high:+.3f}] | {p:.3f} | "
                         f"{verdict} |")
    table = "\n".join(lines)
    (out / f"{name}_paired.md").write_text(table + "\n")
    return table
