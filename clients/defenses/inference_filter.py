"""Inference-time input filters: the server screens test inputs and reports metrics after filtering.

An inference filter (``defense.inference_filter``) flags inputs it believes
triggered; the server then reports, besides the plain clean accuracy and ASR,

    CA_filtered  = |{x clean : not flagged(x), f(x) = y}| / |clean|        (a flagged clean input is an error)
    ASR_filtered = |{x triggered : not flagged(x), f(x) = target}| / |triggered|   (a flagged one is defended)

the definitions of PSIM's ``confidence.py`` (its "defense ASR").
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from clients.attacks.data_poison import triggered_logits
from fedsec.experiment import Experiment
from fedsec.registry import EVALUATION_METRICS, INFERENCE_FILTERS

# (experiment with the global model loaded, clean test logits, triggered test logits or None, device) -> metrics
InferenceFilter = Callable[[Experiment, torch.Tensor, "torch.Tensor | None", torch.device], dict[str, float]]
INFERENCE_FILTERS.register("none")(None)


@EVALUATION_METRICS.register("inference_filter")
def screened_evaluation(experiment: Experiment, logits: torch.Tensor, device: torch.device) -> dict[str, float]:
    """The metrics after ``defense.inference_filter`` screened the test inputs (none without a filter)."""
    screen = INFERENCE_FILTERS[experiment.cfg.defense.inference_filter]
    return {} if screen is None else screen(experiment, logits, triggered_logits(experiment, logits, device), device)


def filtered_metrics(clean_pred: torch.Tensor, clean_labels: torch.Tensor, clean_flagged: torch.Tensor,
                     triggered_pred: torch.Tensor, triggered_flagged: torch.Tensor, target: int,
                     prefix: str) -> dict[str, float]:
    """CA and ASR after filtering, and the flagged fractions, as ``{prefix}_accuracy`` etc."""
    return {
        f"{prefix}_accuracy": ((clean_pred == clean_labels) & ~clean_flagged).float().mean().item(),
        f"{prefix}_asr": ((triggered_pred == target) & ~triggered_flagged).float().mean().item(),
        f"{prefix}_flagged_clean": clean_flagged.float().mean().item(),
        f"{prefix}_flagged_triggered": triggered_flagged.float().mean().item(),
    }
