"""The server-side round loop shared by ``run.py`` and ``flwr run``.

It drives any Flower Message-API strategy through ``configure_train`` /
``aggregate_train`` / ``configure_evaluate`` / ``aggregate_evaluate`` (as
``Strategy.start`` does) and adds what research runs need:

- a handshake that learns every node's partition id, so that client sampling
  is a seeded draw over partitions (the same clients each run) and replies
  carry client identity;
- screening of replies: failed clients are logged with their partition id and
  counted; updates with wrong keys, wrong shapes, NaN or inf are rejected and
  logged, never aggregated;
- server-side evaluation on the held-out test split after every round;
- bytes sent down and up per round; a row per round, durably written.

Methods enter the loop only through the registries of ``fedsec.registry``: the
strategy is composed from ``STRATEGIES``, ``WRAPPERS``, ``DEFENSES`` and
``REBALANCERS`` (:func:`build_strategy`); the extension points ``REPLY_HOOKS``
(e.g. the omniscient channel, before aggregation), ``ROUND_METRICS`` (data-filter
precision, defense detection) and ``EVALUATION_METRICS`` (ASR, metrics after an
inference filter) add to every round; ``EVALUATORS`` evaluate each data modality
on the test split (:func:`central_evaluation`); a strategy with an ``evaluation_arrays``
method (:class:`EvaluationView`) chooses what the server evaluates.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsec.checkpoint import Checkpoint
from fedsec.config import Config, attacking, check_modality, malicious_ids, name_list
from fedsec.experiment import Experiment, get_experiment
from fedsec.metrics import MetricsWriter, Row, final_line, format_table
from fedsec.params import cast_like, check_arrays, get_arrays, payload_bytes
from fedsec.protocol import ARRAYS, CONFIG, EXPERIMENT, IDENTITY, ROUND_ATTACKERS, ROUND_CLIENTS, metrics_of
from fedsec.registry import (
    DEFENSES,
    EVALUATORS,
    REBALANCERS,
    REPLY_HOOKS,
    ROUND_METRICS,
    STRATEGIES,
    WRAPPERS,
)

log = logging.getLogger("fedsec")


@runtime_checkable
class EvaluationView(Protocol):
    """A strategy whose server-side evaluation does not use the global arrays as they are.

    ``evaluation_arrays(arrays, group)`` returns the parameters to evaluate test group
    ``group`` with: the language pair for translation (Fed-MNMT: that pair's cluster
    adapters), 0 for classification (CReFF: its re-trained classifier).
    """

    def evaluation_arrays(self, arrays: ArrayRecord, group: int = 0) -> ArrayRecord: ...


def build_strategy(cfg: Config) -> Strategy:
    """``strategy.name``, wrapped by ``strategy.wrappers`` (e.g. FedGLAD), then by ``strategy.defenses``,
    then by the re-balancer of ``rebalance.method``.

    The defenses see the updates first, in the order listed (``flame,norm_clip``:
    FLAME screens, then clipping, then FedGLAD and the aggregation rule). The
    re-balancer is outermost: it takes its side records off the replies, so
    everything inside sees the model updates only.
    """
    strategy = STRATEGIES[cfg.strategy.name](cfg)
    for registry, key in ((WRAPPERS, "strategy.wrappers"), (DEFENSES, "strategy.defenses")):
        for name in reversed(name_list(cfg.get(key))):
            wrap = registry[name]
            if wrap is not None:
                strategy = wrap(strategy, cfg)
    rebalancer = REBALANCERS[cfg.rebalance.method]
    return strategy if rebalancer is None else rebalancer(strategy, cfg)


class PartitionOrderedGrid:
    """A view of a Grid whose node ids come in partition-id order.

    Flower's strategies sample with ``random.sample(list(grid.get_node_ids()), k)``;
    with the ids in a fixed order and ``random`` seeded per round, the sampled
    partitions are the same in every run with the same seed.
    """

    def __init__(self, grid: Grid, partition_of: dict[int, int]) -> None:
        self._grid = grid
        self.partition_of = partition_of

    def get_node_ids(self) -> list[int]:
        return sorted(self._grid.get_node_ids(), key=lambda n: self.partition_of.get(n, n))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


def discover_partitions(grid: Grid, cfg: Config) -> dict[int, int]:
    """Ask every node for its partition id; every one of ``num_clients`` partitions must answer."""
    expected = cfg.federation.num_clients
    deadline = time.time() + cfg.run.round_timeout
    while len(node_ids := list(grid.get_node_ids())) < expected:
        if time.time() > deadline:
            raise RuntimeError(f"only {len(node_ids)} of federation.num_clients={expected} nodes connected "
                               f"within run.round_timeout={cfg.run.round_timeout} s")
        log.info("waiting for nodes: %d of %d connected", len(node_ids), expected)
        time.sleep(1)
    content = RecordDict({CONFIG: ConfigRecord({EXPERIMENT: cfg.to_json()})})
    messages = [Message(content=content, dst_node_id=n, message_type=MessageType.QUERY) for n in node_ids]
    partition_of: dict[int, int] = {}
    for reply in grid.send_and_receive(messages, timeout=cfg.run.round_timeout):
        if reply.has_error():
            raise RuntimeError(f"node {reply.metadata.src_node_id} failed the handshake: {reply.error.reason}")
        identity = reply.content[IDENTITY]
        if int(identity["num-partitions"]) != expected:
            raise RuntimeError(
                f"the nodes split the data into {identity['num-partitions']} partitions but "
                f"federation.num_clients={expected}; with `flwr run` pass --federation-config "
                f"\"num-supernodes={expected}\""
            )
        partition_of[reply.metadata.src_node_id] = int(identity["partition-id"])
    if sorted(partition_of.values()) != list(range(expected)):
        raise RuntimeError(f"nodes report partitions {sorted(partition_of.values())}, expected 0..{expected - 1}")
    return partition_of


@dataclass
class Screened:
    """Replies of a round, sorted into usable updates, failed clients and rejected updates."""

    valid: list[Message]
    failed: list[int]
    rejected: list[int]


def screen(replies: Iterable[Message], reference: ArrayRecord, partition_of: dict[int, int],
           server_round: int) -> Screened:
    """Keep usable replies (in partition order); log and list failed and rejected clients."""
    result = Screened(valid=[], failed=[], rejected=[])
    for reply in replies:
        pid = partition_of.get(reply.metadata.src_node_id, -1)
        if reply.has_error():
            result.failed.append(pid)
            log.error("round %d: client %d failed: %s", server_round, pid, reply.error.reason)
            continue
        arrays = reply.content.array_records.get(ARRAYS)
        problem = f"no ArrayRecord '{ARRAYS}' in the reply" if arrays is None else check_arrays(arrays, reference)
        if problem:
            result.rejected.append(pid)
            log.error("round %d: update of client %d rejected: %s", server_round, pid, problem)
            continue
        result.valid.append(reply)
    result.valid.sort(key=lambda m: partition_of.get(m.metadata.src_node_id, -1))
    result.failed.sort()
    result.rejected.sort()
    return result


def received_bytes(replies: Iterable[Message]) -> int:
    """Tensor bytes carried by replies."""
    return sum(payload_bytes(a) for r in replies if not r.has_error() for a in r.content.array_records.values())


def sent_bytes(messages: Iterable[Message]) -> int:
    """Tensor bytes carried by instructions."""
    return sum(payload_bytes(a) for m in messages for a in m.content.array_records.values())


def central_evaluation(experiment: Experiment, arrays: ArrayRecord,
                       arrays_for: Callable[[int], ArrayRecord] | None = None) -> dict[str, Any]:
    """The test metrics of the data's modality, by its registered evaluator (``EVALUATORS``:
    classification in ``fedsec.evaluation``, BLEU in ``fedsec.translation``, exact match, chrF and
    a generation backdoor's ASR in ``fedsec.instruction``); ``arrays_for(group)`` gives the
    arrays that evaluate one group of test rows (a language pair), by default ``arrays``."""
    return EVALUATORS[experiment.splits.modality](experiment, arrays, arrays_for)


def run_experiment(grid: Grid, cfg: Config, resume: bool = False) -> dict[str, Any]:
    """Run ``cfg.run.num_rounds`` rounds (from the last checkpoint if ``resume``); return the summary."""
    t_start = time.time()
    out_dir = Path(cfg.run.out_dir)
    torch.manual_seed(cfg.run.seed)
    experiment = get_experiment(cfg)
    check_modality(cfg, experiment.splits.modality)  # datasets that declare no modality: checked once loaded
    if cfg.data.eval_split == "validation":
        log.warning("data.eval_split=validation: every metric of this run is of the %d-row validation split, "
                    "not of the test split", len(experiment.splits.test))
    if resume:
        checkpoint = Checkpoint.load(out_dir)
        writer = MetricsWriter(out_dir, keep_rounds=checkpoint.round)
        log.info("resuming %s after round %d", out_dir, checkpoint.round)
    else:
        writer = MetricsWriter(out_dir)
        cfg.dump(out_dir / "config.yaml")
        arrays = get_arrays(experiment.model)
        checkpoint = Checkpoint(round=0, arrays=arrays, strategy=build_strategy(cfg))
        writer.append({"round": 0, **central_evaluation(experiment, arrays), "bytes_up": 0, "bytes_down": 0,
                       "failures": 0, "rejected": 0, "round_seconds": 0.0})
    strategy, arrays = checkpoint.strategy, checkpoint.arrays
    partition_of = discover_partitions(grid, cfg)
    ordered = PartitionOrderedGrid(grid, partition_of)
    for rnd in range(checkpoint.round + 1, cfg.run.num_rounds + 1):
        arrays, row = run_round(rnd, cfg, strategy, arrays, grid, ordered, partition_of, experiment)
        writer.append(row)
        Checkpoint(round=rnd, arrays=arrays, strategy=strategy).save(out_dir)
        log.info("round %d/%d  accuracy %.4f  loss %.4f  up %.2f MB  down %.2f MB  failures %d  %.1f s",
                 rnd, cfg.run.num_rounds, row["accuracy"], row["loss"], row["bytes_up"] / 1e6,
                 row["bytes_down"] / 1e6, row["failures"], row["round_seconds"])
    summary = writer.finish(time.time() - t_start)
    print("\n" + format_table(writer.rows) + "\n", flush=True)
    print(f"{final_line(summary, writer.rows, experiment.splits.modality)}  wall {summary['wall_seconds']:.1f} s"
          f"  -> {out_dir}", flush=True)
    return summary


def run_round(
    rnd: int,
    cfg: Config,
    strategy: Strategy,
    arrays: ArrayRecord,
    grid: Grid,
    ordered: PartitionOrderedGrid,
    partition_of: dict[int, int],
    experiment: Experiment,
) -> tuple[ArrayRecord, Row]:
    """One round: sample, train, screen, aggregate, evaluate; return the new arrays and the row."""
    t_round = time.time()
    row: Row = {"round": rnd}
    random.seed(cfg.run.seed * 100_003 + rnd)
    messages = list(strategy.configure_train(rnd, arrays, _config(cfg), ordered))
    sampled = {partition_of[m.metadata.dst_node_id] for m in messages}
    malicious = set(malicious_ids(cfg.attack.malicious_clients, cfg.federation.num_clients, cfg.run.seed))
    for message in messages:  # what colluding attackers know of their round (model replacement's n / m)
        message.content[CONFIG][ROUND_CLIENTS] = len(messages)
        message.content[CONFIG][ROUND_ATTACKERS] = len(sampled & set(attacking(cfg, rnd)))
    replies = list(grid.send_and_receive(messages, timeout=cfg.run.round_timeout))
    # what the same round would cost if the whole model travelled both ways
    row["bytes_full_model"] = (len(messages) + len(replies)) * experiment.full_model_bytes
    bytes_up = received_bytes(replies)  # now: some strategies (FedMedian, Bulyan) consume records in place
    screened = screen(replies, arrays, partition_of, rnd)
    reply_metrics = [dict(metrics_of(r.content)) for r in screened.valid]  # before strategies consume records
    new_arrays, train_metrics, problem = None, None, "no usable update"
    valid = screened.valid
    if valid:
        for hook in REPLY_HOOKS.entries():
            valid = hook.obj(cfg, arrays, valid, partition_of, set(attacking(cfg, rnd)))
        new_arrays, train_metrics = strategy.aggregate_train(rnd, valid)
        problem = "the strategy aggregated nothing" if new_arrays is None else check_arrays(new_arrays, arrays)
    if problem:
        log.error("round %d: %s (%d failed, %d rejected of %d); the global model is kept", rnd, problem,
                  len(screened.failed), len(screened.rejected), len(messages))
    else:
        arrays = cast_like(new_arrays, arrays)
    row["aggregate_rejected"] = int(problem is not None)
    train_metrics = dict(train_metrics or {})
    for entry in ROUND_METRICS.entries():  # each may consume (pop) the train metrics it reports on
        row.update(entry.obj(cfg, reply_metrics, train_metrics, malicious))
    row.update(train_metrics)
    if isinstance(strategy, EvaluationView):
        view = strategy
        row.update(central_evaluation(experiment, view.evaluation_arrays(arrays),
                                      lambda group: view.evaluation_arrays(arrays, group)))
    else:
        row.update(central_evaluation(experiment, arrays))
    eval_messages = list(strategy.configure_evaluate(rnd, arrays, _config(cfg), ordered))
    if eval_messages:
        eval_replies = list(grid.send_and_receive(eval_messages, timeout=cfg.run.round_timeout))
        fed_metrics = strategy.aggregate_evaluate(rnd, [r for r in eval_replies if not r.has_error()])
        row.update({f"federated_{k}": v for k, v in (fed_metrics or {}).items()})
        messages += eval_messages
    row.update({
        "clients": sorted(partition_of[m.metadata.src_node_id] for m in screened.valid),
        "ray_nodes": len({str(r.content[IDENTITY].get("ray-node", "")) for r in screened.valid} - {""}),
        "malicious_sampled": len(sampled & malicious),
        "bytes_down": sent_bytes(messages),
        "bytes_up": bytes_up,
        "failures": len(screened.failed),
        "failed_clients": screened.failed,
        "rejected": len(screened.rejected),
        "rejected_clients": screened.rejected,
        "round_seconds": time.time() - t_round,
    })
    return arrays, row


def _config(cfg: Config) -> ConfigRecord:
    return ConfigRecord({EXPERIMENT: cfg.to_json()})
