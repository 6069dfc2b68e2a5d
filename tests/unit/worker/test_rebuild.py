"""Index rebuilds after an assignment: the chunked rebuild (the worker's path) gives the same
numbers as the live indexes and as a rebuild at once, lets the event loop run meanwhile, and a
rebuild overtaken by a newer rebalance does not replace the index."""

from __future__ import annotations

import asyncio
import gc
import math
import re
import time
from types import SimpleNamespace

from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from stream_app.worker.app import StreamWorker
from stream_app.config import Settings
from stream_app.tools.generator import generate
from stream_app.engine import rebuild

PARTITIONS = 4
ALL = set(range(PARTITIONS))
BUSINESS = re.compile(r"^stream_app_(support|usage|revenue|voice|health)_")


def _fed_worker() -> StreamWorker:
    """A worker on the memory store fed a generated log through its ingest path (Kafka sends
    replaced; health signals applied as the health agent would)."""
    worker = StreamWorker(Settings(store="memory", topic_partitions=PARTITIONS))
    for p in [*worker.processors, worker.health]:
        p.table.on_key_set = lambda key, value: None
        p.table.on_key_del = lambda key: None
    signals: list = []

    async def send(*, key: bytes, value: dict, **kwargs) -> None:
        signals.append((key, value))

    async def dead_letter(**kwargs) -> None:
        pass

    worker.signals.send = send
    worker.ingest.deadletter.send = dead_letter
    for p in worker.processors:
        p.signals = worker.signals
    for p in [*worker.processors, worker.health]:
        p.rebuild(ALL)
    part, parts = DefaultPartitioner(), list(range(PARTITIONS))
    events = generate(7, time.time() - 2 * 86400, 2 * 86400, 0.1)

    async def feed() -> None:
        for offset, e in enumerate(events):
            key = e.key.encode()
            msg = SimpleNamespace(partition=part(key, parts, parts), offset=offset)
            event = SimpleNamespace(key=key, value=e.value, message=msg)
            await worker.ingest.ingest_one(event, e.family, worker.input_topics[e.family], worker.handlers.get(e.family))
            for k, v in signals:
                await worker.health.handle(k.decode(), v, part(k, parts, parts))
            signals.clear()

    asyncio.run(feed())
    return worker


def _exposed(worker: StreamWorker, at: float) -> dict:
    """The business samples of /metrics evaluated at ``at``; a zero sample counts as absent (a
    live index keeps series it has seen, a rebuilt one only those with data)."""
    text = worker.exposition.render(at).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if BUSINESS.match(s.name) and not s.name.endswith("_watermark_timestamp_seconds") and s.value != 0
    }


def assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-9), (k, got[k], v)  # sums: summation order


def test_chunked_rebuild_equals_the_live_indexes_and_lets_the_loop_run(monkeypatch):
    monkeypatch.setattr(rebuild, "REBUILD_CHUNK", 50)
    worker = _fed_worker()
    processors = [*worker.processors, worker.health]
    assert min(len(p.table.data) for p in processors) > 2 * 50  # several chunks each
    at = time.time()
    live = _exposed(worker, at)
    ticks = 0

    async def rebuild_all() -> None:
        nonlocal ticks
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        for p in processors:
            p.gate.begin_rebalance()
            await p.rebuild_async(ALL)
            assert p.ready
        stop.set()
        await task

    asyncio.run(rebuild_all())
    assert ticks > 2 * len(processors)  # other tasks ran between chunks
    assert_same(_exposed(worker, at), live)
    for p in processors:
        p.rebuild(ALL)
    assert_same(_exposed(worker, at), live)


def test_a_rebuild_overtaken_by_a_rebalance_does_not_replace_the_index(monkeypatch):
    monkeypatch.setattr(rebuild, "REBUILD_CHUNK", 50)
    worker = _fed_worker()
    usage = next(p for p in worker.processors if p.family.name == "usage")
    assert len(usage.table.data) > 2 * 50
    before = usage.index

    async def overtaken() -> None:
        usage.gate.begin_rebalance()
        task = asyncio.ensure_future(usage.rebuild_async({0}))  # partition 0 only: a smaller index
        await asyncio.sleep(0)
        usage.gate.begin_rebalance()  # the next rebalance begins before it finishes
        await task

    asyncio.run(overtaken())
    assert usage.index is before and not usage.ready
    asyncio.run(usage.rebuild_async({0}))  # that rebalance's own rebuild
    assert usage.index is not before and usage.ready


def test_the_collector_waits_for_every_concurrent_rebuild_then_freezes_the_result(monkeypatch):
    monkeypatch.setattr(rebuild, "REBUILD_CHUNK", 50)
    worker = _fed_worker()
    processors = [*worker.processors, worker.health]
    seen: list[bool] = []

    async def rebuild_all() -> None:
        async def watch() -> None:
            while not all(p.ready for p in processors):
                seen.append(gc.isenabled())
                await asyncio.sleep(0)

        for p in processors:
            p.gate.begin_rebalance()
        # Faust runs every table's recovery callback at once.
        await asyncio.gather(*(p.rebuild_async(ALL) for p in processors), watch())

    gc.unfreeze()
    try:
        asyncio.run(rebuild_all())
        assert seen and not any(seen)  # paused while any rebuild ran
        assert gc.isenabled() and gc.get_freeze_count() > 0  # resumed, the rebuilt state frozen
    finally:
        gc.unfreeze()
        gc.enable()
