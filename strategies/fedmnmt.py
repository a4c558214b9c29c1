"""Fed-MNMT: clustered adapter aggregation for federated multilingual NMT.

Paper: Y. Liu, X. Bi, L. Li, S. Chen, W. Yang, X. Sun, "Communication Efficient
Federated Learning for Multilingual Neural Machine Translation with Adapter",
Findings of ACL 2023 (code: lancopku/FedMNMT).

Clients are language pairs s -> t over a frozen seq2seq backbone; only adapters
(and layer norms) travel (``fedsec.models.seq2seq``). With languages grouped
into clusters, after each round

    encoder adapters of client i <- mean over clients j with src(j) ~ src(i) of their encoder adapters,
    decoder adapters of client i <- mean over clients j with tgt(j) ~ tgt(i) of their decoder adapters,

an unweighted mean, nothing averaged across clusters (a key belongs to the
decoder iff its name contains ``decoder``). Each client then receives its own
adapters. Clusterings (``fedmnmt.clustering``):

- ``none``: one cluster, i.e. plain averaging of all adapters;
- ``isolated``: no sharing: every client keeps its own adapters (local training only,
  the lower bound any sharing has to beat; fedsec's addition; a client not yet sampled
  starts from, and is evaluated with, the initial adapters' global broadcast);
- ``family``: the language families of ``fedmnmt.families``;
- ``random``: the official baseline: the languages shuffled (seeded) and cut into as many
  equal groups as families, the remainder joining the last (:func:`balanced_random_groups`);
- ``gradient``: fedsec's own version of the paper's gradient-based lists: in round
  ``fedmnmt.warmup`` (plain averaging until then) each language's mean adapter update
  Delta (encoder updates for source languages, decoder updates for target
  languages), centred over languages, is clustered by cosine distance (agglomerative, average linkage, or
  k-means on the normalised updates) into ``fedmnmt.k`` clusters, kept for the rest
  of the run.

State (per-client adapters, clusters) lives in the strategy and is checkpointed.
The train metrics report each client's source and target cluster and, when the
families are known, the adjusted Rand index of the random, family or gradient
clusters against them.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import adjusted_rand_score

from fedsec.config import Config, ConfigError, MethodParams, param
from fedsec.params import flatten, unflatten
from fedsec.protocol import ARRAYS, partition_id
from fedsec.registry import Traits
from strategies.registry import STRATEGIES, sampling_kwargs

SIDES = ("encoder", "decoder")


def side_of(key: str) -> str:
    return "decoder" if "decoder" in key else "encoder"


def parse_families(spec: str) -> dict[str, int]:
    """``"de,en,nl;fr,it"`` -> {language: family index}."""
    families: dict[str, int] = {}
    for index, group in enumerate(g for g in spec.split(";") if g.strip()):
        for language in (x.strip() for x in group.split(",") if x.strip()):
            families[language] = index
    return families


def cluster_updates(vectors: np.ndarray, k: int, algorithm: str, seed: int) -> list[int]:
    """Cluster rows by cosine distance into ``k`` groups, after removing their common mean.

    All clients' updates share a large common direction (adapting to the task at
    all); centring removes it so that what sets languages apart decides the clusters.
    """
    k = min(k, len(vectors))
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    unit = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    if algorithm == "kmeans":
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(unit).tolist()
    return AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(unit).tolist()


def balanced_random_groups(languages: list[str], k: int, rng: random.Random) -> dict[str, int]:
    """The official random baseline (``get_random_share_list``): shuffle the languages and cut them
    into k groups of floor(N / k); the remainder joins the last group. Equal sizes, no singletons
    by chance (an independent draw per language would make both)."""
    order = list(languages)
    rng.shuffle(order)
    k = max(1, min(k, len(order)))
    size = len(order) // k
    return {lang: min(i // size, k - 1) for i, lang in enumerate(order)}


class FedMNMT(FedAvg):
    """FedAvg's sampling and messages, with per-client adapters aggregated inside language clusters."""

    def __init__(self, cfg: Config, pairs: list[tuple[str, str]], families: dict[str, int]) -> None:
        super().__init__(**sampling_kwargs(cfg))
        p = cfg.fedmnmt
        self.pairs, self.families, self.mode = pairs, families, p.clustering
        self.k = p.k or len(set(families.values())) or 1
        self.warmup, self.algorithm, self.seed = p.warmup, p.algorithm, cfg.run.seed
        self.arrays_of: dict[int, ArrayRecord] = {}  # partition id -> its adapters
        self.sent: dict[int, ArrayRecord] = {}
        self.clusters: dict[str, dict[str, int]] | None = None  # side -> language -> cluster
        languages = sorted({lang for pair in pairs for lang in pair})
        if self.mode == "isolated":  # each pair its own cluster on both sides (clients are told apart by pid)
            self.clusters = {side: {} for side in SIDES}
        elif self.mode == "none":
            self.clusters = {side: {lang: 0 for lang in languages} for side in SIDES}
        elif self.mode == "family":
            missing = [lang for lang in languages if lang not in families]
            if missing:
                raise ConfigError(f"fedmnmt.families does not place languages {missing}")
            self.clusters = {side: dict(families) for side in SIDES}
        elif self.mode == "random":
            self.clusters = {side: balanced_random_groups(languages, self.k, random.Random(f"{self.seed}-{side}"))
                             for side in SIDES}

    def arrays_for(self, pid: int, arrays: ArrayRecord) -> ArrayRecord:
        """The adapters client ``pid`` trains from (the global ones until it has its own)."""
        return self.arrays_of.get(pid, arrays)

    def evaluation_arrays(self, arrays: ArrayRecord, group: int = 0) -> ArrayRecord:
        """Language pair ``group`` is evaluated with its client's adapters (``fedsec.app.server.EvaluationView``)."""
        return self.arrays_for(group, arrays)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        partition_of = getattr(grid, "partition_of", None)
        if partition_of is None:
            raise RuntimeError("FedMNMT needs fedsec's partition-ordered grid (client identities)")
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.sent = {}
        for message in messages:
            pid = partition_of[message.metadata.dst_node_id]
            # Flower's FedAvg gives all its messages ONE shared RecordDict: each needs its own
            message.content = RecordDict(dict(message.content.items()))
            self.sent[pid] = message.content[ARRAYS] = self.arrays_for(pid, arrays)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        updates = {partition_id(r.content): r.content[ARRAYS] for r in replies}
        if not updates:
            return None, None
        template = next(iter(updates.values()))
        keys = {side: [k for k in template if side_of(k) == side] for side in SIDES}
        if self.clusters is None and server_round >= self.warmup:
            self.clusters = self._gradient_clusters(updates, keys)
        clusters = self.clusters or {side: {lang: 0 for pair in self.pairs for lang in pair} for side in SIDES}
        new: dict[int, dict[str, np.ndarray]] = {pid: {side: np.zeros(0) for side in SIDES} for pid in updates}
        for index, side in enumerate(SIDES):
            if not keys[side]:
                continue
            for members in self._groups(index, side, list(updates), clusters):
                mean = np.mean([flatten(updates[pid], keys[side]) for pid in members], axis=0)
                for pid in members:
                    new[pid][side] = mean
        by_side = ArrayRecord({k: template[k] for side in SIDES for k in keys[side]})  # encoder keys, then decoder
        for pid, parts in new.items():
            merged = unflatten(np.concatenate([parts[side] for side in SIDES]), by_side)
            self.arrays_of[pid] = ArrayRecord({k: merged[k] for k in template})
        order = list(template.keys())
        global_mean = np.mean([flatten(self.arrays_of[pid], order) for pid in updates], axis=0)
        return unflatten(global_mean, template), MetricRecord(self._report(clusters))

    def _groups(self, index: int, side: str, pids: list[int],
                clusters: dict[str, dict[str, int]]) -> list[list[int]]:
        """The clients whose ``side`` adapters are averaged together: same cluster of their source
        (encoder, index 0) or target (decoder, index 1) language; each client alone if isolated."""
        if self.mode == "isolated":
            return [[pid] for pid in pids]
        group = {pid: clusters[side][self.pairs[pid][index]] for pid in pids}
        return [[pid for pid in pids if group[pid] == g] for g in sorted(set(group.values()))]

    def _gradient_clusters(
        self, updates: dict[int, ArrayRecord], keys: dict[str, list[str]]
    ) -> dict[str, dict[str, int]]:
        result = {}
        for index, side in enumerate(SIDES):
            if not keys[side]:
                result[side] = {}
                continue
            by_language: dict[str, list[np.ndarray]] = {}
            for pid, record in updates.items():
                delta = flatten(record, keys[side]) - flatten(self.sent[pid], keys[side])
                by_language.setdefault(self.pairs[pid][index], []).append(delta)
            languages = sorted(by_language)
            vectors = np.stack([np.mean(by_language[lang], axis=0) for lang in languages])
            labels = cluster_updates(vectors, self.k, self.algorithm, self.seed)
            result[side] = dict(zip(languages, labels))
        for side in SIDES:  # languages never seen on this side join cluster 0
            for pair in self.pairs:
                for lang in pair:
                    result[side].setdefault(lang, 0)
        return result

    def _report(self, clusters: dict[str, dict[str, int]]) -> dict[str, list[int] | float]:
        if self.mode == "isolated":
            report: dict[str, list[int] | float] = {"source_clusters": list(range(len(self.pairs))),
                                                    "target_clusters": list(range(len(self.pairs)))}
        else:
            report = {"source_clusters": [clusters["encoder"][s] for s, _ in self.pairs],
                      "target_clusters": [clusters["decoder"][t] for _, t in self.pairs]}
        if self.families and self.mode in ("random", "family", "gradient"):  # 0 by construction for the others
            for name, index in (("source", 0), ("target", 1)):
                langs = [pair[index] for pair in self.pairs]
                report[f"{name}_cluster_ari"] = float(adjusted_rand_score(
                    [self.families.get(lang, -1) for lang in langs], report[f"{name}_clusters"]))
        return report


