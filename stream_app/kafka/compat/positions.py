"""Source positions that Faust's at-least-once bookkeeping can trust.

Faust (0.15) keeps a *read offset* per source partition while its fetcher hands
messages to the agents: a message below it is dropped as already read, and a
jump above it is taken for a compacted or transactional gap whose offsets are
acked without being processed. Both rules assume every message handed over
follows the last seek. After a rebalance or restart Faust seeks each source
partition back to its committed offset, and three things broke that
assumption (each lost or risked losing events in tests/faults):

1. aiokafka only seeks to committed offsets > 0, so a partition without a
   commit kept its advanced position and the messages fetched during recovery
   were never processed.
2. The rest of a batch fetched before the seek was still handed over after it.
   Its next message looked like a gap after the committed offset: the messages
   in between, skipped while the flow was suspended, were acked unprocessed
   and their refetched copies dropped as already read.
3. A message handed over just before the seek was checked against the read
   offset just after it (the fetcher yields to the loop in between): the same
   false gap; and its own offset, written back after the seek, made the
   refetched messages look already read.

:func:`install` wraps the consumer: a seek rewinds uncommitted source
partitions to the start (as ``auto_offset_reset=earliest`` means; applied
events are deduplicated), a seek never runs while a batch is fetched or a
message is being handed over, and a batch fetched before the latest seek is
not handed over (it is fetched again from the new position).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily

# Where each assigned source partition must be read from (the worker's checkpoints).
Positions = Callable[[set[Any]], Awaitable[Mapping[Any, int]]]

log = logging.getLogger(__name__)


class PositionGuard:
    """Per consumer: seeks completed, and the seek count a batch was fetched at."""

    def __init__(
        self, consumer: Any, sources: Iterable[str], lock_timeout: float = 30.0, positions: Positions | None = None
    ) -> None:
        self.consumer = consumer
        self.sources = frozenset(sources)
        self.positions = positions
        self.lock_timeout = lock_timeout
        self.epoch = 0  # seeks completed
        self.batch_epoch = 0  # epoch when the batch being handed over was fetched
        self.discarded = 0  # messages fetched before a seek, not handed over
        self.committed_ahead = 0  # partitions whose checkpoint position was committed after a seek
        self._commits: set[asyncio.Future] = set()  # commits of checkpoint positions under way
        # Held while fetching, while the fetcher handles one message, and while seeking.
        self._lock = asyncio.Lock()
        self._perform_seek = consumer.perform_seek
        self._seek_to_committed = consumer.seek_to_committed
        self._commit = consumer._commit
        self._fetch = consumer._getmany
        self._getmany = consumer.getmany

    async def seek_to_positions(self) -> Any:
        """Seek every assigned source partition to where ``positions`` says (Faust calls this as
        ``seek_to_committed`` and takes the result for its read and committed offsets); other
        partitions to their committed offsets."""
        if self.positions is None:
            return await self.seek_to_committed_or_start()
        # aiokafka first: it sets every assigned partition's position from its committed offset
        # (a seek before that completes is overwritten by it), then ours override.
        committed = dict(await self._seek_to_committed())
        assigned = set(self.consumer.assignment())
        sources = {tp for tp in assigned if tp.topic in self.sources}
        wanted = dict(await self.positions(sources))
        for tp, offset in wanted.items():
            await self.consumer.seek(tp, offset)
        # Faust takes ``wanted`` for its committed offsets too, so it would commit a position
        # that a checkpoint put ahead of Kafka's only after a newer message: on a partition that
        # stays quiet, the group's lag would never clear. The states up to ``wanted`` are durable
        # (they came from that checkpoint), so commit it now, once the seek is over.
        ahead = {tp: o for tp, o in wanted.items() if o > (committed.get(tp) or 0)}
        if ahead:
            self._commits.add(task := asyncio.ensure_future(self._commit_ahead(ahead)))
            task.add_done_callback(self._commits.discard)
        return {**committed, **wanted}

    async def _commit_ahead(self, offsets: dict[Any, int]) -> None:
        try:
            # Faust's own commit call (its thread's commit: assigned partitions only; a commit
            # of an older generation fails as "already rebalanced" and is dropped).
            if await self._commit(offsets):
                self.committed_ahead += len(offsets)
        except Exception:  # noqa: BLE001 - the next commit after new messages does it anyway
            log.warning("committing checkpoint positions %s failed", offsets, exc_info=True)

    async def seek_to_committed_or_start(self) -> Any:
        committed = await self._seek_to_committed()
        for tp, offset in committed.items():
            if tp.topic in self.sources and not offset:  # None (no commit) or 0
                await self.consumer.seek(tp, 0)
        return committed

    async def perform_seek(self) -> None:
        try:
            await asyncio.wait_for(self._lock.acquire(), self.lock_timeout)
        except asyncio.TimeoutError:
            # Never expected (a handed-over message holds the lock for one
            # agent enqueue); seeking anyway beats a stuck worker.
            log.warning("consumer seek waited %.0fs for the fetcher; seeking anyway", self.lock_timeout)
            await self._perform_seek()
            self.epoch += 1
            return
        try:
            await self._perform_seek()
            self.epoch += 1
        finally:
            self._lock.release()

    async def fetch(self, active_partitions: Any, timeout: float) -> Any:
        async with self._lock:
            records = await self._fetch(active_partitions, timeout)
            self.batch_epoch = self.epoch
        return records

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        # Faust's fetcher is the only caller and reads one batch at a time, so
        # batch_epoch belongs to the batch these messages come from.
        batch = self._getmany(timeout)
        try:
            async for tp, message in batch:
                # Until the fetcher asks for the next message it checks this one
                # against the read offsets, delivers it and records its offset.
                await self._lock.acquire()
                try:
                    if self.batch_epoch != self.epoch:
                        self.discarded += 1
                        continue  # fetched before a seek: it comes again from the new position
                    yield tp, message
                finally:
                    self._lock.release()
        finally:
            await batch.aclose()


def guard_metric_families(guard: PositionGuard) -> list[CounterMetricFamily]:
    """The guard's counters as Prometheus families (for a collector on the worker's registry)."""
    discarded = CounterMetricFamily(
        "stream_app_consumer_prefetch_discarded",
        "Source messages fetched before a consumer seek and not handed to the agents "
        "(they are fetched again from the position the seek set).",
    )
    discarded.add_metric([], guard.discarded)
    seeks = CounterMetricFamily(
        "stream_app_consumer_seeks",
        "Seeks of the consumer to the positions it reads from (after rebalances and restarts).",
    )
    seeks.add_metric([], guard.epoch)
    return [discarded, seeks]


def install(consumer: Any, sources: Iterable[str], positions: Positions | None = None) -> PositionGuard:
    """Wrap ``consumer`` once, before its fetcher starts handing messages over. With
    ``positions``, assigned source partitions are read from where it says, not from their
    committed offsets."""
    guard = getattr(consumer, "_stream_app_position_guard", None)
    if guard is None:
        guard = PositionGuard(consumer, sources, positions=positions)
        consumer.seek_to_committed = guard.seek_to_positions
        consumer.perform_seek = guard.perform_seek
        consumer._getmany = guard.fetch
        consumer.getmany = guard.getmany
        consumer._stream_app_position_guard = guard
    return guard
