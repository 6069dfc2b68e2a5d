"""In-process microbenchmark of one worker's per-event cost, without Kafka.

Feeds the harness's mixed log (benchmarks.bench.make_log) through a real ``StreamWorker``'s
ingest path in batches (``Ingest.ingest_batch``: decode, pipeline counters, the engine step of
each family), runs a checkpoint every ``--checkpoint-every`` events (states encoded, signals
serialised; the memory backend writes nothing, the producer is replaced by a stub that keeps the
bytes), and applies the signals through the health processor, as the health agent would. Not
measured: aiokafka (consume, produce requests), Faust's stream/agent machinery, Redis, /metrics.

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
import pstats
import time
from types import SimpleNamespace

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition
import orjson

from stream_app.worker.app import StreamWorker
from stream_app.config import Settings
from stream_app.events import EventRejected, decode_event

from .bench import make_log

PARTITIONS = 4


def _worker() -> tuple[StreamWorker, list]:
    """A worker on the memory store holding every partition; what it produces is kept, not sent."""
    worker = StreamWorker(Settings(store="memory", topic_partitions=PARTITIONS))
    sent: list = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        sent.append((key, value))

    async def flush() -> None:
        pass

    async def dead_letter(**kwargs) -> None:
        pass

    worker.checkpointer.send = send
    worker.checkpointer.flush_producer = flush
    worker.ingest.deadletter.send = dead_letter  # type: ignore[method-assign]
    return worker, sent


def _messages(events) -> list:
    part = DefaultPartitioner()
    parts = list(range(PARTITIONS))
    offsets: dict = {}
    out = []
    for e in events:
        key = e.key.encode()
        p = part(key, parts, parts)
        offsets[(e.family, p)] = offset = offsets.get((e.family, p), -1) + 1
        out.append((e.family, SimpleNamespace(key=key, value=e.value, message=SimpleNamespace(partition=p, offset=offset))))
    return out


async def _run(worker: StreamWorker, sent: list, messages: list, batch: int, checkpoint_every: int) -> None:
    topics = worker.input_topics
    handlers = worker.handlers
    health = worker.health
    part = DefaultPartitioner()
    parts = list(range(PARTITIONS))
    signal_offsets = dict.fromkeys(parts, -1)
    await worker.assignment.positions(
        {TopicPartition(t, p) for t in [*topics.values(), health.topic] for p in parts}
    )
    await worker.assignment.wait_loaded()
    pending: dict[str, list] = {}
    since = 0
    for family, event in messages:
        pending.setdefault(family, []).append(event)
        since += 1
        if len(pending[family]) >= batch:
            await worker.ingest.ingest_batch(pending.pop(family), family, topics[family], handlers.get(family))
        if since >= checkpoint_every:
            since = 0
            for fam, events in pending.items():
                await worker.ingest.ingest_batch(events, fam, topics[fam], handlers.get(fam))
            pending.clear()
            await worker.checkpointer.run()
            for key, value in sent:
                p = part(key, parts, parts)
                signal_offsets[p] += 1
                health.process(key.decode(), orjson.loads(value), p, signal_offsets[p])
            sent.clear()


def run_once(messages: list, batch: int, checkpoint_every: int, profile: bool = False) -> tuple[float, StreamWorker]:
    worker, sent = _worker()
    gc.collect()
    prof = cProfile.Profile() if profile else None
    t = time.process_time()
    if prof:
        prof.enable()
    asyncio.run(_run(worker, sent, messages, batch, checkpoint_every))
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
    p.add_argument("--batch", type=int, default=200, help="events per ingest batch (per topic)")
    p.add_argument("--checkpoint-every", type=int, default=2000, help="events between checkpoints")
    p.add_argument("--profile", action="store_true", help="cProfile one extra run (slower, for shares only)")
    args = p.parse_args(argv)
    events, stats = make_log(args.events, args.seed)
    messages = _messages(events)
    n = len(messages)
    print(f"log: {n} messages, {stats['avg_bytes']} B average, families {stats['families']}")
    dec = min(decode_only(messages) for _ in range(args.repeat))
    runs = [run_once(messages, args.batch, args.checkpoint_every)[0] for _ in range(args.repeat)]
    best = min(runs)
    print(f"decode_event only: {dec / n * 1e6:.1f} us CPU/event")
    print(f"ingest path + health: {best / n * 1e6:.1f} us CPU/event best "
          f"({', '.join(f'{r / n * 1e6:.1f}' for r in runs)}), {n / best:,.0f} events/s")  # fmt: skip
    if args.profile:
        run_once(messages, args.batch, args.checkpoint_every, profile=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
