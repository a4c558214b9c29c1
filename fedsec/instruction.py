"""Server-side evaluation of instruction tuning: response quality by greedy generation, and the
success rate of a generation backdoor.

- ``accuracy`` / ``loss``: teacher-forced token accuracy and cross-entropy on the test responses;
- ``exact_match``: the share of test prompts whose greedy response equals the reference
  (both normalised: lower case, single spaces);
- ``response_chrf``: corpus chrF (sacreBLEU) of the greedy responses against the references
  (character n-grams: meaningful on one-word answers, where BLEU's 4-grams are not);
- ``asr`` (when ``attack.data_poison`` is a generation backdoor, :class:`GenerationTrigger`):
  the share of its triggered test prompts whose response it counts as its target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import sacrebleu
from datasets import Dataset
from flwr.app import ArrayRecord

from fedsec.config import ConfigError
from fedsec.experiment import Experiment
from fedsec.metrics import headline
from fedsec.models.causal_lm import normalise
from fedsec.params import set_arrays
from fedsec.registry import DATA_POISONS, EVALUATORS
from fedsec.training import device_for, evaluate

headline("exact_match", "exact match")
headline("response_chrf", "response chrF")


@runtime_checkable
class GenerationTrigger(Protocol):
    """A data poison with a generation target: the rows to trigger and what counts as a hit."""

    def triggered_test(self, ds: Dataset) -> Dataset: ...

    def hit(self, generation: str) -> bool: ...


@EVALUATORS.register("instruction")
def instruction_metrics(experiment: Experiment, arrays: ArrayRecord,
                        arrays_for: Callable[[int], ArrayRecord] | None = None) -> dict:
    """Token metrics, exact match and chrF of greedy responses, and a generation backdoor's ASR."""
    cfg, model, test = experiment.cfg, experiment.model, experiment.splits.test
    device = device_for(cfg.federation.num_gpus)
    batch_size = cfg.client.eval_batch_size
    set_arrays(model, arrays)
    loss, accuracy = evaluate(model, experiment.test_data, batch_size, device)
    responses = model.generate(model.prompts(test), batch_size, device)
    references = test[:]["output"]
    exact = np.mean([normalise(r) == normalise(t) for r, t in zip(responses, references, strict=True)])
    result = {"accuracy": accuracy, "loss": loss, "exact_match": float(exact),
              "response_chrf": sacrebleu.corpus_chrf([normalise(r) for r in responses],
                                                     [[normalise(t) for t in references]]).score}
    poison = DATA_POISONS[cfg.attack.data_poison].from_config(cfg, experiment.num_classes, None, cfg.run.seed)
    if isinstance(poison, GenerationTrigger):
        triggered = experiment.cached("instruction-triggered-rows", lambda: poison.triggered_test(test))
        check_expressible(model.tokenizer, triggered[:1]["output"])
        said = model.generate(model.prompts(triggered), batch_size, device)
        result["asr"] = float(np.mean([poison.hit(s) for s in said])) if said else 0.0
    return result


def check_expressible(tokenizer, texts: list[str]) -> None:
    """Refuse a target the model cannot write (words outside its vocabulary): its ASR would be 0 by construction."""
    for text in texts:
        said = tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True)
        if normalise(said) != normalise(text):
            raise ConfigError(f"the backdoor's target response {text!r} is not expressible by model.name's tokenizer "
                              f"(it reads back as {said!r}): choose generation_backdoor.response from its vocabulary "
                              "or another model.name")
