"""A checkpoint older than the log start: retention (here ``kafka-delete-records``, through the
admin API) deleted the events after a worker's checkpoint while it was down.

What aiokafka does on its own: the first fetch from the checkpoint answers OffsetOutOfRange and
the consumer resets to the earliest offset (``auto_offset_reset``), logging one INFO line; Faust
takes the jump for a gap and the deleted events are missing from the numbers without a trace.
The worker compares its positions with the log start on every assignment instead: a counter,
an ERROR line naming the partition and what was lost, and the policy of
``STREAM_APP_LOG_START_POLICY`` ('earliest': resume there and say so; 'fail': stop).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest

from stream_app.tools.generator import Faults, generate
from stream_app.tools.producer import EventProducer
from stream_app.worker.offsets import read_offsets_log
from tests.support.references import compare_with_reference, reference_events
from tests.support.worker import WorkerProcess, settings_of, total, wait_for, worker_env

pytestmark = pytest.mark.integration

DAY = 86400.0
PARTITIONS = 4


async def _produce(bootstrap, topics, events) -> list[tuple[str, int, int]]:
    """Produce in order; (family, partition, offset) of each event."""
    async with EventProducer(bootstrap, topics) as producer:
        futs = [await producer.send_generated(ev) for ev in events]
        await producer.flush()
    return [(ev.family, f.result().partition, f.result().offset) for ev, f in zip(events, futs, strict=True)]


async def _delete_before(bootstrap: str, topic: str, partition: int, offset: int) -> int:
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        out = await admin.delete_records({TopicPartition(topic, partition): RecordsToDelete(offset)})
    finally:
        await admin.close()
    return next(iter(out.values()))


def _caught_up(worker, topics: dict, where) -> bool:
    """Every (family, partition, offset) in ``where`` committed by the worker."""
    s = worker.samples().get("stream_app_faust_topic_partition_offset_commited", {})
    ends: dict = {}
    for fam, p, o in where:
        ends[(topics[fam], p)] = max(ends.get((topics[fam], p), -1), o)
    return all(s.get((("partition", str(p)), ("topic", t)), -1) >= o + 1 for (t, p), o in ends.items())


def _setup(stack, tmp_path, name: str, **settings):
    run = f"ls-{name}-{uuid.uuid4().hex[:6]}"
    topics = {f: f"{run}.{f}" for f in ("ticket", "activity", "subscription", "survey")}
    stack.create_topics(list(topics.values()), partitions=PARTITIONS)
    env = worker_env(stack, run, topics=topics, store="redis", session_timeout_seconds=6,
                     debug_offsets_log="offsets.log", **settings)  # fmt: skip
    now = time.time()
    events = generate(seed=77, start=now - DAY, duration_seconds=DAY - 120, rate=0.05,
                      faults=Faults(duplicate=0.01))  # fmt: skip
    return topics, env, events, now


def _first_half(stack, tmp_path, topics, env, events):
    """Half the log processed and checkpointed by a worker that then stops; the other half
    produced while it is down. Returns (worker, positions of every event)."""
    half = len(events) // 2
    where = asyncio.run(_produce(stack.bootstrap, topics, events[:half]))
    w = WorkerProcess(env, tmp_path, name="w0").start()
    wait_for(lambda: _caught_up(w, topics, where), timeout=120, message="first half committed")
    w.stop()
    checkpointed: dict = {}
    for fam, p, o in where:
        if fam == "ticket":
            checkpointed[p] = max(checkpointed.get(p, -1), o)
    where += asyncio.run(_produce(stack.bootstrap, topics, events[half:]))
    return w, where, checkpointed


def test_checkpoint_behind_log_start_resumes_at_the_earliest_offset_and_says_so(stack, tmp_path):
    topics, env, events, now = _setup(stack, tmp_path, "earliest")
    w, where, checkpointed = _first_half(stack, tmp_path, topics, env, events)
    # Retention deletes on partition 1 of the tickets topic up to 30 events past the checkpoint.
    p = 1
    start = checkpointed[p] + 31
    low = asyncio.run(_delete_before(stack.bootstrap, topics["ticket"], p, start))
    assert low == start
    deleted = {i for i, (fam, part, off) in enumerate(where) if fam == "ticket" and part == p and off < start}
    lost = {i for i in deleted if where[i][2] > checkpointed[p]}
    assert len(lost) == 30
    size = w.log_path.stat().st_size
    t0 = time.monotonic()
    w.start()
    ready = time.monotonic() - t0
    wait_for(lambda: _caught_up(w, topics, where), timeout=180, message="second half committed")
    caught_up = time.monotonic() - t0
    log = w.log_path.read_text(errors="replace")[size:]
    line = re.search(rf"{re.escape(topics['ticket'])}\[{p}\]: its checkpoint is offset {checkpointed[p] + 1} but the "
                     rf"log starts at {start}: retention deleted 30 events.*resuming from offset {start}", log)
    assert line, f"no log line names the partition:\n{log[-3000:]}"
    # every offset still in the log reached an agent (the debug offsets log), none of the deleted ones
    seen = read_offsets_log(str(w.workdir / "offsets.log"))
    ticket_p = seen[(topics["ticket"], p)]
    assert ticket_p[-1][1] == max(o for f, part, o in where if f == "ticket" and part == p)
    assert not any(a <= off <= b for a, b in ticket_p for off in (checkpointed[p] + 1, start - 1))
    assert any(a <= start <= b for a, b in ticket_p)
    samples = w.samples()
    assert total(samples, "stream_app_checkpoint_behind_log_start_total", topic=topics["ticket"]) == 1
    assert total(samples, "stream_app_events_lost_to_retention_total", topic=topics["ticket"]) == 30
    # Every event that was not deleted is counted, exactly (health: over the signals sent).
    kept = [ev for i, ev in enumerate(events) if i not in lost]
    diff = compare_with_reference([w], reference_events(kept, now), settings_of(env), stack.bootstrap)
    print(f"\n[log-start] produced {len(events)}, deleted by retention before they were read {len(lost)} "
          f"(counted and logged), processed {len(events) - len(lost)}, lost {diff['missing'] + diff['lost']}, "
          f"double counted {diff['double'] + diff['extra']} ({diff['checked']} samples checked against the "
          f"reference over the events still in the log); restart: ready {ready:.1f}s, caught up {caught_up:.1f}s")
    assert diff["missing"] == diff["lost"] == diff["double"] == diff["extra"] == 0, diff
    w.stop()


def test_checkpoint_behind_log_start_with_policy_fail_stops_the_worker(stack, tmp_path):
    topics, env, events, _ = _setup(stack, tmp_path, "fail", log_start_policy="fail")
    w, where, checkpointed = _first_half(stack, tmp_path, topics, env, events)
    p = 2
    asyncio.run(_delete_before(stack.bootstrap, topics["ticket"], p, checkpointed[p] + 11))
    size = w.log_path.stat().st_size
    with pytest.raises(AssertionError, match="worker exited"):
        w.start(ready_timeout=120)
    log = w.log_path.read_text(errors="replace")[size:]
    assert re.search(rf"{re.escape(topics['ticket'])}\[{p}\]: its checkpoint is offset \d+ but the log starts at "
                     rf"\d+: retention deleted 10 events.*refusing to go on", log), log[-3000:]  # fmt: skip
    assert w.proc.returncode != 0
