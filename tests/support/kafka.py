"""Reading a topic back from the real broker, as the tests check what workers wrote."""

from __future__ import annotations

from typing import Any


async def read_topic(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """Every record of ``topic`` up to its end offsets now, partition by partition (each in offset
    order): aiokafka ``ConsumerRecord``s."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out = []
        pending = {tp for tp in parts if ends[tp] > 0}
        while pending:
            for tp, msgs in (await consumer.getmany(*pending, timeout_ms=1000)).items():
                out += msgs
                if msgs and msgs[-1].offset >= ends[tp] - 1:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return out
