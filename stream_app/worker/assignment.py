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
    """The worker's side of a rebalance (see the module docstring).

    Two phases, so that Faust's seek (bounded by its request timeout, and holding the consumer's
    fetches) stays short whatever the states weigh: :meth:`positions` claims the partitions and
    reads their checkpoint offsets (one round trip each); a background task then reads their
    states and rebuilds the indexes while events wait (:attr:`processing`). A new rebalance
    cancels that task (:meth:`begin`): partitions it had not filled yet hold nothing that is
    written back (nothing was applied to them).
    """

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
        self._loading: asyncio.Task | None = None

    def begin(self) -> None:
        """A rebalance started: not ready until it is assigned and rebuilt; a load still running
        for the previous assignment is abandoned."""
        for proc in [*self.processors, self.health]:
            proc.gate.begin_rebalance()
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()

    async def positions(self, assigned: set[Any]) -> dict[Any, int]:
        """Take ``assigned`` (TopicPartitions of the source topics) over; returns the offset to
        read each of them from. The states follow in the background (:meth:`wait_loaded`)."""
        self.begin()
        async with self.lock:
            self.processing.clear()
            started = time.monotonic()
            self.generation += 1
            out: dict[Any, int] = {}
            to_load: list[tuple[Any, int]] = []
            try:
                for proc in [*self.processors, self.health]:
                    parts = {tp.partition for tp in assigned if tp.topic == proc.topic}
                    to_load += [(proc, p) for p in await self._claim(proc, parts)]
                    if self.debug_pause and parts:
                        log.info("%s: recovery paused %.1fs (debug)", proc.table, self.debug_pause)
                        await asyncio.sleep(self.debug_pause)
                    resume = {p: proc.states.position(p) for p in sorted(parts)}
                    out.update({tp: resume[tp.partition] for tp in assigned if tp.topic == proc.topic})
                    if resume:
                        log.info("%s resumes at offsets %s (partition: offset)", proc.topic, resume)
            except BaseException:
                self.processing.set()
                raise
        self._loading = asyncio.ensure_future(self._load_and_rebuild(assigned, to_load, started))
        return out

    async def wait_loaded(self) -> None:
        """Until the latest assignment's states are loaded and its indexes rebuilt (tests, tools)."""
        if self._loading is not None:
            await asyncio.gather(self._loading, return_exceptions=True)

    async def _claim(self, proc: Any, parts: set[int]) -> list[int]:
        """Drop revoked partitions, keep held ones still ours, claim new ones (their checkpoint
        offset installed, their states to load). Returns the partitions to load."""
        states = proc.states
        for partition in sorted(states.partitions() - parts):
            n = states.drop(partition)
            log.info("%s: partition %d revoked, dropped %d states", proc.table, partition, n)
        new = []
        for partition in sorted(parts):
            if states.holds(partition):
                if await self.backend.still_ours(proc.table, partition, states.flushed_offset(partition)):
                    continue  # kept: no other worker claimed it since our last checkpoint
            states.drop(partition)
            offset = await self.backend.claim(proc.table, partition)
            states.install(partition, None, offset)
            if offset is not None:
                new.append(partition)
        return new

    async def _load_and_rebuild(self, assigned: set[Any], to_load: list[tuple[Any, int]], started: float) -> None:
        try:
            async with self.lock:
                with collector_paused():
                    paused: set[str] = set()
                    for proc, partition in to_load:
                        if self.debug_pause and proc.table not in paused:
                            paused.add(proc.table)
                            log.info("%s: recovery paused %.1fs (debug)", proc.table, self.debug_pause)
                            await asyncio.sleep(self.debug_pause)
                        try:
                            items = await self.backend.read(proc.table, partition)
                        except Exception:  # noqa: BLE001 - not held: its events wait for the next owner
                            log.exception("%s partition %d could not be read: not processed until the next "
                                          "rebalance", proc.table, partition)  # fmt: skip
                            proc.states.drop(partition)
                            continue
                        proc.states.fill(partition, items)
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
        except asyncio.CancelledError:
            log.info("assignment load abandoned: partitions moved again")
            raise
        except Exception:  # noqa: BLE001 - never leave events waiting forever; the next rebalance retries
            log.exception("rebuilding the assigned partitions' indexes failed")
        finally:
            self.processing.set()
