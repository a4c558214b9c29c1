"""Label flipping (Byzantine data poisoning; e.g. Tolpegin et al., ESORICS 2020):
a ``poison_rate`` fraction of the client's rows get label C - 1 - y."""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from clients.attacks.data_poison import DATA_POISONS, DataPoison
from fedsec.data import labels_of
from fedsec.registry import CLASSIFICATION, Traits


@DATA_POISONS.register("label_flip", traits=Traits(modalities=CLASSIFICATION))
class LabelFlip(DataPoison):
    """y -> C - 1 - y on the chosen rows; no trigger, so no ASR."""

    def poison(self, ds: Dataset) -> Dataset:
        rng = np.random.default_rng(self.seed)
        count = int(round(self.cfg.poison_rate * len(ds)))
        labels = labels_of(ds)
        chosen = rng.choice(len(ds), count, replace=False)
        labels[chosen] = self.num_classes - 1 - labels[chosen]
        return ds.remove_columns("label").add_column("label", labels.tolist(), feature=ds.features["label"])
