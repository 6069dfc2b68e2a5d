"""Thin async Kafka producing layer (aiokafka) and the ``stream-app generate`` command.

Throughput comes from batching: ``send_*`` only enqueue (aiokafka's ``send()`` returns a
delivery future) and ``flush()`` waits for the broker. Delivery failures are collected from
the futures and raised by the next ``flush()`` so a fire-and-forget caller still learns of them.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer

from .generator import FAMILIES, Faults, GeneratedEvent, Profile, generate_live


class EventProducer:
    """``async with EventProducer(bootstrap, topics) as p: await p.send_event(...)``.

    ``topics`` maps event family ('ticket', ...) to topic name (``Settings.input_topics()``).
    Defaults: acks=all with the idempotent producer (no duplicates or reordering from retries;
    works against Kafka 4.1), a short linger and large batches for throughput.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Mapping[str, str],
        *,
        linger_ms: int = 10,
        max_batch_size: int = 256 * 1024,
        enable_idempotence: bool = True,
        client_id: str = "stream-app-producer",
        request_timeout_ms: int = 30000,
        **producer_kwargs: Any,
    ) -> None:
        self.topics = dict(topics)
        self._kwargs = dict(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=enable_idempotence,
            linger_ms=linger_ms,
            max_batch_size=max_batch_size,
            request_timeout_ms=request_timeout_ms,
            **producer_kwargs,
        )
        self._producer: AIOKafkaProducer | None = None
        self._error: BaseException | None = None
        self.sent = 0  # enqueued
        self.acked = 0  # confirmed by the broker
        self.failed = 0

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**self._kwargs)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()  # flushes what is still queued

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self.stop()

    def _on_delivery(self, fut: asyncio.Future) -> None:
        if fut.cancelled():
            self.failed += 1
        elif fut.exception() is not None:
            self.failed += 1
            if self._error is None:
                self._error = fut.exception()
        else:
            self.acked += 1

    async def send_raw(
        self,
        topic: str,
        key: bytes | str | None,
        value: bytes,
        *,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> asyncio.Future:
        """Enqueue one message; returns its delivery future (resolves to RecordMetadata)."""
        if self._producer is None:
            raise RuntimeError("EventProducer is not started")
        if isinstance(key, str):
            key = key.encode()
        fut = await self._producer.send(
            topic, value=value, key=key, headers=headers, timestamp_ms=timestamp_ms
        )
        self.sent += 1
        fut.add_done_callback(self._on_delivery)
        return fut

    async def send_event(
        self,
        event: Any,
        family: str | None = None,
        key: bytes | str | None = None,
        **kwargs: Any,
    ) -> asyncio.Future:
        """Enqueue an event model (``stream_app.events``) or wire bytes to its family's topic.

        For a model, family and key default to ``event.family`` and ``event.subject``; for
        bytes both must be given (the key is the envelope subject).
        """
        if isinstance(event, (bytes, bytearray, memoryview)):
            value = bytes(event)
            if family is None:
                raise ValueError("family is required when sending raw bytes")
        else:
            value = event.model_dump_json().encode()
            family = family or event.family
            if key is None:
                key = event.subject
        return await self.send_raw(self.topics[family], key, value, **kwargs)

    async def send_generated(self, ev: GeneratedEvent) -> asyncio.Future:
        return await self.send_raw(self.topics[ev.family], ev.key_bytes, ev.value)

    async def flush(self) -> None:
        """Wait until everything enqueued is acknowledged; raise the first delivery error."""
        if self._producer is not None:
            await self._producer.flush()
        if self._error is not None:
            err, self._error = self._error, None
            raise err


async def produce_log(
    bootstrap: str,
    topics: Mapping[str, str],
    events: Iterable[GeneratedEvent] | AsyncIterable[GeneratedEvent],
    rate: float | None = None,
    **producer_kwargs: Any,
) -> dict[str, int]:
    """Send a generated log in emission order; ``rate`` = messages/s (None: as fast as possible).

    Returns counts by family plus 'total'. Everything is acknowledged when it returns.
    """
    counts = {"total": 0, **{f: 0 for f in FAMILIES}}
    async with EventProducer(bootstrap, topics, **producer_kwargs) as producer:
        t0 = time.monotonic()

        async def one(ev: GeneratedEvent) -> None:
            if rate is not None:
                ahead = t0 + counts["total"] / rate - time.monotonic()
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
            await producer.send_generated(ev)
            counts["total"] += 1
            counts[ev.family] += 1

        if isinstance(events, AsyncIterable):
            async for ev in events:
                await one(ev)
        else:
            for ev in events:
                await one(ev)
    return counts


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stream-app generate",
        description="Send synthetic customer-success events (tickets, activity, subscriptions, "
        "surveys) to Kafka with event time = now. See docs/generator.md.",
    )
    p.add_argument("--rate", type=float, default=50.0, help="events per second (default 50)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument(
        "--duration", type=float, default=0.0, help="seconds to run; 0 = until interrupted (default)"
    )
    p.add_argument(
        "--faults",
        default="",
        help='fault fractions, e.g. "duplicate=0.01,out_of_order=0.01,late=0.005,invalid=0.005"; '
        "also late_by, duplicate_within, out_of_order_within (seconds)",
    )
    p.add_argument(
        "--profile",
        choices=("dense", "saas", "fast", "realistic"),
        default="dense",
        help="dense: every family busy within minutes, real-time delays (the tests' world); "
        "saas: a believable company sized from --rate, starting with its recent past (the demo's); "
        "fast: dense with trials and billing months in minutes; realistic: old name of dense",
    )
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: settings)")
    p.add_argument(
        "--create-topics", action="store_true", help="create missing topics before sending"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print 'topic key value' lines to stdout instead of sending",
    )
    p.add_argument(
        "--progress-interval", type=float, default=5.0, help="seconds between progress lines"
    )
    return p


