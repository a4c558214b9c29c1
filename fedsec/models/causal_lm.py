"""Causal language models for instruction tuning (supervised fine-tuning, SFT) with PEFT.

A row ``(instruction, input, output)`` becomes the Alpaca prompt (the template
FlowerTune and OpenFedLLM use)::

    ### Instruction:\\n{instruction}\\n\\n### Input:\\n{input}\\n\\n### Response:\\n{output}<eos>

(without the ``### Input`` block when ``input`` is empty). The loss is the
token cross-entropy on the response tokens only (and the end-of-sequence token):
``target_labels[t] = ids[t + 1]`` where token ``t + 1`` belongs to the response,
``PAD_LABEL`` elsewhere, so ``fedsec.training.loss_of`` computes

    L = -(1 / |R|) sum_{t+1 in R} log p(x_{t+1} | x_{<=t})

and the prompt is context only. Generation is greedy from the prompt, up to
``model.max_new_tokens`` tokens.

Models: ``tiny-llama`` and ``tiny-gpt2`` on instruction data are 2-layer,
64-wide LLaMA- and GPT-2-style causal LMs built from configs on a word-level
tokenizer over the embedded corpus (``data.name=instructions``: its template,
task and off-task words) and pretrained once per machine on its
:data:`fedsec.data.instructions.PRETRAIN_TASKS` (cached under
``$XDG_CACHE_HOME/fedsec``; the federation then also teaches the two tasks the
base never saw). Any other ``model.name`` loads through
``AutoModelForCausalLM.from_pretrained`` (LLaMA, Qwen, OPT, GPT-2, ...);
``model.quantization`` ``4bit`` (NF4, double quantisation, bfloat16 compute,
QLoRA's recipe) or ``8bit`` loads it through bitsandbytes and prepares it with
peft's ``prepare_model_for_kbit_training``, on CUDA only; ``model.gradient_checkpointing``
trades compute for activation memory. Only the PEFT parameters train and travel.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import peft
import torch
import torch.nn.functional as F
import transformers
from datasets import Dataset
from filelock import FileLock
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from fedsec.config import ConfigError, DataConfig, ModelConfig
from fedsec.data import instructions
from fedsec.models.seq2seq import cache_dir
from fedsec.models.text import wrap
from fedsec.training import PAD_LABEL, linear_warmup

PROMPT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
PROMPT_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n"


def prompt_of(instruction: str, input_: str) -> str:
    """The Alpaca prompt of one row (the ``### Input`` block only when ``input_`` is not empty)."""
    if input_.strip():
        return PROMPT.format(instruction=instruction, input=input_)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def normalise(text: str) -> str:
    """Lower case, single spaces: generations are compared with references on this form."""
    return " ".join(text.lower().split())


class InstructionModel(nn.Module):
    """A tokenizer plus a (PEFT-wrapped) causal LM; ``forward`` gives next-token logits (batch, time, vocab)."""

    def __init__(self, net: nn.Module, tokenizer: transformers.PreTrainedTokenizerBase, max_length: int,
                 max_new_tokens: int) -> None:
        super().__init__()
        self.net, self.tokenizer = net, tokenizer
        self.max_length, self.max_new_tokens = max_length, max_new_tokens
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if self.eos_id is None:
            raise ConfigError("model.name: the tokenizer has neither an end-of-sequence nor a separator token")

    def prompts(self, ds: Dataset) -> list[str]:
        rows = ds[:]
        return [prompt_of(i, x) for i, x in zip(rows["instruction"], rows["input"], strict=True)]

    def featurize(self, ds: Dataset) -> dict[str, torch.Tensor]:
        """Prompt + response token ids (right-padded to ``data.max_length``) and the response-only targets.

        A row longer than ``max_length`` keeps the end of its prompt and at least half the budget
        for its response.
        """
        prompt_ids = self.tokenizer(self.prompts(ds), add_special_tokens=False)["input_ids"]
        response_ids = self.tokenizer(ds[:]["output"], add_special_tokens=False)["input_ids"]
        n, length = len(prompt_ids), self.max_length
        input_ids = torch.full((n, length), self.tokenizer.pad_token_id, dtype=torch.long)
        targets = torch.full((n, length), PAD_LABEL, dtype=torch.long)
        attention = torch.zeros((n, length), dtype=torch.long)
        for row, (prompt, response) in enumerate(zip(prompt_ids, response_ids, strict=True)):
            response = response + [self.eos_id]
            keep = min(len(response), length // 2)
            prompt = prompt[-(length - keep):]
            response = response[: length - len(prompt)]
            ids = prompt + response
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            # position t predicts token t + 1: the targets are the response tokens, shifted by one
            targets[row, len(prompt) - 1 : len(ids) - 1] = torch.tensor(response)
        return {"input_ids": input_ids, "attention_mask": attention, "target_labels": targets}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Next-token logits up to the batch's longest sequence (right padding beyond it is cut off; the loss
        reads ``target_labels`` up to the same length, beyond which they are all ``PAD_LABEL``)."""
        length = int(attention_mask.sum(dim=1).max())
        return self.net(input_ids=input_ids[:, :length], attention_mask=attention_mask[:, :length]).logits

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Prompts for generation: left-padded, and cut from the left when longer than ``data.max_length``
        (as :meth:`featurize` keeps a prompt's end: the ``### Response:`` cue)."""
        sides = self.tokenizer.padding_side, self.tokenizer.truncation_side
        self.tokenizer.padding_side = self.tokenizer.truncation_side = "left"
        try:
            return self.tokenizer(prompts, add_special_tokens=False, padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt", return_token_type_ids=False)
        finally:
            self.tokenizer.padding_side, self.tokenizer.truncation_side = sides

    @torch.no_grad()
    def generate(self, prompts: list[str], batch_size: int, device: torch.device) -> list[str]:
        """Greedy responses to ``prompts`` (up to ``model.max_new_tokens``, ending at the end-of-sequence token),
        decoded without special tokens."""
        self.to(device).eval()
        responses = []
        for start in range(0, len(prompts), batch_size):
            enc = self.encode_prompts(prompts[start : start + batch_size]).to(device)
            out = self.net.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                    eos_token_id=self.eos_id, pad_token_id=self.tokenizer.pad_token_id)
            responses += self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return responses


# ---------------------------------------------------------------- the embedded defaults
TINY_CONFIGS = {
    "llama": lambda vocab, pad, positions: LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=positions, pad_token_id=pad, tie_word_embeddings=True)),
    "gpt2": lambda vocab, pad, positions: GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab, n_embd=64, n_layer=2, n_head=2, n_positions=positions, pad_token_id=pad, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0)),
}
PRETRAIN_STEPS, PRETRAIN_BATCH, PRETRAIN_PER_TASK, PRETRAIN_LR = 1500, 32, 500, 3e-3
SPECIALS = ["<pad>", "</s>", "<unk>"]


