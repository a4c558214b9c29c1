"""Local training and evaluation loops shared by clients and the server."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fedsec.config import ClientConfig

Batch = dict[str, torch.Tensor]
Loss = Callable[[nn.Module, Batch], torch.Tensor]


def device_for(num_gpus: float) -> torch.device:
    """CUDA when a GPU was granted (Ray sets CUDA_VISIBLE_DEVICES), else CPU."""
    return torch.device("cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device, mode: str) -> torch.dtype | None:
    """The autocast dtype for ``client.mixed_precision`` on ``device`` (None: float32).

    ``auto`` picks bfloat16 on a CUDA device that supports it, float16 on an older
    CUDA device and float32 on the CPU, where autocast rarely pays off.
    """
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def make_optimizer(params: list[nn.Parameter], cfg: ClientConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``client.optimizer``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def batches(data: Batch, batch_size: int, generator: torch.Generator | None = None) -> list[Batch]:
    """Split a dict of equally long tensors into batches (shuffled if a generator is given)."""
    n = len(data["labels"])
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return [{k: v[order[i : i + batch_size]] for k, v in data.items()} for i in range(0, n, batch_size)]


PAD_LABEL = -100  # target-token positions that are padding (seq2seq); ignored by loss and accuracy

# Per-sample tensors that travel with a batch but are not model inputs.
AUXILIARY_KEYS = frozenset({"labels", "target_labels", "row_index", "teacher_features", "teacher_logits"})


def model_inputs(batch: Batch) -> Batch:
    """The entries of ``batch`` that the model's ``forward`` takes."""
    return {k: v for k, v in batch.items() if k not in AUXILIARY_KEYS}


def _inputs(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) for k, v in model_inputs(batch).items()}


