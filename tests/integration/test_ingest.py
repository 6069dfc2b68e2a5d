"""Ingest end to end on the real local stack: valid and invalid events of every family
through a real worker process; /metrics counts and the dead-letter topic are checked."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.events import EVENT_TYPES, family_of
from tests.support.events import at_path, enc
from tests.support.paths import EXAMPLES_DIR
from tests.support.worker import WorkerProcess, settings_of, total, wait_for, worker_env

pytestmark = pytest.mark.integration


def _valid_events() -> list[tuple[str, bytes, bytes]]:
    """(family, key, value) for every example, each twice with fresh ids."""
    out = []
    for event_type in sorted(EVENT_TYPES):
        example = json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())
        for _ in range(2):
            example["id"] = str(uuid.uuid4())
            out.append((family_of(event_type), example["subject"].encode(), json.dumps(example).encode()))
    return out


def _invalid_events() -> list[tuple[str, bytes | None, bytes, str]]:
    """(family, key, value, expected reason)."""
    ticket = json.loads((EXAMPLES_DIR / "ticket.created.json").read_text())
    payment = json.loads((EXAMPLES_DIR / "subscription.payment.json").read_text())
    nps = json.loads((EXAMPLES_DIR / "survey.nps.json").read_text())

    def variant(base: dict, **changes) -> dict:
        ev = json.loads(json.dumps(base))
        ev["id"] = str(uuid.uuid4())
        for path, value in changes.items():
            target, key = at_path(ev, path, "__")
            target[key] = value
        return ev

    tkey = ticket["subject"].encode()
    return [
        ("ticket", tkey, b'{"id": "broken', "malformed_json"),
        ("ticket", tkey, b"\xff\xfe not utf-8", "not_utf8"),
        ("ticket", tkey, b"[1, 2, 3]", "not_an_object"),
        ("ticket", tkey, enc(variant(ticket, type="ticket.teleported")), "unknown_type"),
        ("ticket", tkey, enc(variant(ticket, schemaversion=99)), "unsupported_version"),
        ("ticket", tkey, enc(variant(ticket, data__priority="whenever")), "invalid"),
        ("ticket", tkey, enc(variant(ticket, time="2026-01-01T10:00:00")), "invalid"),
        ("ticket", b"some-other-key", enc(variant(ticket)), "key_mismatch"),
        ("survey", tkey, enc(variant(ticket)), "wrong_topic"),
        ("survey", nps["subject"].encode(), enc(variant(nps, data__score=11)), "invalid"),
        ("subscription", payment["subject"].encode(), enc(variant(payment, data__amount_minor=-5)), "invalid"),
        ("activity", b"u", b"{" + b" " * 70_000 + b"}", "too_large"),
    ]


async def _produce(bootstrap: str, topics: dict[str, str], records) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for family, key, value, *_ in records:
            await producer.send(topics[family], key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0):
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < expected and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
        # Anything beyond the expected count would be a double dead-letter.
        extra = await consumer.getmany(timeout_ms=1500)
        for msgs in extra.values():
            records.extend(msgs)
    finally:
        await consumer.stop()
    return records


def test_valid_and_invalid_events_of_every_family(stack, tmp_path):
    app_id = f"ingest-{uuid.uuid4().hex[:8]}"
    env = worker_env(stack, app_id, store="memory")
    settings = settings_of(env)
    topics = settings.input_topics()
    worker = WorkerProcess(env, tmp_path).start()
    try:
        valid = _valid_events()
        invalid = _invalid_events()
        asyncio.run(_produce(stack.bootstrap, topics, valid + invalid))

        expected_consumed = Counter(topics[f] for f, *_ in valid + invalid)
        wait_for(
            lambda: all(
                total(worker.samples(), "stream_app_events_consumed_total", topic=t) == n
                for t, n in expected_consumed.items()
            ),
            timeout=60,
            message="all events consumed",
        )
        samples = worker.samples()

        expected_valid = Counter((topics[family_of(json.loads(v)["type"])], json.loads(v)["type"]) for _, _, v in valid)
        for (topic, event_type), n in expected_valid.items():
            assert total(samples, "stream_app_events_valid_total", topic=topic, type=event_type) == n, event_type
        assert total(samples, "stream_app_events_valid_total") == len(valid)

        expected_invalid = Counter((topics[f], reason) for f, _, _, reason in invalid)
        for (topic, reason), n in expected_invalid.items():
            assert total(samples, "stream_app_events_invalid_total", topic=topic, reason=reason) == n, reason
            assert total(samples, "stream_app_events_deadlettered_total", topic=topic, reason=reason) == n
        assert total(samples, "stream_app_events_invalid_total") == len(invalid)

        # The dead-letter topic holds exactly the invalid messages, original bytes, with reasons.
        dead = asyncio.run(_read_all(stack.bootstrap, settings.topic_deadletter, len(invalid)))
        got = Counter(
            (dict(m.headers)["x-reject-reason"].decode(), m.value or b"", dict(m.headers)["x-source-topic"].decode())
            for m in dead
        )
        want = Counter((reason, value, topics[f]) for f, _, value, reason in invalid)
        assert got == want
        for m in dead:
            detail = dict(m.headers)["x-reject-detail"].decode()
            assert detail, "every rejection carries a readable detail"
            print(f"dead letter: {dict(m.headers)['x-reject-reason'].decode():20} {detail[:100]}")

        # Still consuming afterwards.
        more = _valid_events()
        asyncio.run(_produce(stack.bootstrap, topics, more))
        wait_for(
            lambda: total(worker.samples(), "stream_app_events_valid_total") == len(valid) + len(more),
            timeout=60,
            message="worker still consuming after bad input",
        )
        assert worker.http_status("/healthz") == 200
        assert worker.http_status("/readyz") == 200
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        print(worker.log_tail(15))
