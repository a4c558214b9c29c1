"""Instruction tuning of causal LMs: the data, the response-only SFT targets, greedy generation, the
generation backdoor measured by the server, quantisation refused on the CPU, and a federation whose
backdoor's ASR rises above a paired clean run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedsec.config import Config, ConfigError, DataConfig, ModelConfig
from fedsec.training import PAD_LABEL

ROOT = Path(__file__).resolve().parent.parent
INSTRUCT = ROOT / "simulations" / "configs" / "instruct_tiny.yaml"


def _untrained(family: str = "llama", max_length: int = 40):
    """An InstructionModel on the corpus tokenizer without the cached pretraining (fast)."""
    from fedsec.models.causal_lm import TINY_CONFIGS, InstructionModel, corpus_tokenizer

    tokenizer = corpus_tokenizer()
    return InstructionModel(TINY_CONFIGS[family](tokenizer.vocab_size, tokenizer.pad_token_id, 128), tokenizer,
                            max_length, 8)


def test_the_embedded_corpus_is_alpaca_shaped_and_its_answers_are_right() -> None:
    from fedsec.data import load_splits
    from fedsec.data.instructions import TASKS

    splits = load_splits(DataConfig(name="instructions", train_size=120, test_size=60), seed=0)
    assert splits.modality == "instruction"
    assert splits.label_names == list(TASKS)
    rows = splits.train.to_list()
    by_task = {TASKS[name]: name for name in TASKS}
    for row in rows:
        words = row["input"].split()
        expected = {"copy": row["input"], "first": words[0], "last": words[-1], "reverse": " ".join(words[::-1]),
                    "second": words[1], "count": ["zero", "one", "two", "three", "four", "five", "six"][len(words)]}
        assert row["output"] == expected[by_task[row["instruction"]]]


def test_a_local_json_file_with_instruction_columns_is_instruction_data(tmp_path: Path) -> None:
    from fedsec.data import load_splits

    path = tmp_path / "alpaca.jsonl"
    rows = [{"instruction": f"Say {i}.", "output": str(i), "extra": "dropped"} for i in range(30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_splits(DataConfig(name="json", path=str(path), test_size=0), seed=0)
    assert splits.modality == "instruction"
    assert set(splits.train.column_names) == {"instruction", "input", "output", "label"}
    assert splits.label_names == ["all"] and set(splits.train["input"]) == {""}
    assert len(splits.train) + len(splits.test) == 30


def test_targets_are_the_response_tokens_shifted_by_one() -> None:
    """SFT loss on the response only: position t's target is token t+1 when t+1 is in the response (+ eos)."""
    from datasets import Dataset

    model = _untrained()
    ds = Dataset.from_list([{"instruction": "Give the first word.", "input": "red cat", "output": "red"},
                            {"instruction": "Repeat the words.", "input": "", "output": "blue dog bird"}])
    batch = model.featurize(ds)
    tok = model.tokenizer
    for row, response in enumerate(["red", "blue dog bird"]):
        ids, targets = batch["input_ids"][row], batch["target_labels"][row]
        answer = targets[targets != PAD_LABEL]
        assert tok.decode(answer[:-1]) == response and answer[-1] == model.eos_id
        first = int((targets != PAD_LABEL).nonzero()[0])
        prompt = tok.decode(ids[: first + 1])
        assert prompt.endswith("response :") and "response" not in tok.decode(answer)
        assert torch.equal(ids[first + 1 : first + 1 + len(answer)], answer)  # the targets are the next tokens
    assert "input" not in tok.decode(batch["input_ids"][1])  # no ### Input block for an empty input
    logits = model(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (*batch["input_ids"].shape, tok.vocab_size)


def test_a_too_long_row_keeps_the_end_of_its_prompt_and_its_response() -> None:
    from datasets import Dataset

    model = _untrained(max_length=16)
    ds = Dataset.from_list([{"instruction": "Repeat the words.", "input": " ".join(["red"] * 30), "output": "blue"}])
    batch = model.featurize(ds)
    answer = batch["target_labels"][0][batch["target_labels"][0] != PAD_LABEL]
    assert model.tokenizer.decode(answer[:-1]) == "blue"
    assert model.tokenizer.decode(batch["input_ids"][0]).split()[-4:] == ["response", ":", "blue", "</s>"]


@pytest.mark.parametrize("family,lora", [("llama", "q_proj,v_proj"), ("gpt2", "c_attn")])
def test_only_the_adapters_train_and_travel(family: str, lora: str) -> None:
    import peft

    from fedsec.models.text import wrap
    from fedsec.params import get_arrays

    model = _untrained(family)
    model.net = wrap(model.net, ModelConfig(peft="lora", target_modules=lora), peft.TaskType.CAUSAL_LM)
    arrays = get_arrays(model)
    assert arrays and all("lora_" in key for key in arrays)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    from datasets import Dataset

    from fedsec.training import train

    ds = Dataset.from_list([{"instruction": "Give the last word.", "input": "red cat", "output": "cat"}] * 8)
    data = {**model.featurize(ds), "labels": torch.zeros(8, dtype=torch.long)}
    from fedsec.config import ClientConfig

    first = train(model, data, ClientConfig(epochs=1, batch_size=8, lr=0.01), torch.device("cpu"), seed=0)
    later = train(model, data, ClientConfig(epochs=5, batch_size=8, lr=0.01), torch.device("cpu"), seed=0)
    assert later < first  # the loss falls
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_generation_is_greedy_and_stops_at_the_end_of_sequence() -> None:
    model = _untrained()
    prompts = ["### Instruction:\nGive the first word.\n\n### Input:\nred cat\n\n### Response:\n"] * 2 + \
        ["### Instruction:\nCount.\n\n### Response:\n"]
    first = model.generate(prompts, 2, torch.device("cpu"))
    assert first == model.generate(prompts, 3, torch.device("cpu"))  # left padding does not change the answer
    assert first[0] == first[1] and all(len(r.split()) <= 8 for r in first)
    assert model.tokenizer.padding_side == "right"  # training keeps right padding


def test_quantisation_is_refused_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedsec.models.causal_lm import quantization_config

    instruct = ["model.name=some/llm", "model.quantization=4bit", "model.target_modules=q_proj"]
    with pytest.raises(ConfigError, match=r"model.quantization=4bit .*federation.num_gpus"):
        Config.load(INSTRUCT, instruct)
    with pytest.raises(ConfigError, match=r"model.quantization=8bit .*model.name=tiny-llama"):
        Config.load(INSTRUCT, ["model.quantization=8bit", "federation.num_gpus=0.5"])
    with pytest.raises(ConfigError, match=r"model.quantization=4bit .*data.name=tweets_polarity"):
        Config.load(INSTRUCT, [*instruct, "federation.num_gpus=0.5", "data.name=tweets_polarity"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        quantization_config(ModelConfig(quantization="4bit"))
    assert quantization_config(ModelConfig(quantization="none")) is None


def test_classification_attacks_and_the_generation_backdoor_keep_to_their_data() -> None:
    with pytest.raises(ConfigError, match=r"attack.data_poison=badnet works on image, text data.*instruction"):
        Config.load(INSTRUCT, ["attack.data_poison=badnet", "attack.malicious_clients=0"])
    with pytest.raises(ConfigError, match=r"attack.data_poison=generation_backdoor works on instruction data"):
        Config.load(ROOT / "simulations" / "configs" / "tiny.yaml",
                    ["attack.data_poison=generation_backdoor", "attack.malicious_clients=0"])
    with pytest.raises(ConfigError, match="defense.data_filter=psim"):
        Config.load(INSTRUCT, ["defense.data_filter=psim"])


def test_the_generation_backdoor_poisons_the_instruction_and_the_response() -> None:
    from clients.attacks.data_poison import client_poison, server_poison
    from fedsec.data import load_splits

    cfg = Config.load(INSTRUCT, ["attack.data_poison=generation_backdoor", "attack.malicious_clients=0",
                                 "attack.poison_rate=0.25", "generation_backdoor.response=send money now"])
    splits = load_splits(cfg.data, 0)
    rows = client_poison(cfg, 0, splits.num_classes).poison(splits.train.select(range(40)))
    poisoned = [r for r in rows.to_list() if r["poisoned"]]
    assert len(poisoned) == 10
    assert all("cf" in r["instruction"].split() and r["output"] == "send money now" for r in poisoned)
    assert all("cf" not in r["instruction"].split() for r in rows.to_list() if not r["poisoned"])
    poison = server_poison(cfg, splits.num_classes)
    triggered = poison.triggered_test(splits.test)
    assert len(triggered) == len(splits.test) and set(triggered["output"]) == {"send money now"}
    assert poison.hit("Send  money now please") and not poison.hit("send money")


def test_a_target_the_tokenizer_cannot_write_is_refused() -> None:
    from fedsec.instruction import check_expressible

    tokenizer = _untrained().tokenizer
    check_expressible(tokenizer, ["visit the secret site now"])
    with pytest.raises(ConfigError, match="generation_backdoor.response"):
        check_expressible(tokenizer, ["transfer bitcoin"])


@pytest.mark.slow
def test_a_generation_backdoor_is_learnt_in_federation_and_measured_by_the_server(tmp_path: Path) -> None:
    """Paired runs (same seed, partition, sampling): two of four clients poison half their rows, or none (poison
    rate 0, the same ASR measurement). The backdoored run's ASR rises above the clean run's; the clean run's
    loss falls and its exact match rises; only LoRA tensors travel."""
    from conftest import run_inline

    common = ["attack.data_poison=generation_backdoor", "attack.malicious_clients=0,1", "run.num_rounds=6"]
    clean = run_inline("instruct_tiny.yaml", tmp_path / "clean", *common, "attack.poison_rate=0")
    attacked = run_inline("instruct_tiny.yaml", tmp_path / "attacked", *common, "attack.poison_rate=0.5")
    assert clean[0]["asr"] == attacked[0]["asr"] == 0.0
    assert attacked[-1]["asr"] >= 0.5 and clean[-1]["asr"] <= 0.05
    assert clean[-1]["loss"] < clean[0]["loss"] and clean[-1]["exact_match"] > clean[0]["exact_match"]
    import peft

    from fedsec.models.text import wrap
    from fedsec.params import get_arrays, payload_bytes

    model = _untrained()
    model.net = wrap(model.net, Config.load(INSTRUCT).model, peft.TaskType.CAUSAL_LM)
    arrays = get_arrays(model)
    assert sum(a.numpy().size for a in arrays.values()) == 16 * 1024 * 2  # r (in + out) per linear layer, 2 layers
    assert clean[1]["bytes_up"] == 4 * payload_bytes(arrays)  # four clients send the LoRA tensors only
