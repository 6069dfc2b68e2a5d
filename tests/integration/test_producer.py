"""EventProducer / produce_log against the real broker of the local stack: what goes in comes
back out byte for byte, under the right key, in per-key order."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from stream_app.events import FAMILIES, decode_event
from stream_app.tools.generator import Faults, Profile, generate
from stream_app.tools.producer import EventProducer, produce_log

pytestmark = pytest.mark.integration

START = 1_750_000_000.0


async def _consume(bootstrap: str, topics: list[str], n: int, timeout: float = 60.0):
    """Read ``n`` messages from the start of ``topics``: [(topic, partition, key, value)]."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                out.extend((tp.topic, tp.partition, r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return out


@pytest.fixture
def family_topics(new_topic) -> dict[str, str]:
    return {f: new_topic(f"gen.{f}", partitions=3) for f in FAMILIES}


def test_produced_log_reads_back_identical_and_in_per_key_order(stack, family_topics):
    events = generate(
        21,
        START,
        600,
        10.0,
        profile=Profile.fast(),
        faults=Faults(duplicate=0.02, out_of_order=0.02, late=0.01, invalid=0.02, late_by=120.0),
    )
    counts = asyncio.run(produce_log(stack.bootstrap, family_topics, events))
    assert counts["total"] == len(events)

    got = asyncio.run(_consume(stack.bootstrap, list(family_topics.values()), len(events)))
    assert len(got) == len(events)

    expected_by_key: dict[tuple[str, bytes], list[bytes]] = defaultdict(list)
    for ev in events:
        expected_by_key[(family_topics[ev.family], ev.key_bytes)].append(ev.value)
    got_by_key: dict[tuple[str, bytes], list[bytes]] = defaultdict(list)
    partitions_of_key: dict[tuple[str, bytes], set[int]] = defaultdict(set)
    for topic, partition, key, value in got:  # records of one partition arrive in offset order
        got_by_key[(topic, key)].append(value)
        partitions_of_key[(topic, key)].add(partition)
    # every key lands in one partition and keeps the emission order, faults included
    assert got_by_key == expected_by_key
    assert all(len(p) == 1 for p in partitions_of_key.values())
    # the log used all topics and several partitions
    assert {t for t, *_ in got} == set(family_topics.values())
    assert len({(t, p) for t, p, *_ in got}) > len(FAMILIES)


def test_send_event_takes_models_and_bytes(stack, family_topics):
    sample = [ev for ev in generate(3, START, 120, 20.0) if ev.family in ("ticket", "survey")][:20]
    models = [decode_event(ev.value) for ev in sample]

    async def send() -> None:
        async with EventProducer(stack.bootstrap, family_topics) as producer:
            futures = []
            for model, ev in zip(models, sample, strict=True):
                futures.append(await producer.send_event(model))  # family and key from the model
                futures.append(await producer.send_event(ev.value, ev.family, ev.key))
            await producer.flush()
            assert all(f.done() and f.exception() is None for f in futures)
            assert producer.acked == producer.sent == 2 * len(sample)

    asyncio.run(send())
    got = asyncio.run(_consume(stack.bootstrap, list(family_topics.values()), 2 * len(sample)))
    by_id = defaultdict(list)
    for topic, _, key, value in got:
        event = decode_event(value)
        assert topic == family_topics[event.family]
        assert key == event.subject.encode()
        by_id[event.id].append(event)
    assert set(by_id) == {m.id for m in models}
    for model in models:
        assert by_id[model.id] == [model, model]  # model path and bytes path agree


def test_rate_limited_produce_log_takes_the_expected_time(stack, family_topics):
    events = generate(5, START, 60, 20.0)[:300]
    t0 = time.monotonic()
    asyncio.run(produce_log(stack.bootstrap, family_topics, events, rate=600.0))
    elapsed = time.monotonic() - t0
    assert elapsed >= (len(events) - 1) / 600.0


def test_broker_side_delivery_error_is_raised_by_flush(stack, new_topic, family_topics):
    # the broker refuses the record (bigger than the topic allows) after send() accepted it
    small = new_topic("gen.small", config={"max.message.bytes": "2000"})

    async def send() -> EventProducer:
        producer = EventProducer(stack.bootstrap, family_topics, request_timeout_ms=5000)
        async with producer:
            await producer.send_raw(small, b"k", b"x" * 10_000)
        return producer

    with pytest.raises(KafkaError):
        asyncio.run(send())
