"""Fed-MNMT: adapters on a frozen seq2seq backbone, clustered aggregation, BLEU and traffic."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from conftest import run_inline
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from fedsec.config import Config, ModelConfig
from fedsec.data import multilingual
from fedsec.models.seq2seq import Translator, kept_layers
from fedsec.params import get_arrays
from strategies.fedmnmt import FedMNMT, parse_families

CONFIG = Path(__file__).resolve().parent.parent / "simulations" / "configs" / "mnmt.yaml"


def _tiny(kind: str) -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    if kind == "t5":
        return transformers.T5ForConditionalGeneration(transformers.T5Config(
            vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
            decoder_start_token_id=0))
    return transformers.MarianMTModel(transformers.MarianConfig(
        vocab_size=50, d_model=32, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))


@pytest.mark.parametrize("kind", ["marian", "t5"])
def test_adapters_leave_the_frozen_backbone_unchanged_at_initialisation(kind) -> None:
    net = _tiny(kind).eval()
    reference = copy.deepcopy(net)
    model = Translator(net, tokenizer=None, cfg=ModelConfig(peft="adapter", adapter_size=8), max_length=8).eval()
    ids = torch.randint(2, 50, (3, 7))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "decoder_input_ids": ids}
    with torch.no_grad():
        expected = reference(**inputs).logits
        assert torch.allclose(model(**inputs), expected, atol=1e-6)
        adapter = next(iter(model.adapters.values()))
        adapter.up.weight.normal_()  # once W2 moves, the output moves
        assert not torch.allclose(model(**inputs), expected, atol=1e-3)
    per_layer = 2 + 3  # encoder: self-attention, FFN; decoder: also cross-attention
    assert len(model.adapters) == per_layer * (3 if kind == "marian" else 2)


def test_only_adapters_and_layer_norms_train_and_travel() -> None:
    model = Translator(_tiny("marian"), None, ModelConfig(peft="adapter", adapter_size=8), 8)
    keys = list(get_arrays(model).keys())
    assert keys and all(k.startswith("adapters.") or "layer_norm" in k for k in keys)
    assert any(k.startswith("adapters.decoder-0-cross_attn") for k in keys)
    frozen = Translator(_tiny("marian"), None, ModelConfig(peft="adapter", adapter_size=8, train_layer_norms=False), 8)
    assert all(k.startswith("adapters.") for k in get_arrays(frozen))


def test_adapter_pruning_keeps_the_chosen_end() -> None:
    assert kept_layers(12, "input", 4) == [0, 1, 2, 3]
    assert kept_layers(12, "middle", 4) == [4, 5, 6, 7]
    assert kept_layers(12, "output", 4) == [8, 9, 10, 11]
    assert kept_layers(12, "all", 4) == list(range(12))
    model = Translator(_tiny("marian"), None, ModelConfig(peft="adapter", adapter_size=8, adapter_layers="output",
                                                          adapter_keep=1), 8)
    assert sorted(model.adapters) == ["decoder-2-cross_attn", "decoder-2-ffn", "decoder-2-self_attn",
                                      "encoder-2-ffn", "encoder-2-self_attn"]


def test_communication_reduction_for_an_mbart50_sized_model() -> None:
    config = transformers.MBartConfig(vocab_size=250054, d_model=1024, encoder_layers=12, decoder_layers=12,
                                      encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                                      decoder_ffn_dim=4096, max_position_embeddings=1024)
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = Translator(transformers.MBartForConditionalGeneration(config), None,
                           ModelConfig(peft="adapter"), 128)  # adapter_size 0: d_model / 16 = 64
    total = sum(p.numel() for p in model.parameters())
    travelling = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 600e6 < total < 630e6  # mBART-50 large: ~611M parameters
    assert 7.5e6 < travelling < 8.5e6  # the paper's ~8.0M (adapters + layer norms)
    assert 1 - travelling / total >= 0.98


def _reply(pid: int, values: dict[str, float]) -> Message:
    arrays = ArrayRecord({k: Array(np.full(2, v, dtype=np.float32)) for k, v in values.items()})
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 10}),
                          "client": ConfigRecord({"partition-id": pid, "num-partitions": 4})})
    return Message(content=content, dst_node_id=pid + 1, message_type=MessageType.TRAIN)


def test_encoder_adapters_average_by_source_cluster_and_decoder_adapters_by_target_cluster(task_identity) -> None:
    cfg = Config.load(CONFIG, ["fedmnmt.clustering=family", "federation.num_clients=4",
                               "federation.clients_per_round=4"])
    pairs = [("a1", "b1"), ("a2", "b2"), ("b1", "a1"), ("b2", "a2")]
    strategy = FedMNMT(cfg, pairs, parse_families("a1,a2;b1,b2"))
    replies = [_reply(pid, {"adapters.encoder-0-ffn.w": float(pid), "adapters.decoder-0-ffn.w": 10.0 * pid})
               for pid in range(4)]
    _, metrics = strategy.aggregate_train(1, replies)
    enc = {pid: float(strategy.arrays_of[pid]["adapters.encoder-0-ffn.w"].numpy()[0]) for pid in range(4)}
    dec = {pid: float(strategy.arrays_of[pid]["adapters.decoder-0-ffn.w"].numpy()[0]) for pid in range(4)}
    assert enc == {0: 0.5, 1: 0.5, 2: 2.5, 3: 2.5}  # sources a1, a2 | b1, b2
    assert dec == {0: 5.0, 1: 5.0, 2: 25.0, 3: 25.0}  # targets b1, b2 | a1, a2
    assert metrics["source_cluster_ari"] == 1.0 and metrics["target_cluster_ari"] == 1.0
    none = FedMNMT(Config.load(CONFIG, ["fedmnmt.clustering=none", "federation.num_clients=4",
                                        "federation.clients_per_round=4"]), pairs, {})
    none.aggregate_train(1, [_reply(pid, {"adapters.encoder-0-ffn.w": float(pid)}) for pid in range(4)])
    assert {float(a["adapters.encoder-0-ffn.w"].numpy()[0]) for a in none.arrays_of.values()} == {1.5}
    isolated = FedMNMT(Config.load(CONFIG, ["fedmnmt.clustering=isolated", "federation.num_clients=4",
                                            "federation.clients_per_round=4"]), pairs, parse_families("a1,a2;b1,b2"))
    _, metrics = isolated.aggregate_train(1, replies)
    assert {pid: float(a["adapters.decoder-0-ffn.w"].numpy()[0]) for pid, a in isolated.arrays_of.items()} == {
        0: 0.0, 1: 10.0, 2: 20.0, 3: 30.0}  # nothing shared
    assert list(metrics["source_clusters"]) == [0, 1, 2, 3]


@pytest.mark.parametrize("name", sorted(multilingual.CORPORA))
def test_embedded_corpora_cross_families_and_share_words_within_them(name) -> None:
    corpus = multilingual.CORPORA[name]
    sources, targets = zip(*corpus.pairs, strict=True)
    assert sorted(sources) == sorted(targets) == sorted(corpus.languages())  # each language once on each side
    assert all(corpus.family_of(s) != corpus.family_of(t) for s, t in corpus.pairs)
    for langs in corpus.families.values():  # a family's sources translate into several families
        assert len({corpus.family_of(t) for s, t in corpus.pairs if s in langs}) >= min(len(langs), 2)
    lexicons = corpus.lexicons()
    words = {lang: {w for ws in lexicon.values() for w in ws} for lang, lexicon in lexicons.items()}
    shared = lambda a, b: len(words[a] & words[b]) / len(words[a])  # noqa: E731
    within = [shared(a, b) for langs in corpus.families.values() for a in langs for b in langs if a != b]
    across = [shared(a, b) for a in words for b in words if corpus.family_of(a) != corpus.family_of(b)]
    assert min(within) > 0.3 and max(across) < 0.1, (min(within), max(across))
    rows = corpus.parallel(corpus.pairs[:2], 3, seed=0)
    assert rows["pair"] == [f"{s}-{t}" for s, t in corpus.pairs[:2] for _ in range(3)]


def test_the_sixteen_language_corpus_federates_a_tiny_marian(tmp_path, monkeypatch) -> None:
    """One client per direction, the corpus's families as clusters. The backbone's pretraining is cut to
    50 steps (its own cache entry): this tests the plumbing, the evidence study the translation."""
    import dataclasses

    corpus = multilingual.CORPORA["multilingual16"]
    monkeypatch.setitem(multilingual.CORPORA, "multilingual16", dataclasses.replace(corpus, pretrain_steps=50))
    rows = run_inline(CONFIG.name, tmp_path / "sixteen", "data.name=multilingual16", "federation.num_clients=16",
                      "federation.clients_per_round=16", "data.train_size=320", "data.test_size=32",
                      "run.num_rounds=1", "client.epochs=1", "fedmnmt.clustering=family")
    assert set(rows[1]["bleu"]) == {f"{s}-{t}" for s, t in corpus.pairs}
    assert rows[1]["source_cluster_ari"] == 1.0 and rows[1]["target_cluster_ari"] == 1.0
    assert len(set(rows[1]["source_clusters"])) == 4


@pytest.mark.slow
def test_gradient_clustering_recovers_the_language_families(tmp_path) -> None:
    # adapter size 64: at the default d_model / 16 = 4 the target side is only partly recovered (docs/methods/fedmnmt)
    rows = run_inline(CONFIG.name, tmp_path / "gradient", "fedmnmt.clustering=gradient", "run.num_rounds=2",
                      "model.adapter_size=64")
    corpus = multilingual.CORPORA["multilingual"]
    families = {lang: i for i, langs in enumerate(corpus.families.values()) for lang in langs}
    pairs = corpus.pairs
    assert rows[2]["source_cluster_ari"] == 1.0 and rows[2]["target_cluster_ari"] == 1.0, rows[2]
    # the clusters are the families (up to renaming)
    assert len(set(rows[2]["source_clusters"])) == len(corpus.families)
    same = lambda clusters, langs: [[clusters[i] == clusters[j] for j in range(8)] for i in range(8)]  # noqa: E731
    truth = [[families[pairs[i][0]] == families[pairs[j][0]] for j in range(8)] for i in range(8)]
    assert same(rows[2]["source_clusters"], None) == truth
    # BLEU per pair, macro and micro; only adapters travel
    assert set(rows[2]["bleu"]) == {f"{s}-{t}" for s, t in pairs}
    assert rows[2]["bleu_micro"] == pytest.approx(rows[2]["bleu_macro"])  # equal test sizes
    assert rows[2]["bytes_up"] < 0.3 * rows[2]["bytes_full_model"] / 2