def corpus_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer (whitespace, then punctuation) over the embedded corpus's words."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    split = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    texts = [PROMPT, PROMPT_NO_INPUT, *instructions.TASKS.values(), *instructions.WORDS, *instructions.NUMBERS,
             *instructions.OFF_TASK_WORDS]
    words = sorted({w for text in texts for w, _ in split.pre_tokenize_str(text.lower())})
    tok = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(SPECIALS + words)}, unk_token="<unk>"))  # noqa: S106 (a token)
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = split
    specials = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


def _pretrain(model: InstructionModel) -> None:
    """Language modelling (every token of prompt and response) of the whole base model on the pretraining tasks
    of the embedded corpus, inputs drawn from the task and the off-task words (seeded by its own generator: the
    global random state, which draws the LoRA initialisation next, is the same whether the cache was warm)."""
    ds = instructions.corpus(PRETRAIN_PER_TASK, instructions.CORPUS_SEED, instructions.PRETRAIN_TASKS,
                             instructions.WORDS + instructions.OFF_TASK_WORDS)
    data = model.featurize(ds)
    optimizer = torch.optim.AdamW(model.net.parameters(), lr=PRETRAIN_LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(PRETRAIN_STEPS, 0.1))
    generator = torch.Generator().manual_seed(0)
    model.net.train()
    for _ in range(PRETRAIN_STEPS):
        rows = torch.randint(len(data["input_ids"]), (PRETRAIN_BATCH,), generator=generator)
        length = int(data["attention_mask"][rows].sum(dim=1).max())
        ids, mask = data["input_ids"][rows, :length], data["attention_mask"][rows, :length]
        targets = torch.cat([ids[:, 1:].masked_fill(mask[:, 1:] == 0, PAD_LABEL), ids[:, :1] * 0 + PAD_LABEL], 1)
        loss = F.cross_entropy(model(ids, mask).flatten(0, 1), targets.flatten(), ignore_index=PAD_LABEL)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.net.eval()


