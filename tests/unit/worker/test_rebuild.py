"""Index rebuilds after an assignment (stream_app.worker.assignment): the chunked rebuild gives the
same numbers as the live indexes and as a rebuild at once, lets the event loop run meanwhile, and
a rebuild overtaken by a newer rebalance does not replace the index."""

from __future__ import annotations

import asyncio
import gc
import math
import re
import time
from types import SimpleNamespace

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition as TP
from prometheus_client.parser import text_string_to_metric_families

from stream_app.worker.app import StreamWorker
from stream_app.config import Settings
from stream_app.tools.generator import generate
from stream_app.engine import rebuild
from stream_app.worker.assignment import run_steps
from tests.support.samples import DROPPED

PARTITIONS = 4
ALL = set(range(PARTITIONS))
BUSINESS = re.compile(r"^stream_app_(support|usage|revenue|voice|health)_")


def _topic_partitions(worker: StreamWorker) -> set:
    topics = [*worker.input_topics.values(), worker.health.topic]
    return {TP(t, p) for t in topics for p in ALL}


def _fed_worker() -> StreamWorker:
    """A worker on the memory store that holds every partition, fed a generated log through its
    ingest path (dead letters not sent; health signals applied as the health agent would)."""
    worker = StreamWorker(Settings(store="memory", topic_partitions=PARTITIONS))

    async def dead_letter(**kwargs) -> None:
        pass

    worker.ingest.deadletter.send = dead_letter
    part, parts = DefaultPartitioner(), list(range(PARTITIONS))
    events = generate(7, time.time() - 2 * 86400, 2 * 86400, 0.1)
    offsets: dict = {}

    def next_offset(topic: str, partition: int) -> int:
        offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
        return offsets[(topic, partition)]

    async def feed() -> None:
        await worker.assignment.positions(_topic_partitions(worker))  # holds everything, empty
        await worker.assignment.wait_loaded()
        for e in events:
            key = e.key.encode()
            topic = worker.input_topics[e.family]
            partition = part(key, parts, parts)
            msg = SimpleNamespace(partition=partition, offset=next_offset(topic, partition))
            event = SimpleNamespace(key=key, value=e.value, message=msg)
            await worker.ingest.ingest_batch([event], e.family, topic, worker.handlers.get(e.family))
            for change in worker.outbox.take():
                p = part(change.account_id.encode(), parts, parts)
                worker.health.process(change.account_id, change.message(), p, next_offset(worker.health.topic, p))

    asyncio.run(feed())
    return worker


def _exposed(worker: StreamWorker, at: float) -> dict:
    """The business samples of /metrics evaluated at ``at``; a zero sample counts as absent (a
    live index keeps series it has seen, a rebuilt one only those with data). The too-late
    counters are left out: they count arrivals, and a rebuilt index starts them at 0
    (tests/support/samples.py, DROPPED)."""
    text = worker.exposition.render(at).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if BUSINESS.match(s.name) and not s.name.endswith(("_watermark_timestamp_seconds", DROPPED)) and s.value != 0
    }


def assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-9), (k, got[k], v)  # sums: summation order


def test_chunked_rebuild_equals_the_live_indexes_and_lets_the_loop_run(monkeypatch):
    monkeypatch.setattr(rebuild, "REBUILD_CHUNK", 50)
    worker = _fed_worker()
    processors = [*worker.processors, worker.health]
    assert min(sum(p.states.counts().values()) for p in processors) > 2 * 50  # several chunks each
    at = time.time()
    live = _exposed(worker, at)
    ticks = 0

    async def reassign() -> None:
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await worker.assignment.positions(_topic_partitions(worker))  # every partition kept, rebuilt
        await worker.assignment.wait_loaded()
        assert all(p.ready for p in processors)
        stop.set()
        await task

    asyncio.run(reassign())
    assert ticks > 2 * len(processors)  # other tasks ran between chunks
    assert_same(_exposed(worker, at), live)
    for p in worker.processors:
        p.engine.rebuild(ALL)
    worker.health.stage.rebuild(worker.health.rows(ALL), at)
    assert_same(_exposed(worker, at), live)


def test_a_rebuild_overtaken_by_a_rebalance_does_not_replace_the_index(monkeypatch):
    monkeypatch.setattr(rebuild, "REBUILD_CHUNK", 50)
    worker = _fed_worker()
    usage = next(p for p in worker.processors if p.family.name == "usage")
    assert sum(usage.states.counts().values()) > 2 * 50
    before = usage.index

    async def overtaken() -> None:
        usage.gate.begin_rebalance()
        task = asyncio.ensure_future(run_steps(usage.engine.rebuild_steps({0})))  # a smaller index
        await asyncio.sleep(0)
        usage.gate.begin_rebalance()  # the next rebalance begins before it finishes
        await task

    asyncio.run(overtaken())
    assert usage.index is before and not usage.ready
    asyncio.run(run_steps(usage.engine.rebuild_steps({0})))  # that rebalance's own rebuild
    assert usage.index is not before and usage.ready


def test_the_collector_is_paused_while_an_assignment_rebuilds_then_the_result_is_frozen(monkeypatch):
    monkeypatch.setattr(rebuild, "REBUILD_CHUNK", 50)
    worker = _fed_worker()
    processors = [*worker.processors, worker.health]
    seen: list[bool] = []

    async def reassign() -> None:
        async def watch() -> None:
            await asyncio.sleep(0)
            while not all(p.ready for p in processors):
                seen.append(gc.isenabled())
                await asyncio.sleep(0)

        async def reassign_and_load() -> None:
            await worker.assignment.positions(_topic_partitions(worker))
            await worker.assignment.wait_loaded()

        await asyncio.gather(reassign_and_load(), watch())

    gc.unfreeze()
    try:
        asyncio.run(reassign())
        assert seen and not any(seen)  # paused while the rebuilds ran
        assert gc.isenabled() and gc.get_freeze_count() > 0  # resumed, the rebuilt state frozen
    finally:
        gc.unfreeze()
        gc.enable()
