"""Each method against a small reference computed from its official code's formula (issue #14).

Every test here recomputes, on numbers, what the official implementation does
(``shared/METHODS.md`` names the repositories) and compares fedsec's output.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from strategies.krum import UpdateKrumSelection, krum_scores


def _content(arrays: dict[str, np.ndarray], pid: int) -> RecordDict:
    return RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                       "client": ConfigRecord({"partition-id": pid, "num-partitions": 8})})


# ------------------------------------------------------------------ Krum family
def test_krum_scores_match_the_definition() -> None:
    rng = np.random.default_rng(0)
    updates = rng.normal(size=(7, 5))
    f = 2
    reference = []
    for i in range(7):
        d = sorted(float(((updates[i] - updates[j]) ** 2).sum()) for j in range(7) if j != i)
        reference.append(sum(d[: 7 - f - 2]))
    np.testing.assert_allclose(krum_scores(updates, f), reference, rtol=1e-12)


def test_krum_excludes_a_planted_outlier_at_two_million_parameters() -> None:
    """||w||^2 ~ 5,000 over 2 M float32 weights: Flower's float32 expansion loses the distances."""
    from flwr.serverapp.strategy.multikrum import compute_distances

    rng = np.random.default_rng(0)
    d, n, outlier = 2_000_000, 8, 3
    w = rng.normal(0, 0.05, d).astype(np.float32)
    deltas = [rng.normal(0, 5e-5, d).astype(np.float32) for _ in range(n)]
    deltas[outlier] = rng.normal(0, 2e-4, d).astype(np.float32)
    weights = [w + delta for delta in deltas]
    exact = np.array([[float(((weights[i].astype(np.float64) - weights[j]) ** 2).sum()) for j in range(n)]
                      for i in range(n)])
    flower = compute_distances([ArrayRecord({"w": Array(x)}) for x in weights])
    off = ~np.eye(n, dtype=bool)
    assert np.abs(flower - exact)[off].max() / exact[off].min() > 0.5  # why Flower's rule is not used
    selection = UpdateKrumSelection()
    selection.reference = ArrayRecord({"w": Array(w)})
    contents = [_content({"w": x}, pid) for pid, x in enumerate(weights)]
    picked = [int(c["client"]["partition-id"]) for c in selection(contents, 1, n - 1)]
    assert outlier not in picked and len(picked) == n - 1
    assert int(selection(contents, 1, 1)[0]["client"]["partition-id"]) != outlier


# ------------------------------------------------------------------ Min-Sum
def _official_min_sum(all_updates: np.ndarray, bound: str, lamda: float = 10.0) -> np.ndarray:
    """``our_attack_score`` of the authors' notebooks (dev_type='std'), transcribed to numpy."""
    model_re, deviation = all_updates.mean(0), all_updates.std(0)
    distances = np.stack([np.linalg.norm(all_updates - u, axis=1) ** 2 for u in all_updates])
    scores = distances.sum(axis=1)
    limit = scores.min() if bound == "min" else scores.max()
    lamda_fail, lamda_succ = lamda, 0.0
    while abs(lamda_succ - lamda) > 1e-5:
        mal_update = model_re - lamda * deviation
        if (np.linalg.norm(all_updates - mal_update, axis=1) ** 2).sum() <= limit:
            lamda_succ, lamda = lamda, lamda + lamda_fail / 2
        else:
            lamda = lamda - lamda_fail / 2
        lamda_fail /= 2
    return model_re - lamda_succ * deviation


@pytest.mark.parametrize("bound", ["min", "max"])
def test_min_sum_matches_the_authors_search(bound: str) -> None:
    from clients.attacks import OMNISCIENT_ATTACKS
    from fedsec.config import Config

    honest = np.random.default_rng(3).normal(1.0, 0.5, size=(9, 40))
    cfg = Config.from_flat({"min_sum.bound": bound})
    np.testing.assert_allclose(OMNISCIENT_ATTACKS["min_sum"](honest, 11, 2, cfg), _official_min_sum(honest, bound),
                               rtol=1e-9, atol=1e-9)


