"""Device selection and mixed precision, checked on the CPU (CI has no GPU).

On a GPU machine Ray grants each client ``federation.num_gpus`` of a GPU (e.g. 0.25:
four clients share one) and sets ``CUDA_VISIBLE_DEVICES``; the client then trains on
``cuda`` under the autocast dtype chosen here.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsec.config import ClientConfig
from fedsec.training import autocast_dtype, device_for, train


@pytest.mark.parametrize(("num_gpus", "cuda", "expected"), [
    (0.0, True, "cpu"),     # no GPU share asked for: CPU even on a GPU machine
    (0.25, True, "cuda"),   # a fractional share: the GPU Ray made visible
    (1.0, False, "cpu"),    # asked for a GPU but none is visible: fall back to CPU
])
def test_device_follows_the_granted_gpu_share(monkeypatch, num_gpus, cuda, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert device_for(num_gpus).type == expected


@pytest.mark.parametrize(("device", "mode", "bf16_ok", "expected"), [
    ("cpu", "auto", True, None),
    ("cuda", "auto", True, torch.bfloat16),
    ("cuda", "auto", False, torch.float16),
    ("cuda", "off", True, None),
    ("cpu", "bf16", False, torch.bfloat16),
    ("cuda", "fp16", True, torch.float16),
])
def test_autocast_dtype(monkeypatch, device, mode, bf16_ok, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert autocast_dtype(torch.device(device), mode) == expected


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.out = nn.Linear(8, 32), nn.Linear(32, 2)
        self.seen: set[torch.dtype] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x)
        self.seen.add(h.dtype)
        return self.out(torch.relu(h))


@pytest.mark.parametrize(("mode", "compute_dtype"), [("off", torch.float32), ("bf16", torch.bfloat16),
                                                     ("fp16", torch.float16)])
def test_training_runs_in_the_chosen_precision(mode, compute_dtype) -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    data = {"x": x, "labels": (x[:, 0] > 0).long()}
    model = _Net()
    cfg = ClientConfig(epochs=1, batch_size=32, optimizer="adam", lr=0.01, mixed_precision=mode)
    first = train(model, data, cfg, torch.device("cpu"), seed=0)
    for _ in range(4):
        last = train(model, data, cfg, torch.device("cpu"), seed=0)
    assert model.seen == {compute_dtype}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert last < 0.5 * first
