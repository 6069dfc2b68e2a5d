"""Checkpoints: what the worker applied becomes durable, in an order that loses nothing.

One checkpoint, under the worker's state lock (assignments wait for it, and it for them):

1. at one instant (no event is applied in between), take every processor's changed states with
   the source offset they reflect, and the health signals waiting in the outboxes;
2. produce the signals and wait until Kafka has them;
3. write each changed table partition to the backend in one atomic step (states + offset).

A crash before 3 leaves the previous checkpoint: the events after it are read again and applied
to the states as they were, producing the same (absolute) signals again. A crash after 3 loses
nothing: the signals were out before the offset moved. Faust's offset commits run a checkpoint
first (``stream_app.kafka.compat.commits``), so a committed offset is checkpointed too; the
positions a worker resumes from come from the backend, never from the commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from ..engine.family import SignalChange
from ..store.backend import Backend
from ..store.partition_state import PartitionFlush
from ..store.redis_flush import FLUSH_FENCED, FLUSH_OK, FLUSH_WIPED
from .processing import Outbox

log = logging.getLogger(__name__)

# (topic, key, value) -> awaitable delivery; then flush
Send = Callable[[str, bytes, bytes], Awaitable[Any]]


class Checkpointer:
    """Makes every processor's applied changes durable (see the module docstring)."""

    def __init__(
        self,
        processors: Sequence[Any],
        outbox: Outbox,
        backend: Backend,
        *,
        signals_topic: str,
        send: Send,
        flush_producer: Callable[[], Awaitable[Any]],
        lock: asyncio.Lock,
    ) -> None:
        self.processors = processors
        self.outbox = outbox
        self.backend = backend
        self.signals_topic = signals_topic
        self.send = send
        self.flush_producer = flush_producer
        self.lock = lock
        self.count = 0
        self.last_seconds = 0.0
        self.last_states = 0
        self.last_signals = 0

    def pending(self) -> bool:
        """Whether anything waits for a checkpoint."""
        return bool(len(self.outbox)) or any(
            proc.states.pending(p) for proc in self.processors for p in proc.states.partitions()
        )

    async def run(self) -> bool:
        """One checkpoint; returns whether everything taken was written."""
        async with self.lock:
            return await self._run()

    async def _run(self) -> bool:
        started = time.monotonic()
        # 1. One instant: no await until everything is taken.
        signals = self.outbox.take()
        flushes: list[tuple[Any, PartitionFlush]] = []
        for proc in self.processors:
            for partition in sorted(proc.states.partitions()):
                flush = proc.states.take(partition)
                if flush is not None:
                    flushes.append((proc, flush))
        if not signals and not flushes:
            return True
        # 2. Signals first: a checkpoint may only cover what Kafka already has.
        try:
            await self._send(signals)
        except Exception as exc:  # producer trouble: nothing is written, everything kept
            log.warning("checkpoint: producing %d health signals failed (%r); retried next time", len(signals), exc)
            self.outbox.restore(signals)
            for proc, flush in flushes:
                proc.states.restore(flush)
            return False
        # 3. States and offsets, one atomic write per partition.
        complete = True
        pending = list(flushes)
        try:
            while pending:
                proc, flush = pending[0]
                status = await self.backend.write(flush)
                pending.pop(0)
                if status == FLUSH_OK:
                    proc.states.flushed(flush)
                elif status == FLUSH_WIPED:
                    # The backend lost the partition under us; memory is complete: rewrite it whole.
                    proc.states.restore(flush)
                    proc.states.require_full_rewrite(flush.partition)
                    complete = False
                elif status == FLUSH_FENCED:
                    # Another worker owns it now (we were too slow to notice a rebalance); it
                    # resumes from the checkpoint it claimed. Let go of it: its events here are
                    # skipped until the rebalance reaches this worker.
                    proc.states.drop(flush.partition)
                    complete = False
        except Exception:  # backend unreachable: keep the rest dirty, retry next time
            for proc, flush in pending:
                proc.states.restore(flush)
            complete = False
        self.count += 1
        self.last_seconds = time.monotonic() - started
        self.last_states = sum(len(f.sets) + len(f.deletes) for _, f in flushes)
        self.last_signals = len(signals)
        return complete

    async def _send(self, signals: list[SignalChange]) -> None:
        if not signals:
            return
        send, topic, dumps = self.send, self.signals_topic, orjson.dumps
        for change in signals:
            await send(topic, change.account_id.encode(), dumps(change.message()))
        await self.flush_producer()
