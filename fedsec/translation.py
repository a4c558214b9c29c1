"""Server-side evaluation of translation: sacreBLEU per language pair, macro and micro BLEU.

Each pair is evaluated with the parameters its client would use (Fed-MNMT sends
every client its cluster's adapters); ``bleu_macro`` is the mean over pairs,
``bleu_micro`` the mean weighted by test size. ``accuracy`` / ``loss`` are
teacher-forced token accuracy and cross-entropy over all pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sacrebleu
from flwr.app import ArrayRecord

from fedsec.experiment import Experiment
from fedsec.metrics import headline
from fedsec.params import set_arrays
from fedsec.registry import EVALUATORS
from fedsec.training import PAD_LABEL, batches, device_for, evaluate

headline("bleu_macro", "BLEU (macro over pairs)")
headline("bleu_micro", "BLEU (micro over sentences)")


@EVALUATORS.register("translation")
def translation_metrics(experiment: Experiment, arrays: ArrayRecord,
                        arrays_for: Callable[[int], ArrayRecord] | None = None) -> dict:
    """Per-pair BLEU (greedy decoding, pair ``g`` with ``arrays_for(g)``, default ``arrays``) and the
    pooled token metrics."""
    arrays_for = arrays_for or (lambda _: arrays)
    model, data, test = experiment.model, experiment.test_data, experiment.splits.test
    device = device_for(experiment.cfg.federation.num_gpus)
    batch_size = experiment.cfg.client.eval_batch_size
    references = test[:]["target"]
    bleu, sizes, token_loss, token_acc, tokens = {}, {}, 0.0, 0.0, 0
    for pair_id, name in enumerate(experiment.splits.label_names):
        rows = np.flatnonzero(data["labels"].numpy() == pair_id)
        if len(rows) == 0:
            continue
        subset = {k: v[rows] for k, v in data.items()}
        set_arrays(model, arrays_for(pair_id))
        loss, accuracy = evaluate(model, subset, batch_size, device)
        n_tokens = int((subset["target_labels"] != PAD_LABEL).sum())
        token_loss, token_acc, tokens = token_loss + loss * n_tokens, token_acc + accuracy * n_tokens, tokens + n_tokens
        model.to(device)
        hypotheses = [h for b in batches(subset, batch_size)
                      for h in model.translate(b["input_ids"].to(device), b["attention_mask"].to(device),
                                               b["decoder_input_ids"][:, :model.start_length].to(device))]
        bleu[name] = sacrebleu.corpus_bleu(hypotheses, [[references[i] for i in rows]]).score
        sizes[name] = len(rows)
    total = sum(sizes.values())
    return {"accuracy": token_acc / tokens, "loss": token_loss / tokens, "bleu": bleu,
            "bleu_macro": float(np.mean(list(bleu.values()))),
            "bleu_micro": sum(bleu[n] * sizes[n] for n in bleu) / total}
