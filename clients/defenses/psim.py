"""PSIM, the poisoned-sample identification module.

Paper: S. Zhao, L. Gan, L. A. Tuan, J. Fu, L. Lyu, M. Jia, J. Wen, "Defending
Against Weight-Poisoning Backdoor Attacks for Parameter-Efficient Fine-Tuning"
(NAACL Findings 2024); code: github.com/shuaizhao95/PSIM (``badmodel.py``,
``confidence.py``).

Threat model: a weight-poisoned released model (``attack.release=weight_poison``,
``clients/attacks/weight_poison.py``) adapted with PEFT. A backdoored model keeps
answering triggered inputs with high confidence when only a small P-tuning
module in front of it is fitted to labels drawn uniformly at random: the module
makes the model hesitant on clean inputs but cannot undo the trigger's shortcut.
The probe, as the official ``badmodel.py``: peft's
``PromptEncoderConfig(task_type=SEQ_CLS, num_virtual_tokens=psim.tokens (5),
encoder_hidden_size=128)`` (an MLP prompt encoder; peft also trains the
classification head) on the model to be screened (PEFT adapters merged), 1 epoch
(``psim.epochs``) at ``psim.lr`` (2e-5) with a 6 % linear warm-up,
batch 32, on the defender's task rows with uniformly random labels. The probe's
randomness (its labels, batch order, prompt-encoder initialisation and dropout)
is drawn from its own seed in a forked torch RNG (the CPU's and every CUDA
device's, restored after), so a screen does not depend on what used the global
RNG before it and leaves it as it was. The server's seed is ``run.seed`` and
``psim.probe_seed``, the same every round (rounds differ by the screened model
only); a defended client's is its per-round training seed (``run.seed``, round,
partition id) and ``psim.probe_seed``. On a weight-poisoned MiniLM release one
probe draw can flag none of the triggered inputs where others flag > 90 %
(docs/evidence.md, ``evidence_psim_probe_seed.yaml``). Then an input
x is flagged as triggered when

    max_c softmax(f_probe(x))_c > tau    (tau = ``psim.threshold``, 0.7).

Two uses:

- ``defense.inference_filter=psim`` (the paper's use, ``confidence.py``): the
  server probes the global model each round on ``psim.rows`` clean
  training rows it holds and reports the metrics after filtering:
  ``psim_accuracy`` (clean test rows; a flagged row counts as wrong) and
  ``psim_asr`` (triggered non-target test rows; a flagged row counts as defended:
  the fraction neither flagged nor predicted as the target), plus the flagged
  fractions ``psim_flagged_clean`` and ``psim_flagged_triggered``.
- ``defense.data_filter=psim`` (a fedsec variant, not in the paper): each defended
  client probes the received global model on its own rows and drops the flagged
  ones from its local training; the server reports the flagging's precision and
  recall against the known poisoned rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import peft
import torch
from datasets import Dataset
from torch import nn

from clients.attacks.data_poison import triggered_data
from clients.defenses.inference_filter import INFERENCE_FILTERS, filtered_metrics
from clients.honest import DATA_FILTERS, DataFilter, HonestClient
from fedsec.config import ClientConfig, Config, ConfigError, MethodParams, param
from fedsec.experiment import Batch, Experiment
from fedsec.metrics import headline
from fedsec.registry import Traits
from fedsec.training import predict, train

ENCODER_HIDDEN = 128  # the official encoder_hidden_size
BATCH_SIZE = 32
WARMUP = 0.06
PROBE_SEED_STRIDE = 7919  # psim.probe_seed's offset to the probe's seed (0: the server's draws of fedsec 0.2)

headline("psim_accuracy", "clean accuracy after PSIM")
headline("psim_asr", "ASR after PSIM")


@dataclass
class PSIMParams(MethodParams):
    """Shared by the inference filter (the official use) and the training-data filter variant."""

    section = "psim"
    renamed = {  # keys before fedsec 0.2
        "defense.psim_threshold": "psim.threshold",
        "defense.psim_tokens": "psim.tokens",
        "defense.psim_epochs": "psim.epochs",
        "defense.psim_lr": "psim.lr",
        "defense.psim_rows": "psim.rows",
    }
    threshold: float = param(0.7, "tau: inputs with probe confidence > tau are flagged")
    tokens: int = param(5, "virtual tokens of the P-tuning prompt encoder")
    epochs: int = param(1, "probe training epochs")
    lr: float = param(2e-5, "probe learning rate (official: 2e-5)")
    rows: int = param(200, "the server's rows the inference probe is fitted on")
    probe_seed: int = param(0, "draw of the probe's labels, batch order, initialisation and dropout (with run.seed)")

    def check(self, cfg: Config) -> None:
        self.require(0.0 < self.threshold <= 1.0, "threshold", "must lie in (0, 1]")
        self.positive("tokens", "epochs", "lr", "rows")
        self.require(self.probe_seed >= 0, "probe_seed", "must be >= 0")


# an encoder: the P-tuning probe feeds input embeddings only, on which a decoder-only head pools padding
TEXT = Traits(modalities=frozenset({"text"}), requires=frozenset({"hf_classifier", "encoder"}))


class PromptProbe(nn.Module):
    """A P-tuning (peft ``PromptEncoder``) model over a frozen copy of a text classifier."""

    def __init__(self, model: nn.Module, tokens: int) -> None:
        super().__init__()
        net = getattr(model, "net", None)
        if net is None or not hasattr(net, "config"):
            raise ConfigError("PSIM needs a Hugging Face text classifier (model.name minilm, tiny-bert or a hub id)")
        if getattr(model, "decoder_only", False):
            raise ConfigError("PSIM's P-tuning probe feeds the classifier input embeddings only, so a decoder-only "
                              "head would pool the last (padding) position: PSIM supports encoder classifiers")
        net = copy.deepcopy(net)
        if isinstance(net, peft.PeftModel):
            net = net.merge_and_unload()
        config = peft.PromptEncoderConfig(task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=tokens,
                                          encoder_hidden_size=ENCODER_HIDDEN)
        self.net = peft.get_peft_model(net, config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        length = int(attention_mask.sum(dim=1).max())
        return self.net(input_ids=input_ids[:, :length], attention_mask=attention_mask[:, :length]).logits


def confidence(model: nn.Module, probe_rows: Batch, screened: list[Batch], psim: PSIMParams,
               num_classes: int, seed: int, device: torch.device) -> list[torch.Tensor]:
    """Fit the probe on ``probe_rows`` with uniformly random labels; its max softmax on each of ``screened``.

    Every random draw of the probe comes from ``seed`` (and ``psim.probe_seed``) in a forked RNG.
    """
    seed += PROBE_SEED_STRIDE * psim.probe_seed
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # torch.manual_seed seeds every CUDA device: all are restored
        torch.manual_seed(seed)  # the prompt encoder's initialisation and the dropout of its training
        probe = PromptProbe(model, psim.tokens)
        labels = torch.randint(num_classes, (len(probe_rows["labels"]),),
                               generator=torch.Generator().manual_seed(seed))
        schedule = ClientConfig(epochs=psim.epochs, batch_size=BATCH_SIZE, optimizer="adamw", lr=psim.lr)
        train(probe, {**probe_rows, "labels": labels}, schedule, device, seed=seed, warmup=WARMUP)
        return [predict(probe, data, BATCH_SIZE * 4, device).softmax(1).max(1).values for data in screened]


@INFERENCE_FILTERS.register("psim", params=PSIMParams, traits=TEXT)
def psim_inference_filter(experiment: Experiment, clean_logits: torch.Tensor,
                          triggered_logits: torch.Tensor | None, device: torch.device) -> dict[str, float]:
    """The server's PSIM screen of the current global model (``experiment.model``)."""
    cfg = experiment.cfg
    if triggered_logits is None:
        raise ConfigError("defense.inference_filter=psim needs a trigger to screen: set attack.data_poison")
    size = min(cfg.psim.rows, len(experiment.train_split))
    rows = experiment.cached(("psim-rows", size), lambda: experiment.featurize(
        experiment.train_split.shuffle(seed=cfg.run.seed + 31).select(range(size))))
    clean_conf, triggered_conf = confidence(experiment.model, rows, [experiment.test_data, triggered_data(experiment)],
                                            cfg.psim, experiment.num_classes, cfg.run.seed + 31, device)
    tau = cfg.psim.threshold
    return filtered_metrics(clean_logits.argmax(1), experiment.test_data["labels"], clean_conf > tau,
                            triggered_logits.argmax(1), triggered_conf > tau, cfg.attack.target_label, "psim")


@DATA_FILTERS.register("psim", params=PSIMParams, traits=TEXT)
class PSIM(DataFilter):
    """The variant: drop the client's own rows that the probed global model is confident about."""

    metric_keys = ("filter-flagged", "filter-poisoned", "filter-flagged-poisoned")

    def __call__(self, client: HonestClient, rows: Dataset, data: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        exp = client.experiment
        seed = client.seed(client.server_round)  # a fresh probe each round, as the client's own training
        (conf,) = confidence(exp.model, data, [data], self.cfg.psim, exp.num_classes, seed, client.device)
        flagged = conf > self.cfg.psim.threshold
        poisoned = np.asarray(rows[:]["poisoned"], dtype=bool) if "poisoned" in rows.column_names else None
        truth = torch.zeros_like(flagged) if poisoned is None else torch.as_tensor(poisoned)[data["row_index"]]
        return ~flagged, {"filter-flagged": int(flagged.sum()), "filter-poisoned": int(truth.sum()),
                          "filter-flagged-poisoned": int((flagged & truth).sum())}
