"""Frozen seq2seq translation models with bottleneck adapters (Fed-MNMT).

Adapter (Houlsby-style, as in Fed-MNMT): a(x) = x + W2 ReLU(W1 x), W1: d -> m,
W2: m -> d (m = ``model.adapter_size``, by default d_model / 16 as in the paper),
with W2 = 0 at initialisation so that the
frozen backbone's output is unchanged until training moves it. Adapters sit on
the output of every encoder layer's self-attention and feed-forward blocks and of
every decoder layer's self-attention, cross-attention and feed-forward blocks
(forward hooks, so any BART-like model works: Marian, mBART, BART; T5 by its
block layout). Only the adapters, and the layer norms if
``model.train_layer_norms``, train and travel.

Pruning (``model.adapter_layers``): ``all``, or only the ``model.adapter_keep``
layers at the ``input`` end, the ``middle`` or the ``output`` end of each stack.

Target language: a vocabulary with ``<2xx>`` tags (the embedded default) starts the
decoder from the tag. A tokenizer with language codes (``src_lang`` / ``tgt_lang``:
mBART-50, M2M-100, NLLB) is used as Fed-MNMT's official code uses mBART-50
(``data_utils.py``, ``evaluation.py``): the source is ``[src_code] X </s>``, the
labels ``[tgt_code] Y </s>``, the decoder input the labels shifted right behind the
decoder start token (``</s>`` for mBART-50), and decoding starts from
``[decoder_start, tgt_code]``, which is what ``generate(forced_bos_token_id=tgt_code)``
produces. A language's code is ``model.language_codes``'s, or else the tokenizer's
one code equal to it, ``__xx__`` or starting with ``xx_`` (``de`` -> ``de_DE``, as
the official ``lan_dict``).

The offline default ``tiny-marian`` is a 2+2-layer Marian model (d = 64) over the
word vocabulary of the embedded corpus (``fedsec.data.multilingual``), pretrained
once per machine on the reverse directions of the corpus pairs (many-to-many,
like a multilingual pretrained backbone) and cached under
``$XDG_CACHE_HOME/fedsec``. Any Hugging Face seq2seq model loads by name or path.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from datasets import Dataset
from filelock import FileLock
from torch import nn

from fedsec.config import ConfigError, DataConfig, ModelConfig
from fedsec.data import Splits, multilingual
from fedsec.models.registry import MODELS
from fedsec.registry import Traits
from fedsec.training import PAD_LABEL, loss_of

SPECIALS = ["<pad>", "</s>", "<unk>"]
ADAPTER_RATIO = 16  # model.adapter_size 0: a bottleneck of d_model / 16 (Fed-MNMT: 64 on mBART-50's 1024)


def target_tag(language: str) -> str:
    """The token that tells a many-to-many model which language to produce."""
    return f"<2{language}>"


def parse_language_codes(spec: str) -> dict[str, str]:
    """``"de=de_DE,en=en_XX"`` -> {"de": "de_DE", "en": "en_XX"} (``model.language_codes``)."""
    codes: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        language, sep, code = item.partition("=")
        if not sep or not language.strip() or not code.strip():
            raise ConfigError(f"model.language_codes={spec!r}: '{item}' is not language=code")
        codes[language.strip()] = code.strip()
    return codes


class Adapter(nn.Module):
    """x + W2 ReLU(W1 x); W2 starts at zero."""

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.relu(self.down(x)))


def _sublayers(net: nn.Module) -> dict[str, list[dict[str, nn.Module]]]:
    """Per stack (encoder, decoder), per layer: the blocks an adapter follows."""
    base = getattr(net, "model", net)
    encoder, decoder = base.get_encoder(), base.get_decoder()
    if hasattr(encoder, "layers"):  # BART family: Marian, mBART, BART
        enc = [{"self_attn": layer.self_attn, "ffn": layer.fc2} for layer in encoder.layers]
        dec = [{"self_attn": layer.self_attn, "cross_attn": layer.encoder_attn, "ffn": layer.fc2}
               for layer in decoder.layers]
    elif hasattr(encoder, "block"):  # T5 family
        enc = [{"self_attn": b.layer[0], "ffn": b.layer[-1]} for b in encoder.block]
        dec = [{"self_attn": b.layer[0], "cross_attn": b.layer[1], "ffn": b.layer[-1]} for b in decoder.block]
    else:
        raise ConfigError(f"adapters: unknown seq2seq layout {type(net).__name__} (BART- or T5-like expected)")
    return {"encoder": enc, "decoder": dec}


def kept_layers(num_layers: int, where: str, keep: int) -> list[int]:
    """The layer indices that keep their adapters."""
    if where == "all" or keep >= num_layers:
        return list(range(num_layers))
    keep = max(1, keep)
    start = {"input": 0, "middle": (num_layers - keep) // 2, "output": num_layers - keep}[where]
    return list(range(start, start + keep))


def _after(adapter: Adapter):
    def hook(module: nn.Module, args: tuple, output):
        if isinstance(output, tuple):
            return (adapter(output[0]), *output[1:])
        return adapter(output)

    return hook


class Translator(nn.Module):
    """A frozen seq2seq model plus adapters; ``forward`` gives next-token logits (batch, time, vocab)."""

    def __init__(self, net: nn.Module, tokenizer, cfg: ModelConfig, max_length: int) -> None:
        super().__init__()
        self.net, self.tokenizer, self.max_length = net, tokenizer, max_length
        self.codes = parse_language_codes(cfg.language_codes)
        for p in net.parameters():
            p.requires_grad = False
        if cfg.train_layer_norms:
            for _name, module in net.named_modules():
                if isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("LayerNorm"):
                    for p in module.parameters():
                        p.requires_grad = True
        dim = net.config.d_model
        bottleneck = cfg.adapter_size or max(1, dim // ADAPTER_RATIO)
        self.adapters = nn.ModuleDict()
        for stack, layers in _sublayers(net).items():
            for i in kept_layers(len(layers), cfg.adapter_layers, cfg.adapter_keep):
                for block, module in layers[i].items():
                    adapter = Adapter(dim, bottleneck)
                    self.adapters[f"{stack}-{i}-{block}"] = adapter
                    module.register_forward_hook(_after(adapter))

    @functools.cached_property
    def _vocab(self) -> dict[str, int]:
        """The tokenizer's vocabulary, read once (mBART-50's has 250k entries)."""
        return self.tokenizer.get_vocab()

    @property
    def coded(self) -> bool:
        """Whether the tokenizer marks languages with codes (mBART-50, M2M-100, NLLB)."""
        return hasattr(self.tokenizer, "src_lang") and hasattr(self.tokenizer, "tgt_lang")

    @property
    def start_length(self) -> int:
        """Decoder tokens that precede the translation: the start token, and the target code if coded."""
        return 2 if self.coded else 1

    def featurize(self, ds: Dataset) -> dict[str, torch.Tensor]:
        """Token ids of source and target; padded labels are ``PAD_LABEL``.

        The decoder starts from the target-language tag when the vocabulary has one;
        a coded tokenizer tokenizes each pair with its source and target codes.
        """
        rows = ds[:]
        out: dict[str, torch.Tensor] = {}
        for pair in sorted(set(rows["pair"])):
            index = [i for i, p in enumerate(rows["pair"]) if p == pair]
            part = self._featurize_pair(pair, [rows["source"][i] for i in index], [rows["target"][i] for i in index])
            for key, value in part.items():
                out.setdefault(key, value.new_empty((len(ds), *value.shape[1:])))[index] = value
        return out

    def _featurize_pair(self, pair: str, sources: list[str], targets: list[str]) -> dict[str, torch.Tensor]:
        src, tgt = pair.split("-", 1)
        if self.coded:
            self.tokenizer.src_lang, self.tokenizer.tgt_lang = self.language_code(src), self.language_code(tgt)
        enc = self.tokenizer(sources, max_length=self.max_length, truncation=True, padding="max_length",
                             return_tensors="pt")
        labels = self.tokenizer(text_target=targets, max_length=self.max_length, truncation=True,
                                padding="max_length", return_tensors="pt")["input_ids"]
        start = self._vocab.get(target_tag(tgt), self.net.config.decoder_start_token_id)
        decoder_input_ids = torch.cat([torch.full((len(sources), 1), start), labels[:, :-1]], dim=1)
        labels = labels.masked_fill(labels == self.net.config.pad_token_id, PAD_LABEL)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "decoder_input_ids": decoder_input_ids, "target_labels": labels}

    def language_code(self, language: str) -> str:
        """The tokenizer's code of ``language`` (``model.language_codes`` first)."""
        if language in self.codes:
            return self.codes[language]
        special = [t for t in self.tokenizer.all_special_tokens if t in self._vocab]
        for exact in (language, f"__{language}__"):
            if exact in special:
                return exact
        found = [t for t in special if t.lower().startswith(f"{language.lower()}_")]
        if len(found) != 1:
            raise ConfigError(f"model.language_codes: no single language code of model.name's tokenizer for "
                              f"'{language}' ({'candidates ' + ', '.join(found) if found else 'none starts with it'});"
                              f" name it, e.g. model.language_codes='{language}=<code>'")
        return found[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=input_ids, attention_mask=attention_mask,
                        decoder_input_ids=decoder_input_ids).logits

    @torch.no_grad()
    def translate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: torch.Tensor) -> list[str]:
        """Greedy decoding from the decoder start tokens ``start`` (batch, 1)."""
        self.eval()
        out = self.net.generate(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=start,
                                num_beams=1, do_sample=False, max_new_tokens=self.max_length)
        return self.tokenizer.batch_decode(out[:, start.shape[1]:], skip_special_tokens=True)


