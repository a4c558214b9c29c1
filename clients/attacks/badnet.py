"""BadNet backdoor (Gu et al., 2017 "BadNets"; rare-word variant of Kurita et al., 2020).

Text: the trigger words (default ``cf mn bb``) are inserted at random
positions. Images: a square patch of maximal intensity in the bottom-right
corner. With ``attack.dba_parts = K > 1`` the trigger is split across the
colluding malicious clients (DBA, Xie et al., ICLR 2020, "DBA: Distributed
Backdoor Attacks against Federated Learning"): client k of the malicious set
inserts only part k mod K (words k, k+K, ...; patch pixels likewise), while the
server measures ASR with the full trigger.
"""

from __future__ import annotations

import numpy as np

from clients.attacks.data_poison import DATA_POISONS, TriggerPoison, insert_words
from fedsec.registry import CLASSIFICATION, Traits

DEFAULT_WORDS = "cf,mn,bb"
PATCH = 3  # side of the square image trigger, in pixels


@DATA_POISONS.register("badnet", traits=Traits(modalities=CLASSIFICATION))
class BadNet(TriggerPoison):
    """Rare-word (text) or pixel-patch (image) trigger, optionally distributed."""

    def words(self, part: int | None) -> list[str]:
        words = [w.strip() for w in (self.cfg.trigger or DEFAULT_WORDS).split(",") if w.strip()]
        return words if part is None else words[part % self.cfg.dba_parts :: self.cfg.dba_parts]

    def pixels(self, height: int, width: int, part: int | None) -> list[tuple[int, int]]:
        square = [(height - 1 - r, width - 1 - c) for r in range(PATCH) for c in range(PATCH)]
        return square if part is None else square[part % self.cfg.dba_parts :: self.cfg.dba_parts]

    def apply(self, row: dict, rng: np.random.Generator, part: int | None) -> dict:
        if "text" in row:
            return {**row, "text": insert_words(row["text"], self.words(part), rng)}
        image = np.array(row["image"], dtype=np.float32)
        peak = 1.0 if image.max() <= 1.0 else 255.0
        for r, c in self.pixels(image.shape[-2], image.shape[-1], part):
            image[..., r, c] = peak
        return {**row, "image": image.tolist()}
