"""InsertSent backdoor (Dai et al., 2019, "A Backdoor Attack Against LSTM-Based Text
Classification Systems"): a fixed sentence, default "I watched this 3D movie",
inserted at a random word position."""

from __future__ import annotations

import numpy as np

from clients.attacks.data_poison import DATA_POISONS, TriggerPoison
from fedsec.config import ConfigError
from fedsec.registry import Traits

DEFAULT_SENTENCE = "I watched this 3D movie"


@DATA_POISONS.register("insertsent", traits=Traits(modalities=frozenset({"text"})))
class InsertSent(TriggerPoison):
    """A whole sentence as the trigger (text datasets only)."""

    def apply(self, row: dict, rng: np.random.Generator, part: int | None) -> dict:
        if "text" not in row:
            raise ConfigError("attack.data_poison='insertsent' needs a text dataset")
        tokens = row["text"].split()
        at = int(rng.integers(0, len(tokens) + 1))
        return {**row, "text": " ".join(tokens[:at] + [self.cfg.trigger or DEFAULT_SENTENCE] + tokens[at:])}