# ---------------------------------------------------------------- the embedded default
def word_tokenizer(words: list[str], tags: list[str]) -> transformers.PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over ``words`` (plus specials and language tags)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(SPECIALS + tags + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))  # noqa: S106 (a token, not a password)
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **special)


def _tiny_marian(vocab_size: int) -> transformers.MarianMTModel:
    config = transformers.MarianConfig(
        vocab_size=vocab_size, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=1, dropout=0.0,
        scale_embedding=True,
    )
    return transformers.MarianMTModel(config)


PRETRAIN_BATCH, PRETRAIN_PER_PAIR = 32, 400


def _pretrain(net: transformers.MarianMTModel, tokenizer, corpus: multilingual.Corpus, max_length: int) -> None:
    """Many-to-many pretraining on the reverse directions of the corpus pairs (seeded)."""
    torch.manual_seed(0)
    reverse = [(t, s) for s, t in corpus.pairs]
    ds = corpus.parallel(reverse, PRETRAIN_PER_PAIR, seed=corpus.seed + 3)
    cfg = ModelConfig(name="tiny-marian", peft="adapter", adapter_layers="all")
    data = Translator(net, tokenizer, cfg, max_length).featurize(ds)
    for p in net.parameters():
        p.requires_grad = True
    optimizer = torch.optim.AdamW(net.parameters(), lr=corpus.pretrain_lr)
    generator = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(corpus.pretrain_steps):
        rows = torch.randint(len(data["input_ids"]), (PRETRAIN_BATCH,), generator=generator)
        logits = net(input_ids=data["input_ids"][rows], attention_mask=data["attention_mask"][rows],
                     decoder_input_ids=data["decoder_input_ids"][rows]).logits
        loss = loss_of(logits, {"target_labels": data["target_labels"][rows]})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fedsec"


