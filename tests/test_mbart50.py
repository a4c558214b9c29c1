"""Fed-MNMT's paper setting: language-coded seq2seq models (mBART-50) and Europarl directions.

The official code (lancopku/FedMNMT ``data_utils.py``, ``evaluation.py``) tokenizes a
source with ``tokenizer.src_lang = src_code`` and a target with ``tokenizer.src_lang =
tgt_code``, trains with ``labels`` (mBART shifts them right behind ``</s>``) and decodes
with ``generate(forced_bos_token_id=tgt_code)``; these tests compute that reference with
an offline mBART-50 tokenizer and a tiny mBART built from a config.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from conftest import run_inline
from datasets import Dataset
from transformers.models.mbart.modeling_mbart import shift_tokens_right
from transformers.models.mbart50.tokenization_mbart50 import FAIRSEQ_LANGUAGE_CODES

from fedsec.config import Config, ConfigError, DataConfig, ModelConfig
from fedsec.data import europarl, load_splits
from fedsec.models.seq2seq import Translator

WORDS = {"de": "der hund sieht die katze heute nicht", "fr": "le chien voit la chatte aujourd hui pas",
         "nl": "de hond ziet kat vandaag niet"}


def _tokenizer() -> transformers.PreTrainedTokenizerBase:
    words = sorted({w for line in WORDS.values() for w in line.split()})
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581{w}", -1.0) for w in words]
    vocab += [(code, 0.0) for code in FAIRSEQ_LANGUAGE_CODES] + [("<mask>", 0.0)]
    return transformers.MBart50Tokenizer(vocab=vocab)


def _mbart(vocab_size: int) -> transformers.MBartForConditionalGeneration:
    torch.manual_seed(0)
    return transformers.MBartForConditionalGeneration(transformers.MBartConfig(
        vocab_size=vocab_size, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2))


def _rows() -> Dataset:
    pairs = ["de-fr", "fr-de", "de-fr", "nl-de"]
    return Dataset.from_dict({"source": [WORDS[p[:2]] for p in pairs], "target": [WORDS[p[3:]] for p in pairs],
                              "pair": pairs, "label": [0, 1, 0, 2]})


def test_language_codes_follow_the_official_mbart50_convention() -> None:
    tokenizer = _tokenizer()
    translator = Translator(_mbart(len(tokenizer)), tokenizer, ModelConfig(peft="adapter"), max_length=12)
    features = translator.featurize(_rows())
    reference = _tokenizer()
    for i, pair in enumerate(_rows()["pair"]):
        src, tgt = (translator.language_code(lang) for lang in pair.split("-"))
        reference.src_lang = src
        source = reference(WORDS[pair[:2]], max_length=12, truncation=True, padding="max_length")["input_ids"]
        reference.src_lang = tgt  # the official code tokenizes targets this way
        target = reference(WORDS[pair[3:]], max_length=12, truncation=True, padding="max_length")["input_ids"]
        assert features["input_ids"][i].tolist() == source
        assert source[0] == reference.convert_tokens_to_ids(src) and 2 in source
        labels = features["target_labels"][i]
        assert labels[labels != -100].tolist() == [t for t in target if t != reference.pad_token_id]
        shifted = shift_tokens_right(torch.tensor([target]), reference.pad_token_id)[0]
        assert features["decoder_input_ids"][i].tolist() == shifted.tolist()
    assert translator.start_length == 2


def test_decoding_from_the_target_code_is_the_official_forced_bos_generation() -> None:
    tokenizer = _tokenizer()
    translator = Translator(_mbart(len(tokenizer)), tokenizer, ModelConfig(peft="adapter"), max_length=8)
    torch.manual_seed(1)
    for adapter in translator.adapters.values():  # move the adapters off their identity start
        torch.nn.init.normal_(adapter.up.weight, std=0.5)
    special = [i for i in range(len(tokenizer))
               if i < 4 or tokenizer.convert_ids_to_tokens(i) in FAIRSEQ_LANGUAGE_CODES]
    translator.net.final_logits_bias[0, special] = -20.0  # a random model would end at once: make it emit words
    features = translator.featurize(_rows())
    ours = translator.translate(features["input_ids"], features["attention_mask"], features["decoder_input_ids"][:, :2])
    official = []
    for i, pair in enumerate(_rows()["pair"]):
        code = tokenizer.convert_tokens_to_ids(translator.language_code(pair[3:]))
        out = translator.net.generate(input_ids=features["input_ids"][i:i + 1],
                                      attention_mask=features["attention_mask"][i:i + 1], forced_bos_token_id=code,
                                      num_beams=1, do_sample=False, max_new_tokens=9)
        official += tokenizer.batch_decode(out, skip_special_tokens=True)
    assert ours == official
    assert any(ours)  # the comparison is not between empty strings


def test_language_codes_by_prefix_by_name_or_refused() -> None:
    tokenizer = _tokenizer()
    translator = Translator(_mbart(len(tokenizer)), tokenizer,
                            ModelConfig(peft="adapter", language_codes="xx=fi_FI"), max_length=8)
    assert translator.language_code("de") == "de_DE" and translator.language_code("en") == "en_XX"
    assert translator.language_code("xx") == "fi_FI"
    with pytest.raises(ConfigError, match="model.language_codes"):
        translator.language_code("qq")
    with pytest.raises(ConfigError, match="model.language_codes"):
        Translator(_mbart(len(tokenizer)), tokenizer, ModelConfig(peft="adapter", language_codes="de"), 8)


def _fake_europarl(monkeypatch) -> list[str]:
    """Hub configs 'a-b' (alphabetical) of 1,000 lines; every 10th line has one word on the first side."""
    requested: list[str] = []

    def load_dataset(name: str, config: str, split: str) -> Dataset:
        assert name == europarl.HUB_ID and split == "train"
        requested.append(config)
        a, b = config.split("-")
        rows = [{a: (f"{a}{i}" if i % 10 == 0 else f"{a} {i} words"), b: f"{b} {i} words"} for i in range(1000)]
        return Dataset.from_dict({"translation": rows})

    monkeypatch.setattr(europarl.datasets, "load_dataset", load_dataset)
    return requested


def test_europarl_directions_are_split_and_filtered_as_the_official_preprocessing(monkeypatch) -> None:
    requested = _fake_europarl(monkeypatch)
    train, test = europarl.europarl(DataConfig(name="europarl", pairs="pl-en,de-fr", train_size=100, test_size=20))
    assert requested == ["en-pl", "de-fr"]  # the hub config of the two languages in alphabetical order
    assert train.features["label"].names == ["pl-en", "de-fr"]
    for split, per_pair in ((train, 50), (test, 10)):
        for label, (src, tgt) in enumerate((("pl", "en"), ("de", "fr"))):
            rows = split.filter(lambda r, label=label: r["label"] == label)
            assert len(rows) == per_pair
            assert all(s.startswith(f"{src} ") and t.startswith(f"{tgt} ") for s, t in zip(rows["source"],
                                                                                           rows["target"]))
            assert all(s.split()[1] == t.split()[1] for s, t in zip(rows["source"], rows["target"]))
    lines = lambda split: {(r["pair"], r["source"].split()[1]) for r in split}  # noqa: E731
    assert not lines(train) & lines(test)  # train and test come from disjoint 60 % / 20 % cuts
    default = europarl.europarl(DataConfig(name="europarl", pairs="de-fr", train_size=0, test_size=0))
    assert (len(default[0]), len(default[1])) == (6, 2)  # the official 1 % of the 600 / 200 lines


def test_data_pairs_choose_directions_and_are_refused_where_they_cannot_apply() -> None:
    splits = load_splits(DataConfig(name="multilingual", pairs="no1-so1,so2-ea2", train_size=20, test_size=4), 0)
    assert splits.label_names == ["no1-so1", "so2-ea2"] and len(splits.train) == 20
    with pytest.raises(ConfigError, match="data.pairs"):
        load_splits(DataConfig(name="multilingual", pairs="no1-ea2"), seed=0)
    with pytest.raises(ConfigError, match="data.pairs"):
        Config.from_dict({"data": {"name": "tweets_polarity", "pairs": "de-fr"}})
    with pytest.raises(ConfigError, match="model.language_codes"):
        Config.from_dict({"model": {"language_codes": "de=de_DE"}})


def test_a_parallel_csv_file_is_translation_data_and_data_pairs_pick_its_directions(tmp_path) -> None:
    path = tmp_path / "parallel.csv"
    directions = ["de-fr", "fr-de", "nl-de"] * 5
    lines = ["source,target,direction"] + [f"{WORDS[p[:2]]},{WORDS[p[3:]]},{p}" for p in directions]
    path.write_text("\n".join(lines) + "\n")
    cfg = DataConfig(name="csv", path=str(path), label_column="direction", pairs="nl-de,de-fr", test_size=0)
    splits = load_splits(cfg, seed=0)
    assert splits.modality == "translation" and splits.label_names == ["nl-de", "de-fr"]
    rows = [*splits.train, *splits.test]
    assert len(rows) == 10
    assert all(splits.label_names[r["label"]] == r["pair"] and r["source"] == WORDS[r["pair"][:2]] for r in rows)
    with pytest.raises(ConfigError, match="data.pairs"):
        load_splits(DataConfig(name="csv", path=str(path), label_column="direction", pairs="en-de"), seed=0)


def test_fedmnmt_federates_a_coded_model_on_europarl_directions(tmp_path, monkeypatch) -> None:
    """The GPU variant's combination, end to end on the inline backend: a local mBART-50-style model
    (tiny, saved to disk), Europarl directions, the official language families."""
    _fake_europarl(monkeypatch)
    tokenizer = _tokenizer()
    model_dir = tmp_path / "mbart"
    _mbart(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rows = run_inline("mnmt.yaml", tmp_path / "run", "data.name=europarl", "data.pairs=de-fr,fr-de,nl-de",
                      f"model.name={model_dir}", "federation.num_clients=3", "federation.clients_per_round=3",
                      "data.train_size=48", "data.test_size=6", "data.max_length=12", "run.num_rounds=1",
                      "client.epochs=1", "fedmnmt.clustering=family", f"fedmnmt.families={europarl.FAMILIES}")
    assert set(rows[1]["bleu"]) == {"de-fr", "fr-de", "nl-de"}
    assert rows[1]["source_clusters"] == [0, 1, 0] and rows[1]["target_clusters"] == [1, 0, 0]
    assert rows[1]["bytes_up"] < rows[1]["bytes_full_model"]