def test_min_sum_defaults_to_the_authors_minimum_bound() -> None:
    from clients.attacks import OMNISCIENT_ATTACKS
    from fedsec.config import Config

    honest = np.random.default_rng(4).normal(0.0, 1.0, size=(9, 40))
    default = OMNISCIENT_ATTACKS["min_sum"](honest, 11, 2, Config())
    loose = OMNISCIENT_ATTACKS["min_sum"](honest, 11, 2, Config.from_flat({"min_sum.bound": "max"}))
    mu = honest.mean(0)
    assert np.linalg.norm(default - mu) < np.linalg.norm(loose - mu)  # the minimum bound is the stealthier
    np.testing.assert_allclose(default, _official_min_sum(honest, "min"), rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ model replacement
def test_boost_scales_by_clients_over_attackers_sampled_this_round() -> None:
    from flwr.app import RecordDict as State

    from clients.attacks.model_poison import MODEL_POISONS, PoisonContext
    from fedsec.config import Config

    cfg = Config.from_flat({"federation.clients_per_round": 10})
    w, local = {"a": np.ones(3)}, {"a": np.array([2.0, 1.0, 0.0])}
    for clients, attackers in ((10, 1), (10, 2), (8, 4)):
        ctx = PoisonContext(cfg=cfg, round_clients=clients, round_attackers=attackers,
                            rng=np.random.default_rng(0), state=State())
        # Bagdasaryan et al.: X = G + gamma (L - G) with gamma = n / eta shared by the m attackers
        np.testing.assert_allclose(MODEL_POISONS["boost"](w, local, ctx)["a"],
                                   1 + clients / attackers * (local["a"] - 1))


# ------------------------------------------------------------------ Fed-MNMT
def _official_random_share_list(num_clients: int, family_num: int, rng) -> list[list[int]]:
    """``get_random_share_list`` of lancopku/FedMNMT (main.py), transcribed."""
    share_list: list[list[int]] = [[] for _ in range(family_num)]
    per_family = num_clients // family_num
    index = list(range(num_clients))
    rng.shuffle(index)
    end = 0
    for family in range(family_num):
        start, end = per_family * family, per_family * family + per_family
        share_list[family].extend(index[start:end])
    share_list[-1].extend(index[end:])
    return share_list


@pytest.mark.parametrize(("n", "k"), [(8, 3), (9, 3), (10, 4), (5, 2)])
def test_fedmnmt_random_groups_are_the_official_balanced_groups(n: int, k: int) -> None:
    import random

    from strategies.fedmnmt import balanced_random_groups

    languages = [f"l{i}" for i in range(n)]
    ours = balanced_random_groups(languages, k, random.Random(7))
    official = _official_random_share_list(n, k, random.Random(7))
    assert sorted(sorted(languages[i] for i in g) for g in official) == sorted(
        sorted(lang for lang in languages if ours[lang] == c) for c in set(ours.values()))
    sizes = sorted(list(ours.values()).count(c) for c in range(k))
    assert sizes[0] == n // k and sum(sizes) == n  # no singletons by chance


def test_fedmnmt_sends_each_client_its_own_adapters(task_identity) -> None:
    """Flower's FedAvg shares one RecordDict between its messages: per-client arrays must not leak."""
    from pathlib import Path

    from fedsec.config import Config
    from strategies.fedmnmt import FedMNMT, parse_families

    cfg = Config.load(Path(__file__).resolve().parent.parent / "simulations" / "configs" / "mnmt.yaml",
                      ["federation.num_clients=4", "federation.clients_per_round=4"])
    strategy = FedMNMT(cfg, [("a1", "b1"), ("a2", "b2"), ("b1", "a1"), ("b2", "a2")], parse_families("a1,a2;b1,b2"))
    start = ArrayRecord({"adapters.encoder-0-ffn.w": Array(np.zeros(2, dtype=np.float32))})
    for pid in range(4):
        strategy.arrays_of[pid] = ArrayRecord({"adapters.encoder-0-ffn.w": Array(np.full(2, pid, dtype=np.float32))})

    class Grid:
        partition_of = {pid + 1: pid for pid in range(4)}

        def get_node_ids(self) -> list[int]:
            return [1, 2, 3, 4]

    messages = strategy.configure_train(1, start, ConfigRecord({}), Grid())
    received = {m.metadata.dst_node_id - 1: float(m.content["arrays"]["adapters.encoder-0-ffn.w"].numpy()[0])
                for m in messages}
    assert received == {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}


# ------------------------------------------------------------------ CReFF
def _official_distance_wb(gwr, gws):
    """``distance_wb`` of CReFF-FL (Dataset/Gradient_matching_loss.py) for 2-D and 1-D tensors."""
    import torch

    if gwr.dim() == 1:  # bias: one row (the official ``return 0`` is commented out)
        gwr, gws = gwr.reshape(1, -1), gws.reshape(1, -1)
    return torch.sum(1 - torch.sum(gwr * gws, dim=-1) / (torch.norm(gwr, dim=-1) * torch.norm(gws, dim=-1) + 0.000001))


def test_creff_matching_loss_is_the_official_distance_wb() -> None:
    import torch

    from strategies.creff import distance_wb

    g = torch.Generator().manual_seed(0)
    real_w, syn_w = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    real_b, syn_b = torch.randn(4, generator=g), torch.randn(4, generator=g)
    assert torch.allclose(distance_wb(real_w, syn_w), _official_distance_wb(real_w, syn_w))
    assert torch.allclose(distance_wb(real_b, syn_b), _official_distance_wb(real_b, syn_b))
    # one cosine per row, not one for the flattened gradient
    flat = 1 - torch.nn.functional.cosine_similarity(real_w.flatten(), syn_w.flatten(), dim=0)
    assert not torch.allclose(distance_wb(real_w, syn_w), flat)


def test_creff_server_averages_class_gradients_uniformly_and_retrains_with_batches_of_32() -> None:
    import torch

    from fedsec.class_gradients import ClassGradient, class_mean
    from strategies import creff

    a = {0: ClassGradient(torch.zeros(2, 3), torch.zeros(2), 1)}
    b = {0: ClassGradient(torch.ones(2, 3), torch.ones(2), 99)}
    assert torch.allclose(class_mean([a, b], weighted=False)[0].weight, torch.full((2, 3), 0.5))  # CReFF's server
    assert torch.allclose(class_mean([a, b], weighted=True)[0].weight, torch.full((2, 3), 0.99))  # RedGrape's
    assert creff.BATCH_SIZE == 32


# ------------------------------------------------------------------ RedGrape's personal bias attractor
def _redgrape(share: bool):
    from fedsec.config import Config
    from strategies.redgrape import RedGrape
    from strategies.registry import STRATEGIES

    cfg = Config.from_flat({"data.name": "digits", "model.name": "cnn", "model.peft": "none",
                            "model.extra_classifier": True, "rebalance.method": "redgrape",
                            "redgrape.share_attractor": share, "federation.num_clients": 3,
                            "federation.clients_per_round": 3})
    return RedGrape(STRATEGIES["fedavg"](cfg), cfg)


@pytest.mark.parametrize("share", [False, True])
def test_redgrape_bias_attractor_is_personal_unless_shared(task_identity, share: bool) -> None:
    from flwr.app import Message, MessageType, MetricRecord

    strategy = _redgrape(share)
    arrays = lambda fc, extra: ArrayRecord({"fc.weight": Array(np.full(2, fc, np.float32)),  # noqa: E731
                                            "extra.weight": Array(np.full(2, extra, np.float32))})

    class Grid:
        partition_of = {1: 0, 2: 1, 3: 2}

        def get_node_ids(self) -> list[int]:
            return [1, 2, 3]

    global_ = arrays(0.0, 0.0)
    list(strategy.configure_train(1, global_, ConfigRecord({}), Grid()))
    replies = [Message(content=RecordDict({"arrays": arrays(float(pid), 10.0 * (pid + 1)),
                                           "metrics": MetricRecord({"num-examples": 10}),
                                           "client": ConfigRecord({"partition-id": pid, "num-partitions": 3})}),
                       dst_node_id=pid + 1, message_type=MessageType.TRAIN) for pid in range(3)]
    new, _ = strategy.aggregate_train(1, replies)
    # the global model averages every tensor, the attractors included (as the official aggregator)
    assert float(new["extra.weight"].numpy()[0]) == pytest.approx(20.0)
    sent = {m.metadata.dst_node_id - 1: float(m.content["arrays"]["extra.weight"].numpy()[0])
            for m in strategy.configure_train(2, new, ConfigRecord({}), Grid())}
    assert sent == ({0: 20.0, 1: 20.0, 2: 20.0} if share else {0: 10.0, 1: 20.0, 2: 30.0})


# ------------------------------------------------------------------ Neurotoxin
def test_neurotoxin_step_mode_masks_every_gradient_step_like_the_official_code() -> None:
    """``train(..., hooks=[MaskGradients(mask)])`` = the official loop: backward, grad *= mask, optimiser step."""
    import copy

    import torch

    from fedsec.config import ClientConfig
    from fedsec.training import MaskGradients, batches, cross_entropy, train

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = copy.deepcopy(model)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    data = {"x": torch.randn(24, 5), "labels": torch.randint(3, (24,))}
    mask = {n: (torch.rand_like(p) > 0.3).float() for n, p in Net().named_parameters()}
    schedule = ClientConfig(epochs=2, batch_size=8, optimizer="sgd", lr=0.1, momentum=0.9, mixed_precision="off")
    ours, reference = Net(), Net()
    start = {n: p.detach().clone() for n, p in ours.named_parameters()}
    train(ours, data, schedule, torch.device("cpu"), seed=3, hooks=[MaskGradients(mask)])
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(3)
    for _ in range(2):
        for batch in batches(data, 8, generator):
            optimizer.zero_grad()
            cross_entropy(reference, batch).backward()
            for n, p in reference.named_parameters():
                p.grad = p.grad * mask[n]
            optimizer.step()
    for (n, p), (_, q) in zip(ours.named_parameters(), reference.named_parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
        assert torch.equal(p[mask[n] == 0], start[n][mask[n] == 0])  # masked coordinates never move


def test_neurotoxin_mask_keeps_the_coordinates_with_the_smallest_scores() -> None:
    from clients.attacks.neurotoxin import keep_mask

    scores = {"a": np.array([[0.1, 9.0], [0.2, 0.3]]), "b": np.array([5.0, 0.0, 0.4, 0.5])}
    masks = keep_mask(scores, ratio=0.25)  # grad_mask_cv: topk(-|g|) keeps the bottom 75 %
    np.testing.assert_array_equal(masks["a"], [[1, 0], [1, 1]])
    np.testing.assert_array_equal(masks["b"], [0, 1, 1, 1])


# ------------------------------------------------------------------ W2SAttack / W2SDefense
def test_w2s_feature_term_is_the_official_mean_squared_distance() -> None:
    import torch
    import torch.nn.functional as F

    from clients.teacher import feature_distance

    student, teacher = torch.randn(6, 16), torch.randn(6, 16)
    official = torch.mean(torch.pow(F.pairwise_distance(teacher, student), 2))  # contrastive_loss, per sample
    assert torch.allclose(feature_distance(student, teacher), official, rtol=1e-4)
    assert not torch.allclose(feature_distance(student, teacher), F.mse_loss(student, teacher))


def test_w2s_defaults_are_the_papers() -> None:
    from fedsec.config import Config

    a, d = Config().w2s_attack, Config().w2s_defense
    assert (a.ce, a.logits, a.features, a.lr, a.teacher_lr) == (6.0, 6.0, 0.004, 2e-5, 2e-5)
    assert (d.ce, d.kl, d.features, d.temperature, d.lr, d.teacher_lr) == (5.0, 0.001, 0.001, 2.0, 2e-4, 2e-5)


# ------------------------------------------------------------------ PSIM
@pytest.fixture(scope="module")
def tiny_text_model():
    from pathlib import Path

    from fedsec.config import Config
    from fedsec.experiment import Experiment

    cfg = Config.load(Path(__file__).resolve().parent.parent / "simulations" / "configs" / "backdoor_text.yaml",
                      ["model.peft=lora", "data.train_size=100", "data.test_size=20"])
    return Experiment(cfg).model


def _official_confidence_metrics(conf_clean, pred_clean, labels, conf_trig, pred_trig, trig_labels):
    """``evaluation_test`` and ``evaluation_poisoned`` of PSIM's confidence.py, transcribed."""
    correct = sum(1 for c, p, y in zip(conf_clean, pred_clean, labels) if c < 0.7 and p == y)
    clean_acc = correct / len(labels)
    defended = sum(1 if c > 0.7 else int(p == y) for c, p, y in zip(conf_trig, pred_trig, trig_labels))
    return clean_acc, 1.0 - defended / len(trig_labels)


def test_psim_metrics_after_filtering_are_the_official_ones() -> None:
    import torch

    from clients.defenses.inference_filter import filtered_metrics

    rng = np.random.default_rng(0)
    conf_clean, conf_trig = rng.uniform(0.5, 1.0, 50), rng.uniform(0.5, 1.0, 40)
    labels, pred_clean = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    pred_trig = rng.integers(0, 2, 40)
    target = 0  # triggered rows are the non-target ones: true label 1
    ours = filtered_metrics(torch.as_tensor(pred_clean), torch.as_tensor(labels), torch.as_tensor(conf_clean > 0.7),
                            torch.as_tensor(pred_trig), torch.as_tensor(conf_trig > 0.7), target, "psim")
    ca, asr = _official_confidence_metrics(conf_clean, pred_clean, labels, conf_trig, pred_trig, [1] * 40)
    assert ours["psim_accuracy"] == pytest.approx(ca) and ours["psim_asr"] == pytest.approx(asr)


def test_psim_probe_is_the_official_p_tuning(tiny_text_model) -> None:
    import peft

    from clients.defenses.psim import PromptProbe

    probe = PromptProbe(tiny_text_model, tokens=5)
    config = probe.net.peft_config["default"]
    assert isinstance(config, peft.PromptEncoderConfig) and config.num_virtual_tokens == 5
    assert config.encoder_hidden_size == 128 and config.task_type == peft.TaskType.SEQ_CLS
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    assert any("prompt_encoder" in n for n in trainable) and any("classifier" in n for n in trainable)
    assert all("prompt_encoder" in n or "classifier" in n for n in trainable)  # the backbone stays frozen
    assert not any("lora" in n for n, _ in probe.named_parameters())  # the LoRA adapters were merged in



def test_psim_probe_draws_from_its_own_seed_not_from_the_global_rng() -> None:
    """The probe's prompt initialisation and dropout once came from the global torch RNG: the same release and
    seed screened differently after other code drew random numbers (seed 3's release at round 0: 7 % or 93 %
    of the triggered inputs flagged). Now the same seed gives the same confidences whatever ran before, the
    global RNG is left as it was, and ``psim.probe_seed`` draws another probe."""
    from pathlib import Path

    import torch

    from clients.defenses.psim import PSIMParams, confidence
    from fedsec.config import Config
    from fedsec.experiment import Experiment

    cfg = Config.load(Path(__file__).resolve().parent.parent / "simulations" / "configs" / "backdoor_text.yaml",
                      ["model.peft=lora", "data.train_size=64", "data.test_size=8"])
    exp = Experiment(cfg)
    rows = exp.featurize(exp.train_split)
    cpu = torch.device("cpu")

    def screen(probe_seed: int = 0) -> torch.Tensor:
        psim = PSIMParams(epochs=1, lr=1e-3, rows=64, probe_seed=probe_seed)
        return confidence(exp.model, rows, [rows], psim, exp.num_classes, 5, cpu)[0]

    torch.manual_seed(1)
    first = screen()
    torch.manual_seed(2)
    torch.rand(100)
    state = torch.get_rng_state()
    again = screen()
    assert torch.equal(first, again)
    assert torch.equal(torch.get_rng_state(), state)  # the run's own draws are not shifted by the screen
    assert not torch.allclose(first, screen(probe_seed=1))


def test_psim_data_filter_draws_a_fresh_probe_each_round_and_client(monkeypatch) -> None:
    """The training-data variant seeds its probe as the client's own training: (run.seed, round, partition)."""
    from types import SimpleNamespace

    import torch

    from clients.defenses import psim
    from fedsec.config import Config

    seeds: list[int] = []

    def record(model, probe_rows, screened, params, num_classes, seed, device):
        seeds.append(seed)
        return [torch.zeros(len(screened[0]["labels"]))]

    monkeypatch.setattr(psim, "confidence", record)
    cfg = Config.from_flat({"attack.malicious_clients": "0", "attack.data_poison": "badnet",
                            "defense.data_filter": "psim"})
    screen = psim.PSIM(cfg)
    data = {"labels": torch.zeros(4, dtype=torch.long), "row_index": torch.arange(4)}
    rows = SimpleNamespace(column_names=["label"])
    for server_round, pid in [(1, 0), (2, 0), (1, 1), (1, 0)]:
        client = SimpleNamespace(experiment=SimpleNamespace(model=None, num_classes=2), partition_id=pid,
                                 server_round=server_round, device=torch.device("cpu"),
                                 seed=lambda r, pid=pid: 1_000 * r + pid)
        keep, _ = screen(client, rows, data)
        assert bool(keep.all())
    assert seeds == [1_000, 2_000, 1_001, 1_000]

# ------------------------------------------------------------------ combinations refused at config time
@pytest.mark.parametrize("override", [("strategy.wrappers", "fedglad"), ("strategy.defenses", "flame"),
                                      ("rebalance.method", "creff"), ("attack.omniscient", "ipm")])
def test_fedmnmt_refuses_wrappers_that_assume_one_global_model(override: tuple[str, str]) -> None:
    from pathlib import Path

    from fedsec.config import Config, ConfigError

    key, value = override
    extra = [f"{key}={value}"] + (["attack.malicious_clients=0"] if key.startswith("attack") else [])
    with pytest.raises(ConfigError, match=rf"{key}={value}"):
        Config.load(Path(__file__).resolve().parent.parent / "simulations" / "configs" / "mnmt.yaml", extra)


def test_neurotoxin_step_mode_refuses_redgrape_training() -> None:
    """RedGrape's prototype step moves fc outside the (masked) gradient steps."""
    from fedsec.config import Config, ConfigError

    flat = {"data.name": "digits", "model.name": "cnn", "model.peft": "none", "model.extra_classifier": True,
            "rebalance.method": "redgrape", "attack.malicious_clients": "0", "attack.model_poison": "neurotoxin"}
    with pytest.raises(ConfigError, match="rebalance.method=redgrape also changes the parameters"):
        Config.from_flat(flat)
    with pytest.raises(ConfigError, match="neurotoxin.mask=global_change"):
        Config.from_flat({**flat, "neurotoxin.mode": "round"})
    Config.from_flat({**flat, "neurotoxin.mode": "round", "neurotoxin.mask": "global_change"})


def test_personal_redgrape_attractors_refuse_update_screening_wrappers() -> None:
    from fedsec.config import Config, ConfigError

    flat = {"data.name": "digits", "model.name": "cnn", "model.peft": "none", "model.extra_classifier": True,
            "rebalance.method": "redgrape", "strategy.wrappers": "fedglad"}
    with pytest.raises(ConfigError, match="strategy.wrappers=fedglad"):
        Config.from_flat(flat)
    Config.from_flat({**flat, "redgrape.share_attractor": True})


def test_an_inference_filter_needs_a_trigger() -> None:
    from fedsec.config import Config, ConfigError

    flat = {"attack.malicious_clients": "0", "attack.data_poison": "label_flip", "defense.inference_filter": "psim"}
    with pytest.raises(ConfigError, match="no trigger"):
        Config.from_flat(flat)
    Config.from_flat({**flat, "attack.data_poison": "badnet"})


# ------------------------------------------------------------------ federated runs
@pytest.mark.slow
def test_psim_screens_the_trigger_of_a_weight_poisoned_start(tmp_path) -> None:
    """PSIM's threat model (psim_text.yaml, MiniLM): a backdoored release adapted with LoRA on clean data;
    the server's PSIM screen, with psim_text.yaml's 96-step probe (chosen on a validation split,
    evidence_psim_probe_val.yaml), removes most of the ASR at almost no CA. (On tiny BERT the probe cannot
    separate clean from triggered inputs: it flags both.) Seed 0's release, one round at the clients' lr
    5e-3, probe draw 0; across 5 releases x 4 probe draws, 35 of 40 screens flag >= 50 % of the triggered
    test inputs and seed 0's release 91 % under every draw (docs/evidence.md, evidence_psim_probe_seed.yaml),
    the earlier 32-step probe none on most releases."""
    from conftest import run_inline

    rows = run_inline("psim_text.yaml", tmp_path, "run.num_rounds=1")
    assert rows[0]["asr"] > 0.9  # the release is backdoored before any client trains
    assert rows[0]["psim_asr"] < rows[0]["asr"] - 0.5  # the screen of the release itself
    last = rows[-1]
    assert last["asr"] > 0.9  # LoRA on clean data keeps the backdoor
    assert last["psim_asr"] < last["asr"] - 0.5
    assert last["psim_flagged_clean"] < 0.05 and last["psim_accuracy"] > last["accuracy"] - 0.05


@pytest.mark.slow
def test_psim_data_filter_with_an_undefended_malicious_client_keeps_metric_keys_equal(tmp_path) -> None:
    """defense.clients=honest: the malicious client runs no filter but must send the same metric keys."""
    from conftest import run_inline

    rows = run_inline("backdoor_text.yaml", tmp_path, "run.num_rounds=1", "federation.num_clients=3",
                      "federation.clients_per_round=3", "data.train_size=300", "attack.data_poison=badnet",
                      "defense.data_filter=psim", "defense.clients=honest", "psim.lr=0.001")
    assert rows[1]["failures"] == 0 and rows[1]["aggregate_rejected"] == 0 and rows[1]["malicious_sampled"] == 1
    assert rows[1]["filter_poisoned"] == 0  # the poisoned rows belong to the client that did not filter
    assert "filter_flagged" in rows[1]