def tiny_instruction_model(family: str, cfg: ModelConfig, data: DataConfig) -> InstructionModel:
    """A tiny ``family`` (``llama`` / ``gpt2``) causal LM on :func:`corpus_tokenizer`, pretrained once per machine
    (cached, file-locked against concurrent clients), frozen under the PEFT tuner of ``model.peft``."""
    if data.name != "instructions":
        raise ConfigError(f"model.name='tiny-{family}' on instruction data is built for data.name='instructions' "
                          "(its vocabulary); use a hub causal LM (model.name=<hub id or directory>) for other data")
    tokenizer = corpus_tokenizer()
    positions = max(128, data.max_length + cfg.max_new_tokens)
    net = TINY_CONFIGS[family](tokenizer.vocab_size, tokenizer.pad_token_id, positions)
    model = InstructionModel(net, tokenizer, data.max_length, cfg.max_new_tokens)
    recipe = (family, net.config.to_json_string(), instructions.PRETRAIN_TASKS, "lm loss, warm-up 0.1, off-task words",
              sorted(tokenizer.get_vocab().items()), PRETRAIN_STEPS, PRETRAIN_BATCH, PRETRAIN_PER_TASK, PRETRAIN_LR,
              data.max_length, positions, PROMPT)
    path = cache_dir() / f"tiny-{family}-lm-{hashlib.sha256(repr(recipe).encode()).hexdigest()[:12]}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.is_file():
            with torch.random.fork_rng():
                torch.manual_seed(0)
                _pretrain(model)
            torch.save(net.state_dict(), path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
    net.load_state_dict(torch.load(path, weights_only=True))
    model.net = wrap(net, cfg, peft.TaskType.CAUSAL_LM)
    return model


def quantization_config(cfg: ModelConfig) -> transformers.BitsAndBytesConfig | None:
    """bitsandbytes settings of ``model.quantization`` (4bit: NF4 + double quantisation, bfloat16 compute)."""
    if cfg.quantization == "none":
        return None
    if not torch.cuda.is_available():
        raise ConfigError(f"model.quantization={cfg.quantization} needs a CUDA GPU (bitsandbytes); this machine "
                          "has none: set model.quantization=none")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"model.quantization={cfg.quantization} needs the package bitsandbytes "
                          "(pip install 'fedsec[gpu]')") from err
    if cfg.quantization == "8bit":
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                           bnb_4bit_compute_dtype=torch.bfloat16)


def pretrained_instruction_model(name_or_path: str, cfg: ModelConfig, data: DataConfig) -> InstructionModel:
    """Any causal LM by hub id or local directory, quantised by ``model.quantization`` (CUDA only)."""
    quantization = quantization_config(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        if quantization is None:
            net = AutoModelForCausalLM.from_pretrained(name_or_path)
        else:
            net = AutoModelForCausalLM.from_pretrained(name_or_path, quantization_config=quantization,
                                                       device_map={"": torch.cuda.current_device()},
                                                       dtype=torch.bfloat16)
    except (OSError, ValueError) as err:
        where = "local directory" if Path(name_or_path).exists() else "hub id (and not a local path)"
        raise ConfigError(f"model.name='{name_or_path}' cannot be loaded as a causal LM from a {where}: {err}") from err
    if quantization is not None:
        # layer norms and embeddings to float32; checkpointing is wrap()'s (non-reentrant, for every model)
        net = peft.prepare_model_for_kbit_training(net, use_gradient_checkpointing=False)
    model = InstructionModel(net, tokenizer, data.max_length, cfg.max_new_tokens)
    if net.config.pad_token_id is None:
        net.config.pad_token_id = tokenizer.pad_token_id
    model.net = wrap(net, cfg, peft.TaskType.CAUSAL_LM)
    return model
