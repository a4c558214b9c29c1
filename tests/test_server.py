"""Server loop pieces: reply screening, partition-ordered sampling, honest client determinism."""

from __future__ import annotations

import random

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from clients import HonestClient
from fedsec.app.server import PartitionOrderedGrid, screen
from fedsec.experiment import get_experiment


@pytest.fixture(autouse=True)
def _task_identity():
    """Messages need a task identity, which Flower's runtimes set; set one here."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


def _reply(node: int, content: RecordDict | None = None, error: str | None = None) -> Message:
    sent = Message(content=RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
    if error:
        return Message(Error(code=0, reason=error), reply_to=sent)
    return Message(content=content, reply_to=sent)


def test_screen_rejects_bad_updates_and_counts_failures(caplog) -> None:
    ref = ArrayRecord({"w": Array(np.zeros((2, 2), np.float32))})
    good = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones((2, 2), np.float32))}),
                       "metrics": MetricRecord({"num-examples": 3})})
    nan = RecordDict({"arrays": ArrayRecord({"w": Array(np.full((2, 2), np.nan, np.float32))}),
                      "metrics": MetricRecord({"num-examples": 3})})
    shape = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones((3,), np.float32))}),
                        "metrics": MetricRecord({"num-examples": 3})})
    replies = [_reply(12, good), _reply(11, nan), _reply(13, shape), _reply(14, error="boom"), _reply(10, good)]
    partition_of = {10: 0, 11: 1, 12: 2, 13: 3, 14: 4}
    screened = screen(replies, ref, partition_of, server_round=1)
    assert [partition_of[m.metadata.src_node_id] for m in screened.valid] == [0, 2]
    assert (screened.failed, screened.rejected) == ([4], [1, 3])
    text = caplog.text
    assert "client 4 failed: boom" in text and "client 1 rejected" in text and "client 3 rejected" in text


class _Grid:
    def get_node_ids(self):
        return [900, 5, 77, 31]


def test_sampling_is_in_partition_order() -> None:
    grid = PartitionOrderedGrid(_Grid(), {900: 0, 5: 3, 77: 1, 31: 2})
    assert grid.get_node_ids() == [900, 77, 31, 5]
    random.seed(4)
    first = random.sample(grid.get_node_ids(), 2)
    random.seed(4)
    assert random.sample(grid.get_node_ids(), 2) == first


def test_honest_client_update_is_reproducible(tiny_cfg) -> None:
    exp = get_experiment(tiny_cfg)
    from fedsec.params import get_arrays

    start = get_arrays(exp.model)
    config = ConfigRecord({"server-round": 1})
    a, metrics = HonestClient(exp, 1).fit(start, config)
    b, _ = HonestClient(exp, 1).fit(start, config)
    assert metrics["num-examples"] == len(exp.parts[1])
    for x, y in zip(a.values(), b.values()):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    changed = [not np.array_equal(x.numpy(), s.numpy()) for x, s in zip(a.values(), start.values())]
    assert any(changed)
