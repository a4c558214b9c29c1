"""Per-round results on disk: ``metrics.jsonl``, ``summary.json``, ``metrics.png``, TensorBoard events.

Each round's row is appended, flushed and fsynced as soon as it is known, so a
crash never loses a completed round. Every numeric entry of a row is also a
TensorBoard scalar (tag = the row key, step = the round) in the run's directory,
so ``tensorboard --logdir`` on a run, or on a study's directory (one run per
cell and seed), shows the curves.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

Row = dict[str, Any]

PLOTTED = ("accuracy", "loss", "bytes_up", "round_seconds")


class MetricsWriter:
    """Appends round rows and writes the summary and plot at the end."""

    def __init__(self, out_dir: str | Path, keep_rounds: int | None = None) -> None:
        """Start ``metrics.jsonl`` afresh, or keep its rows up to ``keep_rounds`` (resume)."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / "metrics.jsonl"
        self.rows: list[Row] = []
        if keep_rounds is not None and self.path.is_file():
            self.rows = [r for r in read_rows(self.path) if r["round"] <= keep_rounds]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        (self.out_dir / "summary.json").unlink(missing_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run drops the events of the rounds it repeats
        self.events = SummaryWriter(str(self.out_dir), purge_step=None if keep_rounds is None else keep_rounds + 1)

    def append(self, row: Row) -> None:
        """Write one round's row durably."""
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row, sort_keys=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "round":
                self.events.add_scalar(key, value, global_step=int(row["round"]))
        self.events.flush()

    def summary(self, wall_seconds: float) -> dict[str, Any]:
        """Final and best metrics, totals, wall time."""
        trained = [r for r in self.rows if r["round"] > 0]
        final = self.rows[-1] if self.rows else {}
        best = max(self.rows, key=lambda r: r.get("accuracy", -math.inf), default={})
        return {
            "rounds": len(trained),
            "final": final,
            "best_accuracy": best.get("accuracy"),
            "best_round": best.get("round"),
            "bytes_up_total": sum(r.get("bytes_up", 0) for r in trained),
            "bytes_down_total": sum(r.get("bytes_down", 0) for r in trained),
            "failures_total": sum(r.get("failures", 0) for r in trained),
            "wall_seconds": wall_seconds,
        }

    def finish(self, wall_seconds: float) -> dict[str, Any]:
        """Write ``summary.json`` and ``metrics.png``; return the summary."""
        summary = self.summary(wall_seconds)
        self.events.close()
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        plot(self.rows, self.out_dir / "metrics.png")
        return summary


def read_rows(path: Path) -> list[Row]:
    """The rows of a ``metrics.jsonl``; a line cut short by a crash is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot(rows: list[Row], path: Path) -> None:
    """One panel per plotted metric, against the round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in PLOTTED if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r["round"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_xlabel("round")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(
    rows: list[Row],
    keys: tuple[str, ...] = (
        "accuracy", "loss", "asr", "gsi", "server_lr", "bytes_up", "bytes_down", "failures", "round_seconds"
    ),
) -> str:
    """A plain-text table of the rows (printed at the end of a run)."""
    cols = ["round"] + [k for k in keys if any(k in r for r in rows)]
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda items: "  ".join(s.rjust(w) for s, w in zip(items, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(row) for row in cells])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
