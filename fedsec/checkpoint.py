"""Per-round checkpoints: global tensors and the whole strategy object.

Flower's Message-API strategies (and fedsec's) keep their state as plain
attributes — FedAvgM's momentum, FedAdam's moments, FedGLAD's running means —
so the strategy object is pickled as it stands. The file is replaced
atomically after each round's metrics row is on disk, so a run killed at any
moment resumes from its last completed round.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import Strategy

FILENAME = "checkpoint.pkl"


@dataclass
class Checkpoint:
    """The state after ``round`` completed rounds."""

    round: int
    arrays: ArrayRecord
    strategy: Strategy

    def save(self, out_dir: Path) -> None:
        """Write ``out_dir/checkpoint.pkl`` atomically."""
        payload = {
            "round": self.round,
            "arrays": {k: a.numpy() for k, a in self.arrays.items()},
            "strategy": self.strategy,
        }
        tmp = out_dir / (FILENAME + ".tmp")
        with tmp.open("wb") as f:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_dir / FILENAME)

    @classmethod
    def load(cls, out_dir: Path) -> Checkpoint:
        """Read the checkpoint of a run directory (only load checkpoints you wrote yourself)."""
        path = out_dir / FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint in {out_dir}: nothing to resume")
        with path.open("rb") as f:
            payload = pickle.load(f)  # noqa: S301 (fedsec's own output)
        arrays = ArrayRecord({k: Array(np.asarray(v)) for k, v in payload["arrays"].items()})
        return cls(round=int(payload["round"]), arrays=arrays, strategy=payload["strategy"])
