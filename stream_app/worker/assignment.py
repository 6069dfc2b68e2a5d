"""Partitions assigned: the states they need, the indexes rebuilt from them, where to read from.

Called by the consumer's seek after every rebalance (``stream_app.kafka.compat.positions``),
before any message of the new assignment is processed, under the worker's state lock:

* a partition this worker no longer holds is dropped;
* a partition it held before is kept if the backend still has it at the same checkpoint under
  this worker's claim (else it is read again);
* a new partition is claimed and read from the backend;
* every family's index is rebuilt from the states of its assigned partitions;
* each source partition is read from the offset after the one its states reflect (the start of
  the topic when the backend had no checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..store.backend import Backend

log = logging.getLogger(__name__)

_rebuilds_running = 0
_collector_was_enabled = True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while rebuilds run, then freeze what they built.

    A rebuild allocates about as many objects as the state holds; that triggers full collections,
    and one full collection of ~10M objects (1M entities) took ~10 s: the event loop blocked that
    long loses the worker its group membership. The rebuilt state is long-lived, so
    ``gc.freeze()`` moves it out of later collections (reference counting still frees whatever
    is replaced or deleted). Rebuilds may overlap: the last one to finish resumes the collector.
    """
    global _rebuilds_running, _collector_was_enabled
    if _rebuilds_running == 0:
        _collector_was_enabled = gc.isenabled()
        gc.disable()
    _rebuilds_running += 1
    try:
        yield
    finally:
        _rebuilds_running -= 1
        if _rebuilds_running == 0:
            gc.freeze()
            if _collector_was_enabled:
                gc.enable()


async def run_steps(steps: Iterator[None]) -> None:
    """Run a rebuild's steps, giving the event loop a turn between chunks."""
    for _ in steps:
        await asyncio.sleep(0)


class Assignment:
    """The worker's side of a rebalance (see the module docstring)."""

    def __init__(
        self, processors: Sequence[Any], health: Any, backend: Backend, lock: asyncio.Lock, *, debug_pause: float = 0.0
    ) -> None:
        self.processors = processors  # FamilyProcessor, each with .topic
        self.health = health  # HealthProcessor
        self.backend = backend
        self.lock = lock
        self.debug_pause = debug_pause  # STREAM_APP_DEBUG_RECOVERY_PAUSE_SECONDS: tests act mid-recovery
        self.generation = 0
        self.last_seconds = 0.0
        # Set while events may be processed: cleared while an assignment loads and rebuilds, so a
        # batch an agent already holds waits for the states and indexes it belongs to.
        self.processing = asyncio.Event()

    def begin(self) -> None:
        """A rebalance started: not ready until it is assigned and rebuilt."""
        for proc in [*self.processors, self.health]:
            proc.gate.begin_rebalance()

    async def positions(self, assigned: set[Any]) -> dict[Any, int]:
        """Take ``assigned`` (TopicPartitions of the source topics) over; returns the offset to
        read each of them from."""
        async with self.lock:
            self.processing.clear()
            try:
                return await self._positions(assigned)
            finally:
                self.processing.set()

    async def _positions(self, assigned: set[Any]) -> dict[Any, int]:
        started = time.monotonic()
        self.generation += 1
        self.begin()
        out: dict[Any, int] = {}
        with collector_paused():
            for proc in [*self.processors, self.health]:
                parts = {tp.partition for tp in assigned if tp.topic == proc.topic}
                await self._hold(proc, parts)
                if self.debug_pause and parts:
                    log.info("%s: recovery paused %.1fs (debug)", proc.table, self.debug_pause)
                    await asyncio.sleep(self.debug_pause)
                resume = {p: proc.states.position(p) for p in sorted(parts)}
                out.update({tp: resume[tp.partition] for tp in assigned if tp.topic == proc.topic})
                if resume:
                    log.info("%s resumes at offsets %s (partition: offset)", proc.topic, resume)
            for proc in self.processors:
                parts = {tp.partition for tp in assigned if tp.topic == proc.topic}
                t0 = time.perf_counter()
                await run_steps(proc.engine.rebuild_steps(parts))
                log.info(
                    "%s: rebuilt index from %d states of partitions %s in %.3fs",
                    proc.family.name, proc.engine.last_rebuild_states, sorted(parts), time.perf_counter() - t0,
                )
            health_parts = {tp.partition for tp in assigned if tp.topic == self.health.topic}
            t0 = time.perf_counter()
            await run_steps(self.health.stage.rebuild_steps(self.health.rows(health_parts), time.time()))
            log.info(
                "health: rebuilt %d accounts of partitions %s in %.3fs",
                self.health.stage.last_rebuild_accounts, sorted(health_parts), time.perf_counter() - t0,
            )
        self.last_seconds = time.monotonic() - started
        return out

    async def _hold(self, proc: Any, parts: set[int]) -> None:
        states = proc.states
        for partition in sorted(states.partitions() - parts):
            n = states.drop(partition)
            log.info("%s: partition %d revoked, dropped %d states", proc.table, partition, n)
        for partition in sorted(parts):
            if partition in states.parts:
                if await self.backend.still_ours(proc.table, partition, states.flushed_offset(partition)):
                    continue  # kept: no other worker claimed it since our last checkpoint
                states.drop(partition)
            loaded = await self.backend.load(proc.table, partition)
            states.install(partition, loaded.items, loaded.offset)
