"""The sync client's ``data=`` keyword end to end: the event lands on its topic with key =
subject and the given data (real Kafka from the session stack)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from stream_app.client import EventClient

pytestmark = pytest.mark.integration


def test_type_method_and_send_with_data_keyword_deliver(stack, new_topic):
    topic = new_topic("client-data")
    ticket = f"T-{uuid.uuid4().hex[:8]}"
    with EventClient(source="it", bootstrap=stack.bootstrap, topics={"ticket": topic}) as client:
        first = client.ticket_reopened(data={"ticket_id": ticket})
        second = client.send("ticket.closed", data={"ticket_id": ticket})
    assert (first.topic, first.key, second.key) == (topic, ticket, ticket)

    async def read() -> list[dict]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=10_000, max_records=10)
            return [json.loads(r.value) for records in batch.values() for r in records]
        finally:
            await consumer.stop()

    got = asyncio.run(read())
    assert [(e["type"], e["data"]) for e in got] == [
        ("ticket.reopened", {"ticket_id": ticket}),
        ("ticket.closed", {"ticket_id": ticket}),
    ]
