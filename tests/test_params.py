"""What travels: PEFT-only tensors, round trips, byte counts, rejection of bad updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from fedsec.config import Config, DataConfig
from fedsec.data import load_splits
from fedsec.models import build_model
from fedsec.params import check_arrays, get_arrays, payload_bytes, set_arrays, travelling_keys


@pytest.fixture(scope="module")
def text_splits():
    return load_splits(DataConfig(name="tweets_polarity", train_size=200, test_size=50), seed=0)


def _model(splits, **model):
    cfg = Config()
    for key, value in model.items():
        cfg.set(f"model.{key}", value)
    return build_model(cfg.model, cfg.data, splits, seed=0)


def test_only_lora_and_head_travel(text_splits) -> None:
    model = _model(text_splits, name="tiny-bert", peft="lora")
    keys = travelling_keys(model)
    assert keys and all("lora_" in k or "classifier" in k for k in keys)
    assert any("lora_A" in k for k in keys) and any("classifier" in k for k in keys)
    arrays = get_arrays(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    # serialized float32 tensors: 4 bytes per value plus a small .npy header each
    assert 4 * trainable <= payload_bytes(arrays) <= 4 * trainable + 256 * len(keys)
    assert trainable < total / 10


def test_minilm_lora_payload_is_small(text_splits) -> None:
    model = _model(text_splits, name="minilm", peft="lora")
    arrays = get_arrays(model)
    full = sum(p.numel() * 4 for p in model.parameters())
    assert payload_bytes(arrays) < 0.02 * full  # ~0.3 MB of ~90 MB


@pytest.mark.parametrize("method", ["loha", "lokr", "ia3"])
def test_other_peft_methods_train_a_subset(text_splits, method: str) -> None:
    model = _model(text_splits, name="tiny-bert", peft=method)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.parameters()) / 5


def test_full_model_travels_for_cnn() -> None:
    splits = load_splits(DataConfig(name="digits", test_size=0), seed=0)
    model = _model(splits, name="cnn", peft="none")
    assert travelling_keys(model) == list(model.state_dict().keys())


def test_round_trip(text_splits) -> None:
    a = _model(text_splits, name="tiny-bert", peft="lora")
    b = _model(text_splits, name="tiny-bert", peft="lora")
    with torch.no_grad():
        for p in a.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    set_arrays(b, get_arrays(a))
    for x, y in zip(get_arrays(a).values(), get_arrays(b).values()):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_bad_updates_are_named(text_splits) -> None:
    ref = get_arrays(_model(text_splits, name="tiny-bert", peft="lora"))
    key = next(iter(ref.keys()))
    nan = ArrayRecord({k: Array(np.full_like(v.numpy(), np.nan) if k == key else v.numpy()) for k, v in ref.items()})
    assert "NaN or inf" in check_arrays(nan, ref)
    wrong = ArrayRecord({k: Array(np.zeros((3, 3), np.float32) if k == key else v.numpy()) for k, v in ref.items()})
    assert "has shape (3, 3)" in check_arrays(wrong, ref)
    missing = ArrayRecord({k: v for k, v in ref.items() if k != key})
    assert "keys differ" in check_arrays(missing, ref)
    assert check_arrays(ref, ref) is None
    with pytest.raises(ValueError):
        set_arrays(_model(text_splits, name="tiny-bert", peft="lora"), nan)
