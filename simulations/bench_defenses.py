"""Benchmark: attacks x defenses, over seeds; CSV, markdown tables and a heat map.

    python simulations/bench_defenses.py                  # simulations/configs/matrix_digits.yaml, 3 seeds
    python simulations/bench_defenses.py --attacks none,backdoor --defenses fedavg,krum --seeds 1

Every (attack, defense, seed) is one federated run on the config's backend,
run in this process and written to OUT/<attack>/<defense>/seed<k>/; finished
runs are reused, so an interrupted matrix resumes. Writes OUT/matrix.csv (one
line per run: final CA and ASR, clients the defense rejected), OUT/matrix.md
(mean ± std of final CA and ASR per cell) and OUT/matrix.png (heat maps).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent

# attack name -> overrides. The backdoor is BadNet with a boosted update; the rest are Byzantine.
ATTACKS: dict[str, list[str]] = {
    "none": ["attack.poison_rate=0"],
    "backdoor": ["attack.model_poison=boost"],
    "sign_flip": ["attack.data_poison=none", "attack.model_poison=sign_flip", "attack.scale=10"],
    "gaussian": ["attack.data_poison=none", "attack.model_poison=gaussian", "gaussian.noise_std=3"],
    "ipm": ["attack.data_poison=none", "attack.omniscient=ipm", "attack.scale=10"],
    "alie": ["attack.data_poison=none", "attack.omniscient=alie", "attack.scale=1.5"],
    "min_max": ["attack.data_poison=none", "attack.omniscient=min_max"],
}
# defense name -> overrides (server rules, server wrappers, client defenses).
DEFENSES: dict[str, list[str]] = {
    "fedavg": [],
    "krum": ["strategy.name=krum"],
    "multikrum": ["strategy.name=multikrum"],
    "bulyan": ["strategy.name=bulyan"],
    "median": ["strategy.name=median"],
    "trimmed_mean": ["strategy.name=trimmed_mean"],
    "rfa": ["strategy.name=rfa"],
    "norm_clip": ["strategy.defenses=norm_clip"],
    "flame": ["strategy.defenses=flame"],
    "fltrust": ["strategy.defenses=fltrust"],
    "foolsgold": ["strategy.defenses=foolsgold"],
    "w2s_defense": ["defense.local_training=w2s_defense"],
}


def run_one(config: Path, overrides: list[str], run_dir: Path) -> list[dict]:
    """One federated run (reused if its summary exists); its metric rows."""
    from fedsec.app.inline import run_inline
    from fedsec.config import Config

    if not (run_dir / "summary.json").is_file():
        cfg = Config.load(config, [*overrides, f"run.out_dir={run_dir}"])
        run_inline(cfg)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def heat_map(
    means: dict[str, dict[tuple[str, str], float]], attacks: list[str], defenses: list[str], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(means), figsize=(6 * len(means), 0.5 * len(defenses) + 2))
    for ax, (metric, values) in zip(np.atleast_1d(axes), means.items()):
        attacks = [a for a in attacks if any((a, d) in values for d in defenses)]  # ASR: backdoors only
        grid = np.array([[values.get((a, d), np.nan) for a in attacks] for d in defenses])
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis" if metric == "CA" else "magma_r")
        ax.set_xticks(range(len(attacks)), attacks, rotation=45, ha="right")
        ax.set_yticks(range(len(defenses)), defenses)
        for i in range(len(defenses)):
            for j in range(len(attacks)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_title(f"final {metric} (mean over seeds)")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "simulations" / "configs" / "matrix_digits.yaml"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--defenses", default=",".join(DEFENSES))
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_defenses"))
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    attacks, defenses, out = args.attacks.split(","), args.defenses.split(","), Path(args.out)
    results: dict[tuple[str, str], list[dict]] = {}
    for attack in attacks:
        for defense in defenses:
            for seed in range(args.seeds):
                t0 = time.time()
                rows = run_one(Path(args.config), [*ATTACKS[attack], *DEFENSES[defense], f"run.seed={seed}"],
                               out / attack / defense / f"seed{seed}")
                results.setdefault((attack, defense), []).append(rows[-1])
                print(f"  {attack:<10} {defense:<13} seed {seed}: CA {rows[-1]['accuracy']:.3f} "
                      f"ASR {rows[-1].get('asr', float('nan')):.3f}  {time.time() - t0:5.1f} s", flush=True)
    with (out / "matrix.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["attack", "defense", "seed", "ca", "asr", "rejected_last_round"])
        for (attack, defense), finals in results.items():
            for seed, row in enumerate(finals):
                writer.writerow([attack, defense, seed, f"{row['accuracy']:.4f}", f"{row.get('asr', float('nan')):.4f}",
                                 " ".join(map(str, row.get("defense_rejected", [])))])
    means: dict[str, dict[tuple[str, str], float]] = {"CA": {}, "ASR": {}}
    cells = {}
    for key, finals in results.items():
        for metric, field in (("CA", "accuracy"), ("ASR", "asr")):
            values = [r[field] for r in finals if field in r]
            if values:
                means[metric][key] = statistics.fmean(values)
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                cells[(metric, *key)] = f"{means[metric][key]:.3f} ± {std:.3f}"
    lines = []
    for metric in ("CA", "ASR"):
        shown = [a for a in attacks if (metric, a, defenses[0]) in cells]
        lines += [f"**final {metric}** (mean ± std over {args.seeds} seeds)", "",
                  "| defense | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
        lines += ["| " + " | ".join([d, *(cells[(metric, a, d)] for a in shown)]) + " |" for d in defenses]
        lines.append("")
    (out / "matrix.md").write_text("\n".join(lines))
    heat_map(means, attacks, defenses, out / "matrix.png")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
