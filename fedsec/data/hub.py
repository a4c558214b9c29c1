"""Hugging Face datasets by name, and local CSV / JSON / parquet files.

These need the hub (or a local cache) and are never used by the offline
defaults or the tests' federated runs; ``csv``/``json``/``parquet`` read a
local file named by ``data.path`` with the columns ``data.text_column`` and
``data.label_column``. A file or hub dataset with ``instruction`` and ``output``
columns (Alpaca), or ``instruction``, ``context`` and ``response`` (Dolly), is
instruction-tuning data: ``input``/``context`` is optional (empty when absent)
and ``data.label_column`` names the category, if any (``category`` for Dolly;
without one every row is in one category). A file or hub dataset with ``source`` and
``target`` columns is parallel text (translation): ``data.label_column`` names each
row's language pair ``src-tgt``.
"""

from __future__ import annotations

from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset

from fedsec.config import ConfigError, DataConfig
from fedsec.data.registry import DATASETS, IMAGE, TEXT


def _standardise(ds: Dataset, text_column: str, label_column: str, source: str) -> Dataset:
    """Rename to ``text``/``image`` and ``label``; encode string labels as class ids."""
    columns = ds.column_names
    if {"instruction", "output"} <= set(columns) or {"instruction", "response"} <= set(columns):
        return _instructions(ds, label_column)
    if {"source", "target"} <= set(columns):
        return _parallel(ds, label_column, source)
    for needed in (text_column, label_column):
        if needed not in columns:
            raise ConfigError(f"{source}: column '{needed}' does not exist; columns are {columns}")
    data_column = "image" if text_column in ("img", "image") else "text"
    ds = ds.select_columns([text_column, label_column])
    if text_column != data_column:
        ds = ds.rename_column(text_column, data_column)
    if label_column != "label":
        ds = ds.rename_column(label_column, "label")
    if not isinstance(ds.features["label"], ClassLabel):
        ds = ds.class_encode_column("label")
    return ds


def _parallel(ds: Dataset, label_column: str, source: str) -> Dataset:
    """Translation rows: ``source``, ``target`` and the language pair ``src-tgt`` (``data.label_column``) as
    ``label`` and ``pair``."""
    if label_column not in ds.column_names:
        raise ConfigError(f"{source}: translation rows need the language pair (src-tgt) in data.label_column="
                          f"'{label_column}'; columns are {ds.column_names}")
    ds = ds.select_columns(["source", "target", label_column])
    if label_column != "label":
        ds = ds.rename_column(label_column, "label")
    ds = ds.map(lambda row: {"pair": str(row["label"])})
    if not isinstance(ds.features["label"], ClassLabel):
        ds = ds.class_encode_column("label")
    return ds


def _instructions(ds: Dataset, label_column: str) -> Dataset:
    """Keep ``instruction``, ``input`` (empty if absent), ``output`` and the category as ``label`` (Dolly's
    ``context`` and ``response`` are its ``input`` and ``output``)."""
    if "output" not in ds.column_names:
        ds = ds.rename_column("response", "output")
        if "context" in ds.column_names and "input" not in ds.column_names:
            ds = ds.rename_column("context", "input")
    if "input" not in ds.column_names:
        ds = ds.add_column("input", [""] * len(ds))
    if label_column in ds.column_names:
        ds = ds.select_columns(["instruction", "input", "output", label_column])
        if label_column != "label":
            ds = ds.rename_column(label_column, "label")
    else:
        ds = ds.select_columns(["instruction", "input", "output"]).add_column("label", ["all"] * len(ds))
    for column in ("instruction", "input", "output"):
        ds = ds.map(lambda row, c=column: {c: "" if row[c] is None else str(row[c])})
    if not isinstance(ds.features["label"], ClassLabel):
        ds = ds.class_encode_column("label")
    return ds


def _hub(name: str, text_column: str, label_column: str, *args: str) -> tuple[Dataset, Dataset | None]:
    loaded = datasets.load_dataset(name, *args)
    test_name = next((s for s in ("test", "validation") if s in loaded), None)
    train = _standardise(loaded["train"], text_column, label_column, name)
    test = _standardise(loaded[test_name], text_column, label_column, name) if test_name else None
    if test is not None and test.features["label"] != train.features["label"]:
        test = test.cast_column("label", train.features["label"])
    return train, test


@DATASETS.register("sst2", traits=TEXT)
def sst2(cfg: DataConfig) -> tuple[Dataset, Dataset | None]:
    """GLUE SST-2 (binary sentiment); its labelled validation split is the test split."""
    return _hub("glue", "sentence", "label", "sst2")


@DATASETS.register("ag_news", traits=TEXT)
def ag_news(cfg: DataConfig) -> tuple[Dataset, Dataset | None]:
    """AG News, four topics."""
    return _hub("ag_news", "text", "label")


@DATASETS.register("cifar10", traits=IMAGE)
def cifar10(cfg: DataConfig) -> tuple[Dataset, Dataset | None]:
    """CIFAR-10, 32x32 colour images."""
    return _hub("uoft-cs/cifar10", "img", "label")


@DATASETS.register("hf")
def hub_by_name(cfg: DataConfig) -> tuple[Dataset, Dataset | None]:
    """Any hub dataset or local dataset directory named by ``data.path``."""
    if not cfg.path:
        raise ConfigError("data.name='hf' needs data.path: a hub dataset id or a local directory")
    return _hub(cfg.path, cfg.text_column, cfg.label_column)


def _local(kind: str, cfg: DataConfig) -> tuple[Dataset, None]:
    path = Path(cfg.path)
    if not cfg.path or not path.is_file():
        raise ConfigError(f"data.path='{cfg.path}': no such {kind} file")
    try:
        loaded = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as err:  # the datasets library raises many types on bad files
        raise ConfigError(f"data.path='{cfg.path}': cannot read it as {kind}: {err}") from err
    return _standardise(loaded, cfg.text_column, cfg.label_column, str(path)), None


@DATASETS.register("csv")
def csv_file(cfg: DataConfig) -> tuple[Dataset, None]:
    """A local CSV file."""
    return _local("csv", cfg)


@DATASETS.register("json")
def json_file(cfg: DataConfig) -> tuple[Dataset, None]:
    """A local JSON or JSON-lines file."""
    return _local("json", cfg)


@DATASETS.register("parquet")
def parquet_file(cfg: DataConfig) -> tuple[Dataset, None]:
    """A local parquet file."""
    return _local("parquet", cfg)