class _Progress:
    def __init__(self, out: TextIO, interval: float) -> None:
        self.out, self.interval = out, interval
        self.t0 = self.last_t = time.monotonic()
        self.last_n = 0
        self.counts = {"total": 0, **{f: 0 for f in FAMILIES}, "invalid": 0}

    def add(self, ev: GeneratedEvent) -> None:
        self.counts["total"] += 1
        self.counts[ev.family] += 1
        self.counts["invalid"] += ev.is_invalid

    def maybe_print(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_t < self.interval:
            return
        n = self.counts["total"]
        rate = (n - self.last_n) / max(now - self.last_t, 1e-9)
        fam = " ".join(f"{k}={v}" for k, v in self.counts.items() if k != "total")
        print(f"sent={n} rate={rate:.1f}/s {fam} elapsed={now - self.t0:.0f}s", file=self.out, flush=True)
        self.last_t, self.last_n = now, n


async def _run_generate(args: argparse.Namespace, bootstrap: str, topics: dict[str, str], seed: int) -> int:
    faults = Faults.parse(args.faults)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    progress = _Progress(sys.stderr if args.dry_run else sys.stdout, args.progress_interval)
    events = generate_live(seed, args.rate, clock=time.time, faults=faults, profile=Profile.named(args.profile))
    deadline = time.time() + args.duration if args.duration > 0 else float("inf")

    async def pace(ev: GeneratedEvent) -> bool:
        """Wait until the event is due; False when it is time to stop."""
        while True:
            if stop.is_set() or ev.emit_time >= deadline:
                return False
            ahead = ev.emit_time - time.time()
            if ahead <= 0.005:
                return True
            # wake for progress lines and signals while waiting
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(ahead, args.progress_interval))
            except TimeoutError:
                pass
            progress.maybe_print()

    if args.dry_run:
        try:
            for ev in events:
                if not await pace(ev):
                    break
                sys.stdout.buffer.write(b"%s %s %s\n" % (topics[ev.family].encode(), ev.key_bytes, ev.value))
                progress.add(ev)
                progress.maybe_print()
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. piped into `head`
            return 0
        progress.maybe_print(force=True)
        return 0

    from ..config import get_settings
    from ..kafka.security import kafka_client_kwargs
    from ..kafka.topics import check_kafka, ensure_topics

    settings = get_settings().model_copy(update={"kafka_bootstrap": bootstrap})
    await check_kafka(settings)  # KafkaUnreachable: one line, exit 1 (stream_app.cli)
    if args.create_topics:
        await ensure_topics(settings)

    try:
        auth = kafka_client_kwargs(get_settings())  # SASL / TLS as configured for the workers
        async with EventProducer(bootstrap, topics, client_id="stream-app-generator", **auth) as producer:
            for ev in events:
                if not await pace(ev):
                    break
                await producer.send_generated(ev)
                progress.add(ev)
                progress.maybe_print()
    except Exception as exc:  # noqa: BLE001 - report any Kafka failure as a clean exit code
        print(f"generate: Kafka error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    progress.maybe_print(force=True)
    return 0


def main_generate(argv: list[str] | None = None) -> int:
    """``stream-app generate``: synthetic live traffic to the input topics."""
    from ..config import get_settings

    args = _parser().parse_args(argv)
    if args.rate <= 0:
        print("generate: --rate must be > 0", file=sys.stderr)
        return 2
    try:
        Faults.parse(args.faults)
    except ValueError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    settings = get_settings()
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    print(
        f"generate: seed={seed} rate={args.rate}/s profile={args.profile} faults={args.faults or 'none'} "
        f"-> {'stdout' if args.dry_run else bootstrap}",
        file=sys.stderr,
        flush=True,
    )
    return asyncio.run(_run_generate(args, bootstrap, settings.input_topics(), seed))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main_generate(sys.argv[1:]))
