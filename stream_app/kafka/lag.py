"""How far a consumer group (an app id) is behind on its input topics, from Kafka's own view:
committed offsets vs end offsets. Independent of the workers, so it answers for an app whose
workers are down, and for a new app id rebuilding from the retained topics while the old one
serves (docs/operations.md, "Reprocessing after a definition change")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


async def partition_numbers(admin: Any, topics: Iterable[str]) -> dict[str, list[int]]:
    """Topic -> its partition numbers as the broker describes them (missing topics left out)."""
    described = await admin.describe_topics(list(topics))
    return {d["topic"]: sorted(p["partition"] for p in d["partitions"]) for d in described
            if d.get("error_code", 0) == 0 and d["partitions"]}  # fmt: skip


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    start: int  # log start offset (retention may have deleted what came before)
    end: int

    @property
    def lag(self) -> int:
        """Messages still to process: from the committed offset, or from the log start when the
        group has no commit (a new app id reads from the earliest retained message)."""
        position = self.start if self.committed is None else max(self.committed, self.start)
        return max(self.end - position, 0)


async def group_lag(bootstrap: str, group: str, topics: Iterable[str], **client_kwargs: Any) -> list[PartitionLag]:
    """Lag of ``group`` on every partition of ``topics`` (topics that do not exist are left out)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs)
    await admin.start()
    try:
        await consumer.start()
        try:
            numbers = await partition_numbers(admin, topics)
            tps = [TopicPartition(t, p) for t, ps in numbers.items() for p in ps]
            if not tps:
                return []
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    out = []
    for tp in tps:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        out.append(PartitionLag(tp.topic, tp.partition, offset, starts[tp], ends[tp]))
    return out