@MODELS.register("tiny-marian", traits=Traits(modalities=frozenset({"translation"})))
def tiny_marian(cfg: ModelConfig, data: DataConfig, splits: Splits) -> Translator:
    """The embedded default: a tiny Marian model pretrained on the generated corpus (cached), frozen."""
    corpus = multilingual.corpus_of(data.name)
    if corpus is None:
        raise ConfigError(f"model.name='tiny-marian' is built for the embedded corpora (data.name in "
                          f"{sorted(multilingual.CORPORA)}: its vocabulary), not data.name={data.name!r}")
    tags = [target_tag(lang) for lang in corpus.languages()]
    tokenizer = word_tokenizer(corpus.vocabulary(), tags)
    recipe = (list(corpus.pairs), corpus.vocabulary(), corpus.pretrain_steps, corpus.pretrain_lr, PRETRAIN_BATCH,
              data.max_length, "tag-starts-decoder")
    key = hashlib.sha256(repr(recipe).encode()).hexdigest()[:12]
    path = cache_dir() / f"tiny-marian-{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    net = _tiny_marian(len(tokenizer))
    with FileLock(str(path) + ".lock"):  # concurrent clients: one pretrains, the others wait and load
        if not path.is_file():
            _pretrain(net, tokenizer, corpus, data.max_length)
            torch.save(net.state_dict(), path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
    net.load_state_dict(torch.load(path, weights_only=True))
    return Translator(net, tokenizer, cfg, data.max_length)


def pretrained_translator(name_or_path: str, cfg: ModelConfig, data: DataConfig) -> Translator:
    """Any Hugging Face seq2seq model (Marian, mBART-50, T5, ...) by hub name or local path."""
    net = transformers.AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path)
    return Translator(net, tokenizer, cfg, data.max_length)
