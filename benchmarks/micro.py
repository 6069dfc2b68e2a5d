"""In-process microbenchmark of one worker's per-event cost, without Kafka.

Feeds the harness's mixed log (benchmarks.bench.make_log) through a real ``StreamWorker``'s
ingest path (``_ingest_one``: decode, pipeline counters, family handler: state, index, table
write, health signal) in one event loop, and the health signals it sends through the health
processor, as the health agent would. Kafka is replaced by stubs that still do the work that
happens in this process: the table's changelog record and every signal are serialised with
Faust's codec (what ``send_soon``/``send`` do before handing bytes to aiokafka). Not measured:
aiokafka (consume, produce requests), Faust's stream/agent machinery, commits, /metrics.

    .venv/bin/python -m benchmarks.micro --events 50000            # mixed log, memory store
    .venv/bin/python -m benchmarks.micro --events 50000 --profile  # + cProfile top functions

Prints CPU µs per event (process time, so other load on the machine matters less) for the whole
path and for decoding alone, best of ``--repeat`` runs (each run on a fresh worker, the same log).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import time
from types import SimpleNamespace

from aiokafka.partitioner import DefaultPartitioner
from faust.serializers import codecs

from stream_app.worker.app import StreamWorker
from stream_app.config import Settings
from stream_app.events import EventRejected, decode_event

from .bench import make_log

PARTITIONS = 4


def _worker() -> tuple[StreamWorker, list]:
    """A worker on the memory store whose Kafka sends are replaced by serialisation only."""
    worker = StreamWorker(Settings(store="memory", topic_partitions=PARTITIONS))
    json_codec = codecs.get_codec("json")
    sent: list = []

    for p in [*worker.processors, worker.health]:
        table = p.table
        # Faust's Table.on_key_set sends a changelog record; keep its serialisation cost.
        table.on_key_set = lambda key, value: json_codec.dumps(value)  # type: ignore[method-assign]
        table.on_key_del = lambda key: None  # type: ignore[method-assign]

    async def send(*, key: bytes, value: dict, **kwargs) -> None:
        sent.append((key, json_codec.dumps(value)))

    def send_soon(*, key: bytes, value: dict, **kwargs) -> None:
        sent.append((key, json_codec.dumps(value)))

    async def dead_letter(**kwargs) -> None:
        pass

    worker.deadletter.send = dead_letter  # type: ignore[method-assign]
    worker.signals.send = send  # type: ignore[method-assign]
    worker.signals.send_soon = send_soon  # type: ignore[method-assign]
    for p in worker.processors:
        p.signals = worker.signals
        p.rebuild(set(range(PARTITIONS)))
    worker.health.rebuild(set(range(PARTITIONS)))
    return worker, sent


def _messages(events) -> list:
    part = DefaultPartitioner()
    parts = list(range(PARTITIONS))
    out = []
    for offset, e in enumerate(events):
        key = e.key.encode()
        msg = SimpleNamespace(partition=part(key, parts, parts), offset=offset)
        out.append((e.family, SimpleNamespace(key=key, value=e.value, message=msg)))
    return out


async def _run(worker: StreamWorker, sent: list, messages: list) -> None:
    topics = worker.input_topics
    handlers = worker.handlers
    health = worker.health
    part = DefaultPartitioner()
    parts = list(range(PARTITIONS))
    for family, event in messages:
        await worker._ingest_one(event, family, topics[family], handlers.get(family))
        if sent:
            for key, value in sent:
                await health.handle(key.decode(), json.loads(value), part(key, parts, parts))
            sent.clear()


def run_once(messages: list, profile: bool = False) -> tuple[float, StreamWorker]:
    worker, sent = _worker()
    gc.collect()
    prof = cProfile.Profile() if profile else None
    t = time.process_time()
    if prof:
        prof.enable()
    asyncio.run(_run(worker, sent, messages))
    if prof:
        prof.disable()
    seconds = time.process_time() - t
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    return seconds, worker


def decode_only(messages: list) -> float:
    now = time.time()
    t = time.process_time()
    for family, event in messages:
        try:
            decode_event(event.value, expected_family=family, now=now)
        except EventRejected:
            pass
    return time.process_time() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="cProfile one extra run (slower, for shares only)")
    args = p.parse_args(argv)
    events, stats = make_log(args.events, args.seed)
    messages = _messages(events)
    n = len(messages)
    print(f"log: {n} messages, {stats['avg_bytes']} B average, families {stats['families']}")
    dec = min(decode_only(messages) for _ in range(args.repeat))
    runs = [run_once(messages)[0] for _ in range(args.repeat)]
    best = min(runs)
    print(f"decode_event only: {dec / n * 1e6:.1f} us CPU/event")
    print(f"ingest path + health: {best / n * 1e6:.1f} us CPU/event best "
          f"({', '.join(f'{r / n * 1e6:.1f}' for r in runs)}), {n / best:,.0f} events/s")  # fmt: skip
    if args.profile:
        run_once(messages, profile=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
