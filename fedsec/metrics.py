"""Per-round results on disk: ``metrics.jsonl``, ``summary.json``, ``metrics.png``, TensorBoard events.

Each round's row is appended, flushed and fsynced as soon as it is known, so a
crash never loses a completed round. Every numeric entry of a row is also a
TensorBoard scalar (tag = the row key, step = the round) in the run's directory,
so ``tensorboard --logdir`` on a run, or on a study's directory (one run per
cell and seed), shows the curves.

The console table, the final line and ``metrics.png`` show the core columns
(accuracy, loss, bytes, time) plus every *headline* metric present in the rows: a
method declares the metrics that carry its result next to the code that computes
them (:func:`headline`: ASR under attack, BLEU for translation, shot accuracies
for long tails, GSI and server lr for FedGLAD, TP/FP for detection defenses).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class Headline:
    """A metric worth showing: its row ``key`` and the ``label`` of its column, plot axis and final line."""

    key: str
    label: str


HEADLINES: dict[str, Headline] = {}


def headline(key: str, label: str) -> None:
    """Declare ``key`` a headline metric (shown in the console table, final line and plot when present)."""
    HEADLINES[key] = Headline(key, label)


# the core columns: (key, axis label); bytes are shown in MB
CORE_BEFORE = (("accuracy", "accuracy"), ("loss", "loss"))
CORE_AFTER = (("bytes_up", "MB up per round"), ("round_seconds", "seconds per round"))
TABLE_AFTER = ("bytes_up", "bytes_down", "failures", "round_seconds")
# a modality whose `accuracy` is not the label accuracy
ACCURACY_LABEL = {"translation": "token accuracy", "instruction": "response token accuracy"}


def shown(rows: list[Row]) -> list[Headline]:
    """The declared headline metrics present in ``rows``, in declaration order."""
    return [h for h in HEADLINES.values() if any(h.key in r for r in rows)]


def final_line(summary: dict[str, Any], rows: list[Row], modality: str = "") -> str:
    """``final accuracy .. best .. (round ..)`` followed by each headline metric's final value."""
    final = summary["final"]
    name = ACCURACY_LABEL.get(modality, "accuracy")
    best = f"best {summary['best_accuracy']:.4f} (round {summary['best_round']})"
    parts = [f"final {name} {final['accuracy']:.4f}  {best}"]
    parts += [f"{h.label} {_fmt(final[h.key])}" for h in shown(rows) if isinstance(final.get(h.key), (int, float))]
    return "  ".join(parts)


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
    """One panel per shown metric (core and headline), against the round, each axis labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [*CORE_BEFORE, *((h.key, h.label) for h in shown(rows)), *CORE_AFTER]
    panels = [(k, label) for k, label in panels if any(isinstance(r.get(k), (int, float)) for r in rows)]
    columns = min(4, len(panels))
    lines = -(-len(panels) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3.2 * lines), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels):
        points = [(r["round"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        scale = 1e6 if key.startswith("bytes") else 1.0
        ax.plot([p[0] for p in points], [p[1] / scale for p in points], marker="o")
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(rows: list[Row]) -> str:
    """A plain-text table of the rows (printed at the end of a run): core columns and headline metrics."""
    keys = ["accuracy", "loss", *(h.key for h in shown(rows)), *TABLE_AFTER]
    cols = ["round"] + [k for k in keys if any(k in r for r in rows)]
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda items: "  ".join(s.rjust(w) for s, w in zip(items, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(row) for row in cells])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