def loss_of(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Cross-entropy against ``labels``, or token-level against ``target_labels`` (seq2seq, padding ``PAD_LABEL``)."""
    if "target_labels" in batch:  # a model may cut trailing padding: its logits then cover the first positions
        labels = batch["target_labels"][:, : logits.shape[1]]
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=PAD_LABEL)
    return F.cross_entropy(logits, batch["labels"])


def cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The honest loss: cross-entropy of the model's logits (per class, or per token for seq2seq)."""
    return loss_of(model(**model_inputs(batch)), batch)


class StepHook:
    """Acts around every optimiser step of :func:`train`; override what the method needs.

    ``before_batch`` runs before the batch's forward pass (outside autocast),
    ``on_gradients`` after the backward pass with the true (unscaled) gradients in
    ``p.grad`` and before the optimiser step (Neurotoxin's projection, gradient
    clipping, RedGrape's prototype gradient), ``after_step`` after the step (a
    projected or extra update of the parameters, as PGD-style attacks do).
    """

    def before_batch(self, model: nn.Module, batch: Batch) -> None:
        """Called before the forward pass of ``batch`` (on the device)."""

    def on_gradients(self, model: nn.Module, batch: Batch) -> None:
        """Called with the batch's gradients, before the optimiser step."""

    def after_step(self, model: nn.Module, batch: Batch, lr: float) -> None:
        """Called after the optimiser step (``lr``: the step's learning rate)."""


class MaskGradients(StepHook):
    """Multiply the named parameters' gradients by 0/1 masks before every step (Neurotoxin)."""

    def __init__(self, mask: dict[str, torch.Tensor]) -> None:
        self.mask = mask
        self._placed: list[tuple[nn.Parameter, torch.Tensor]] | None = None

    def on_gradients(self, model: nn.Module, batch: Batch) -> None:
        if self._placed is None:  # the masks move to the parameters' device and dtype once
            self._placed = [(p, self.mask[n].to(p.device, p.dtype)) for n, p in model.named_parameters()
                            if n in self.mask]
        for p, mask in self._placed:
            if p.grad is not None:
                p.grad.mul_(mask)


def train(
    model: nn.Module,
    data: Batch,
    cfg: ClientConfig,
    device: torch.device,
    seed: int,
    proximal_mu: float = 0.0,
    loss_fn: Loss = cross_entropy,
    warmup: float | None = None,
    hooks: Sequence[StepHook] = (),
    generator: torch.Generator | None = None,
) -> float:
    """Train ``model`` in place for ``cfg.epochs`` on ``loss_fn``; return the mean training loss.

    ``loss_fn(model, batch)`` sees every key of ``data`` (on ``device``), so a
    training step may carry extra per-sample tensors (e.g. a teacher's outputs).
    With ``proximal_mu > 0`` the FedProx term mu/2 * ||w - w_global||^2 over
    the trainable parameters is added to every batch loss. ``warmup`` (a fraction
    of all steps) schedules the learning rate linearly up over those steps and
    linearly down to 0 after them, as ``transformers.get_linear_schedule_with_warmup``
    (``None``: constant). ``hooks`` act around every optimiser step, in order
    (:class:`StepHook`): every local training of fedsec is this loop, so a hook
    (Neurotoxin's gradient mask) composes with every training step. When float16
    loss scaling skips a step (inf gradients), the ``after_step`` hooks are skipped
    too. ``generator`` shuffles the batches (default: a fresh one seeded with ``seed``).
    """
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    anchors = [p.detach().clone() for p in params] if proximal_mu > 0 else []
    optimizer = make_optimizer(params, cfg)
    steps = cfg.epochs * -(-len(data["labels"]) // cfg.batch_size)
    schedule = None if warmup is None else torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(steps, warmup))
    dtype = autocast_dtype(device, cfg.mixed_precision)
    # float16 needs loss scaling against underflowing gradients; bfloat16 does not.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for _ in range(cfg.epochs):
        for batch in batches(data, cfg.batch_size, generator):
            batch = {k: v.to(device) for k, v in batch.items()}
            for hook in hooks:
                hook.before_batch(model, batch)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(model, batch)
            if anchors:
                loss = loss + proximal_mu / 2 * sum(((p - a) ** 2).sum() for p, a in zip(params, anchors))
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            if hooks:
                scaler.unscale_(optimizer)
                for hook in hooks:
                    hook.on_gradients(model, batch)
            lr, scale = optimizer.param_groups[0]["lr"], scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            if not scaler.is_enabled() or scaler.get_scale() >= scale:  # the step was taken
                for hook in hooks:
                    hook.after_step(model, batch, lr)
            if schedule is not None:
                schedule.step()
            total += loss.item() * len(batch["labels"])
            count += len(batch["labels"])
    return total / max(count, 1)


def linear_warmup(steps: int, warmup: float) -> Callable[[int], float]:
    """The learning-rate factor of ``get_linear_schedule_with_warmup`` with ``warmup * steps`` warm-up steps."""
    rise = max(1, int(warmup * steps))

    def factor(step: int) -> float:
        if step < rise:
            return step / rise
        return max(0.0, (steps - step) / max(1, steps - rise))

    return factor


@torch.no_grad()
def predict(model: nn.Module, data: Batch, batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits for every sample of ``data``."""
    model.to(device).eval()
    return torch.cat([model(**_inputs(b, device)).float().cpu() for b in batches(data, batch_size)])


def evaluate(model: nn.Module, data: Batch, batch_size: int, device: torch.device) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) on ``data``; per token (padding excluded) for token-level models,
    accumulated batch by batch (a causal LM's logits over a test set would not fit in memory)."""
    if "target_labels" not in data:
        logits = predict(model, data, batch_size, device)
        labels = data["labels"]
        return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()
    model.to(device).eval()
    loss, correct, tokens = 0.0, 0, 0
    with torch.no_grad():
        for batch in batches(data, batch_size):
            logits = model(**_inputs(batch, device)).float()
            labels = batch["target_labels"][:, : logits.shape[1]].to(device)
            real = labels != PAD_LABEL
            loss += F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD_LABEL,
                                    reduction="sum").item()
            correct += int((logits.argmax(-1)[real] == labels[real]).sum())
            tokens += int(real.sum())
    return loss / max(tokens, 1), correct / max(tokens, 1)