@dataclass
class FedMNMTParams(MethodParams):
    section = "fedmnmt"
    renamed = {  # keys before fedsec 0.2
        "strategy.mnmt_clustering": "fedmnmt.clustering",
        "strategy.mnmt_families": "fedmnmt.families",
        "strategy.mnmt_k": "fedmnmt.k",
        "strategy.mnmt_warmup": "fedmnmt.warmup",
        "strategy.mnmt_algorithm": "fedmnmt.algorithm",
    }
    clustering: Literal["none", "isolated", "random", "family", "gradient"] = param(
        "family", "how languages are clustered (isolated: no sharing)")
    families: str = param("", "language families, e.g. de,en,nl;fr,it,es (empty: the embedded corpus's)")
    k: int = param(0, "clusters of the gradient clustering (0: as many as families)")
    warmup: int = param(1, "the round whose adapter updates the gradient clustering uses")
    algorithm: Literal["agglomerative", "kmeans"] = param("agglomerative", "the gradient clustering's algorithm")

    def check(self, cfg: Config) -> None:
        self.require(self.k >= 0, "k", "must be >= 0")
        self.require(self.warmup >= 1, "warmup", "must be >= 1")


@STRATEGIES.register("fedmnmt", params=FedMNMTParams,
                     traits=Traits(modalities=frozenset({"translation"}), broadcast="per_client"))
def fedmnmt(cfg: Config) -> FedMNMT:
    """The language pairs are the dataset's labels (``src-tgt``), one client each."""
    from fedsec.experiment import get_experiment

    names = get_experiment(cfg).splits.label_names
    pairs = [tuple(name.split("-", 1)) for name in names]
    if any(len(p) != 2 for p in pairs) or len(pairs) != cfg.federation.num_clients:
        raise ConfigError("strategy.name=fedmnmt needs one client per language pair: labels named 'src-tgt' and "
                          "federation.num_clients equal to their number")
    spec = cfg.fedmnmt.families
    if not spec:
        from fedsec.data.multilingual import corpus_of

        corpus = corpus_of(cfg.data.name)
        spec = ";".join(",".join(langs) for langs in corpus.families.values()) if corpus else ""
    return FedMNMT(cfg, pairs, parse_families(spec))
