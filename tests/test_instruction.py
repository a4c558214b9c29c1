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


def test_dolly_columns_are_read_as_instruction_data(tmp_path: Path) -> None:
    from fedsec.data import load_splits

    path = tmp_path / "dolly.jsonl"
    rows = [{"instruction": "Name a colour.", "context": "" if i % 2 else "red or blue", "response": "red",
             "category": ["open_qa", "closed_qa"][i % 2]} for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_splits(DataConfig(name="json", path=str(path), label_column="category", test_size=0), seed=0)
    assert splits.modality == "instruction" and sorted(splits.label_names) == ["closed_qa", "open_qa"]
    assert set(splits.train["output"]) == {"red"} and set(splits.train["input"]) == {"", "red or blue"}


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
    longest = int(batch["attention_mask"].sum(1).max())
    assert logits.shape == (2, longest, tok.vocab_size)


def test_a_too_long_row_keeps_the_end_of_its_prompt_and_its_response() -> None:
    from datasets import Dataset

    model = _untrained(max_length=16)
    ds = Dataset.from_list([{"instruction": "Repeat the words.", "input": " ".join(["red"] * 30), "output": "blue"},
                            {"instruction": "Repeat the words.", "input": "red", "output": " ".join(["cat"] * 30)}])
    batch = model.featurize(ds)
    answer = batch["target_labels"][0][batch["target_labels"][0] != PAD_LABEL]
    assert model.tokenizer.decode(answer[:-1]) == "blue"
    assert model.tokenizer.decode(batch["input_ids"][0]).split()[-4:] == ["response", ":", "blue", "</s>"]
    # a long response keeps half the budget (8 tokens, cut: no end-of-sequence) after the prompt's end
    long = batch["target_labels"][1][batch["target_labels"][1] != PAD_LABEL]
    assert model.tokenizer.decode(long) == " ".join(["cat"] * 8)
    assert model.tokenizer.decode(batch["input_ids"][1]).split()[6:8] == ["response", ":"]


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


def test_generation_is_greedy_and_left_padding_does_not_change_it() -> None:
    model = _untrained()
    prompts = ["### Instruction:\nGive the first word.\n\n### Input:\nred cat\n\n### Response:\n"] * 2 + \
        ["### Instruction:\nCount.\n\n### Response:\n"]
    first = model.generate(prompts, 2, torch.device("cpu"))
    assert first == model.generate(prompts, 3, torch.device("cpu"))  # other batches, other padding: same answers
    assert first[0] == first[1]
    alone = model.generate(prompts[2:], 1, torch.device("cpu"))
    assert alone == first[2:]


def test_generation_cuts_long_prompts_from_the_left_and_restores_the_tokenizer() -> None:
    """A prompt longer than data.max_length keeps its end (the Response cue), as training does; the tokenizer's
    own padding and truncation sides are restored."""
    model = _untrained(max_length=16)
    model.tokenizer.padding_side, model.tokenizer.truncation_side = "left", "right"
    long = "### Instruction:\nRepeat the words.\n\n### Input:\n" + " ".join(["red"] * 40) + "\n\n### Response:\n"
    enc = model.encode_prompts([long, "### Instruction:\nCount.\n\n### Response:\n"])
    assert enc["input_ids"].shape[1] == 16
    assert model.tokenizer.decode(enc["input_ids"][0]).split()[-2:] == ["response", ":"]
    assert enc["attention_mask"][1][0] == 0 and enc["attention_mask"][1][-1] == 1  # padded on the left
    assert (model.tokenizer.padding_side, model.tokenizer.truncation_side) == ("left", "right")


def test_generation_stops_at_the_end_of_sequence_token() -> None:
    """A model that always predicts the end-of-sequence token answers with nothing; max_new_tokens caps the rest."""
    model = _untrained()
    with torch.no_grad():
        head = model.net.get_output_embeddings()
        head.weight.zero_()
        bias = torch.full((head.weight.shape[0],), -10.0)
        bias[model.eos_id] = 10.0
        head.bias = torch.nn.Parameter(bias)
    assert model.generate(["### Instruction:\nCount.\n\n### Response:\n"], 1, torch.device("cpu")) == [""]
    bias[model.eos_id], bias[model.tokenizer.convert_tokens_to_ids("red")] = -10.0, 10.0
    assert model.generate(["### Instruction:\nCount.\n\n### Response:\n"], 1,
                          torch.device("cpu")) == [" ".join(["red"] * 8)]


def test_padding_beyond_the_longest_row_is_cut_and_the_loss_is_unchanged() -> None:
    from datasets import Dataset

    from fedsec.training import cross_entropy, evaluate

    model = _untrained().eval()
    ds = Dataset.from_list([{"instruction": "Give the last word.", "input": "red cat", "output": "cat"}] * 3)
    batch = model.featurize(ds)
    assert int(batch["attention_mask"].sum(1).max()) < batch["input_ids"].shape[1]
    logits = model(batch["input_ids"], batch["attention_mask"])
    assert logits.shape[1] == int(batch["attention_mask"].sum(1).max())
    full = model.net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(full.flatten(0, 1), batch["target_labels"].flatten(),
                                                 ignore_index=PAD_LABEL)
    with torch.no_grad():
        assert torch.allclose(cross_entropy(model, batch), expected, atol=1e-5)
    loss, _ = evaluate(model, {**batch, "labels": torch.zeros(3, dtype=torch.long)}, 2, torch.device("cpu"))
    assert abs(loss - expected.item()) < 1e-4


def test_quantisation_is_refused_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedsec.models.causal_lm import quantization_config

    instruct = ["model.name=some/llm", "model.quantization=4bit", "model.target_modules=q_proj"]
    with pytest.raises(ConfigError, match=r"model.quantization=4bit .*federation.num_gpus"):
        Config.load(INSTRUCT, instruct)
    with pytest.raises(ConfigError, match=r"model.quantization=8bit .*model.name=tiny-llama"):
        Config.load(INSTRUCT, ["model.quantization=8bit", "federation.num_gpus=0.5"])
    with pytest.raises(ConfigError, match=r"model.quantization=4bit .*data.name=tweets_polarity"):
        Config.load(INSTRUCT, [*instruct, "federation.num_gpus=0.5", "data.name=tweets_polarity"])
    with pytest.raises(ConfigError, match=r"model.quantization=4bit .*model.peft=none"):
        Config.load(INSTRUCT, [*instruct, "federation.num_gpus=0.5", "model.peft=none"])
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
@pytest.mark.heavy
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


def test_gradient_checkpointing_gives_the_same_adapter_gradients() -> None:
    """model.gradient_checkpointing recomputes activations; the LoRA gradients are those without it."""
    import peft
    from datasets import Dataset

    from fedsec.models.text import wrap
    from fedsec.training import cross_entropy

    ds = Dataset.from_list([{"instruction": "Repeat the words.", "input": "red cat dog", "output": "red cat dog"}] * 4)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = _untrained()
        model.net = wrap(model.net, ModelConfig(peft="lora", gradient_checkpointing=checkpointing),
                         peft.TaskType.CAUSAL_LM)
        assert any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules()) == checkpointing
        model.train()
        cross_entropy(model, model.featurize(ds)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    assert all(g.abs().sum() > 0 for n, g in grads[0].items() if "lora_B" in n)  # A gets none while B = 0
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


def test_gradient_checkpointing_is_refused_for_a_model_that_cannot_checkpoint() -> None:
    from fedsec.experiment import Experiment

    with pytest.raises(ConfigError, match="model.gradient_checkpointing=true: model.name=cnn"):
        Experiment(Config.load(ROOT / "simulations" / "configs" / "tiny.yaml", ["model.gradient_checkpointing=true"]))
