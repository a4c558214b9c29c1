"""PSIM, the poisoned-sample identification module.

Paper: S. Zhao, L. Gan, L. A. Tuan, J. Fu, L. Lyu, M. Jia, J. Wen, "Defending
Against Weight-Poisoning Backdoor Attacks for Parameter-Efficient Fine-Tuning"
(NAACL Findings 2024); code: github.com/shuaizhao95/PSIM.

A backdoored model keeps answering triggered inputs with high confidence when
only a small input-side PEFT module in front of it is fitted to labels drawn
uniformly at random: the module learns to make the model hesitant on clean
inputs but has too little capacity to undo the trigger's shortcut. Each round
a defended client freezes a copy of the received global model, trains a soft
prompt in front of it (text: ``defense.psim_tokens`` virtual token embeddings
inserted after the first token, as in prompt tuning / P-tuning; images: an
additive full-image visual prompt) for ``defense.psim_epochs`` at
``defense.psim_lr`` on its own rows with random labels, and drops from its
local training every row x with

    max_c softmax(f_psim(x))_c > tau    (tau = ``defense.psim_threshold``, 0.7).

It reports ``filter-flagged`` (rows dropped), ``filter-poisoned`` (rows the
simulation knows were poisoned) and ``filter-flagged-poisoned``; the server
sums them over clients and reports the flagging's precision and recall.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from clients.honest import DATA_FILTERS, DataFilter, HonestClient
from fedsec.config import ClientConfig
from fedsec.experiment import Batch
from fedsec.training import predict, train


class TextPromptProbe(nn.Module):
    """A frozen text classifier with ``tokens`` trainable virtual tokens after the first token."""

    def __init__(self, model: nn.Module, tokens: int, generator: torch.Generator) -> None:
        super().__init__()
        self.model = model
        embeddings = model.net.get_input_embeddings().weight
        rows = torch.randint(embeddings.shape[0], (tokens,), generator=generator)
        self.prompt = nn.Parameter(embeddings[rows].detach().clone())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        length = int(attention_mask.sum(dim=1).max())
        ids, mask = input_ids[:, :length], attention_mask[:, :length]
        embeds = self.model.net.get_input_embeddings()(ids)
        prompt = self.prompt.unsqueeze(0).expand(len(ids), -1, -1)
        embeds = torch.cat([embeds[:, :1], prompt, embeds[:, 1:]], dim=1)
        mask = torch.cat([mask[:, :1], mask.new_ones(len(ids), len(self.prompt)), mask[:, 1:]], dim=1)
        return self.model.net(inputs_embeds=embeds, attention_mask=mask).logits


class ImagePromptProbe(nn.Module):
    """A frozen image classifier with a trainable additive visual prompt."""

    def __init__(self, model: nn.Module, shape: torch.Size) -> None:
        super().__init__()
        self.model = model
        self.prompt = nn.Parameter(torch.zeros(1, *shape))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values + self.prompt)


def make_probe(model: nn.Module, data: Batch, tokens: int, seed: int) -> nn.Module:
    """A frozen copy of ``model`` behind a fresh trainable input prompt."""
    frozen = copy.deepcopy(model)
    frozen.requires_grad_(False)
    if "pixel_values" in data:
        return ImagePromptProbe(frozen, data["pixel_values"].shape[1:])
    return TextPromptProbe(frozen, tokens, torch.Generator().manual_seed(seed))


@DATA_FILTERS.register("psim")
class PSIM(DataFilter):
    """Drop the rows that the global model, behind a random-label-tuned prompt, is confident about."""

    def __call__(self, client: HonestClient, rows: Dataset, data: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        defense, exp = self.cfg.defense, client.experiment
        seed = self.cfg.run.seed * 31 + client.partition_id
        probe = make_probe(exp.model, data, defense.psim_tokens, seed)
        random_labels = torch.randint(exp.num_classes, (len(data["labels"]),),
                                      generator=torch.Generator().manual_seed(seed))
        schedule = ClientConfig(epochs=defense.psim_epochs, batch_size=self.cfg.client.batch_size,
                                optimizer="adamw", lr=defense.psim_lr)
        train(probe, {**data, "labels": random_labels}, schedule, client.device, seed=seed)
        confidence = predict(probe, data, self.cfg.client.eval_batch_size, client.device).softmax(1).max(1).values
        flagged = confidence > defense.psim_threshold
        poisoned = np.asarray(rows[:]["poisoned"], dtype=bool) if "poisoned" in rows.column_names else None
        truth = torch.zeros_like(flagged) if poisoned is None else torch.as_tensor(poisoned)[data["row_index"]]
        return ~flagged, {"filter-flagged": int(flagged.sum()), "filter-poisoned": int(truth.sum()),
                          "filter-flagged-poisoned": int((flagged & truth).sum())}
