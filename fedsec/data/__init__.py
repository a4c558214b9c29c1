"""Datasets (registry + offline defaults) and client partitions."""

from datasets import disable_progress_bars

from fedsec.data import digits, europarl, hub, instructions, multilingual, tweets  # noqa: F401  (register the loaders)
from fedsec.data.partition import longtail_counts, make_longtail, partition
from fedsec.data.registry import DATASETS, Splits, labels_of, load_splits

disable_progress_bars()

__all__ = ["DATASETS", "Splits", "labels_of", "load_splits", "partition", "longtail_counts", "make_longtail"]
