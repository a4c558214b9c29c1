"""Real handwritten digits bundled with scikit-learn (1,797 images, 8x8, 10 classes)."""

from __future__ import annotations

import numpy as np
from datasets import Array3D, ClassLabel, Dataset, Features
from sklearn.datasets import load_digits

from fedsec.config import DataConfig
from fedsec.data.registry import DATASETS, IMAGE


@DATASETS.register("digits", traits=IMAGE)
def digits(cfg: DataConfig) -> tuple[Dataset, None]:
    """Images scaled to [0, 1] with shape (1, 8, 8)."""
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    features = Features(
        {"image": Array3D(shape=(1, 8, 8), dtype="float32"), "label": ClassLabel(names=[str(d) for d in range(10)])}
    )
    return Dataset.from_dict({"image": images, "label": bunch.target.tolist()}, features=features), None
