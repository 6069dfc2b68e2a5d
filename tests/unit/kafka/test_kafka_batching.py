"""stream_app.kafka.compat.batching: once one partition batch for a broker is ready, every batch for that
broker leaves in the same drain; brokers with nothing ready keep lingering."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.structs import TopicPartition

from stream_app.kafka.compat.batching import drain_node_batches_together

LEADERS = {TopicPartition("a", 0): 1, TopicPartition("a", 1): 1, TopicPartition("b", 0): 2}


async def _drained(patched: bool) -> dict[int, set]:
    cluster = SimpleNamespace(leader_for_partition=LEADERS.get)
    acc = MessageAccumulator(cluster, 16384, 0, 30, linger_ms=60_000)
    if patched:
        assert drain_node_batches_together(SimpleNamespace(_message_accumulator=acc))
    for tp in LEADERS:
        await acc.add_message(tp, b"k", b"v", timeout=1)
    # the batch of a-0 has lingered long enough; a-1 (same broker) and b-0 (other broker) not
    acc._batches[TopicPartition("a", 0)][0]._ctime -= 120
    nodes, unknown = acc.drain_by_nodes(ignore_nodes=set())
    assert not unknown
    return {node: set(batches) for node, batches in nodes.items()}


def test_ready_batch_takes_the_brokers_other_batches_along():
    got = asyncio.run(_drained(patched=True))
    assert got == {1: {TopicPartition("a", 0), TopicPartition("a", 1)}}


def test_without_the_patch_aiokafka_lingers_per_partition():
    got = asyncio.run(_drained(patched=False))
    assert got == {1: {TopicPartition("a", 0)}}


def test_unexpected_producer_is_left_alone():
    assert drain_node_batches_together(SimpleNamespace()) is False
