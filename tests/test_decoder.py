"""Decoder-only (LLaMA-, GPT-2-style) text classifiers: last-token pooling, the family's LoRA targets,
and a federation with a backdoor, W2SAttack from an encoder teacher, W2SDefense and a server defense."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedsec.config import Config, ConfigError, ModelConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "simulations" / "configs" / "tiny.yaml"
TEXT = ["data.name=tweets_polarity", "data.max_length=24", "data.train_size=400", "data.test_size=200",
        "client.optimizer=adamw", "client.lr=0.003"]


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_decoder_features_are_the_token_its_head_classifies(name: str) -> None:
    """features() pools the last non-padding token: the classification head on it gives the logits."""
    from fedsec.experiment import Experiment

    cfg = Config.load(TINY, [*TEXT, f"model.name={name}", "model.peft=none"])
    exp = Experiment(cfg)
    model = exp.model.eval()
    batch = model.featurize(exp.splits.test.select(range(6)))
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 1  # rows of different lengths
    with torch.no_grad():
        pooled, logits = model.features(**batch)
        head = model.net.score
        assert torch.allclose(head(pooled), logits, atol=1e-5)
        assert torch.allclose(model(**batch), logits, atol=1e-5)
        first = model.net(**batch, output_hidden_states=True).hidden_states[-1][:, 0]
    assert not torch.allclose(pooled, first)  # not an encoder's first token


def test_empty_target_modules_take_the_family_defaults() -> None:
    from fedsec.models.text import target_modules

    lora = ModelConfig(peft="lora", target_modules="")
    assert target_modules(lora, "bert") == ["query", "value"]
    assert target_modules(lora, "llama") == ["q_proj", "v_proj"]
    assert target_modules(lora, "gpt2") == ["c_attn"]
    assert target_modules(ModelConfig(peft="lora", target_modules="o_proj"), "llama") == ["o_proj"]
    with pytest.raises(ConfigError, match="model.target_modules"):
        target_modules(lora, "no-such-family")


def _run(tmp_path: Path, name: str, *overrides: str) -> list[dict]:
    out = tmp_path / name
    argv = [sys.executable, str(ROOT / "simulations" / "run.py"), "--config", str(TINY), "--out", str(out)]
    for item in [*TEXT, "model.name=tiny-llama", "model.peft=lora", "run.num_rounds=4", "federation.backend=inline",
                 "attack.data_poison=badnet", "attack.target_label=1", *overrides]:
        argv += ["--set", item]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_decoder_federation_with_a_backdoor_and_defenses(tmp_path: Path) -> None:
    clean = _run(tmp_path, "clean", "attack.malicious_clients=0", "attack.poison_rate=0")
    assert clean[-1]["loss"] < clean[0]["loss"] and clean[-1]["accuracy"] > 0.7
    assert 0 < clean[-1]["bytes_up"] < clean[-1]["bytes_full_model"] / 20  # LoRA adapters and the head only
    poisoned = ["attack.malicious_clients=0,1", "attack.poison_rate=0.5"]
    backdoor = _run(tmp_path, "backdoor", *poisoned)
    assert backdoor[-1]["asr"] > clean[-1]["asr"] + 0.5
    # W2SAttack: an encoder teacher (MiniLM, 384 wide) guides the decoder student (64 wide) via the projection
    w2s = _run(tmp_path, "w2s", *poisoned, "attack.local_training=w2s_attack", "w2s_attack.teacher=minilm",
               "w2s_attack.teacher_epochs=1", "w2s_attack.teacher_lr=0.0001", "w2s_attack.lr=0.003")
    assert w2s[-1]["asr"] > clean[-1]["asr"] + 0.5
    # the honest clients unlearn with W2SDefense (encoder teacher); the server screens updates with FLAME
    defended = _run(tmp_path, "defended", *poisoned, "defense.local_training=w2s_defense", "defense.clients=honest",
                    "w2s_defense.teacher=tiny-bert", "w2s_defense.teacher_epochs=1", "strategy.defenses=flame")
    assert all(r["failures"] == 0 and r["rejected"] == 0 for r in defended)
    assert all(isinstance(r["asr"], float) for r in defended[1:])


def test_psim_probe_refuses_a_decoder_and_unsupported_families_are_refused() -> None:
    from transformers import T5Config, XLNetConfig

    from clients.defenses.psim import PromptProbe
    from fedsec.experiment import Experiment
    from fedsec.models.text import is_decoder_only

    exp = Experiment(Config.load(TINY, [*TEXT, "model.name=tiny-llama", "model.peft=none"]))
    with pytest.raises(ConfigError, match="PSIM supports encoder classifiers"):
        PromptProbe(exp.model, 5)
    for config in (T5Config(), XLNetConfig()):
        with pytest.raises(ConfigError, match="not supported as a text classifier"):
            is_decoder_only(config)


@pytest.mark.parametrize("key", ["defense.inference_filter", "defense.data_filter"])
def test_psim_with_a_tiny_decoder_is_refused_at_config_time(key: str) -> None:
    overrides = [*TEXT, "model.name=tiny-llama", "attack.data_poison=badnet", "attack.malicious_clients=0",
                 f"{key}=psim"]
    with pytest.raises(ConfigError, match="encoder"):
        Config.load(TINY, overrides)
