"""The metrics engine's thin shell: drives the pure family cores from Faust tables.

Per family (``stream_app.core.<family>``) one Faust table holds the entity
states (ticket, user, account, survey response), keyed like the Kafka message.
For each valid event the shell applies it to its entity's state, writes the new
state (one changelog record) and moves the derived index by the difference of
the old and new contributions. The index is never persisted: after every
rebalance it is rebuilt from the recovered states of the assigned partitions,
so it cannot drift from them and restarts do not change the numbers.

Table values are ``[partition, state_dict]``: the partition is kept with the
state so the rebuild works on any store (Faust's memory store keeps revoked
partitions' keys around).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client.core import GaugeMetricFamily, Metric

from .core.windows import WatermarkTracker
from .exposition import PREFIX, PipelineMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """What the shell needs from one family core (support, usage, revenue, voice)."""

    name: str  # metric family, e.g. "support"
    event_family: str  # event contract family, e.g. "ticket"
    table: str  # Faust table name
    config: Any
    from_dict: Callable[[dict], Any]
    apply: Callable[[Any, Any], tuple[Any, bool]]
    contributions: Callable[[Any, Any], list]
    make_index: Callable[[Any], Any]
    retention_until: Callable[[Any, Any], float | None] | None = None
    # The entity's contribution to its account's health (dict with "account_id"), or None.
    account_signal: Callable[[Any, Any], dict | None] | None = None


class EntityTable(faust.Table):
    """A Faust table that tells its processor when partitions move."""

    processor: FamilyProcessor | None = None

    async def on_rebalance(self, assigned, revoked, newly_assigned, generation_id: int = 0) -> None:
        if self.processor is not None:
            self.processor.on_rebalance_started()
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_recovery_completed(self, active_tps, standby_tps) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.processor is not None:
            await self.processor.rebuild_async({tp.partition for tp in active_tps})


# Rebuilds yield to the event loop every this many states: with a million entities a rebuild
# takes tens of seconds, and a loop blocked that long misses Faust's consumer keepalive and
# falls out of the group (then rebalances and rebuilds again). Source partitions stay paused
# until every table's recovery callback is done, so no event is processed meanwhile.
REBUILD_CHUNK = 2000


_rebuilds_running = 0


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while rebuilds run, then freeze what they built.

    A rebuild allocates about as many objects as the state holds; that triggers full collections,
    and one full collection of ~10M objects (1M entities) took ~10 s: the same blocked loop and
    lost group membership as an unchunked rebuild. The rebuilt state is long-lived, so
    ``gc.freeze()`` moves it out of later collections (reference counting still frees whatever
    is replaced or deleted). Tables rebuild concurrently: the last one to finish resumes the
    collector.
    """
    global _rebuilds_running
    if _rebuilds_running == 0:
        _collector_paused.was_enabled = gc.isenabled()  # type: ignore[attr-defined]
        gc.disable()
    _rebuilds_running += 1
    try:
        yield
    finally:
        _rebuilds_running -= 1
        if _rebuilds_running == 0:
            gc.freeze()
            if _collector_paused.was_enabled:  # type: ignore[attr-defined]
                gc.enable()


class Rebuilding:
    """Shared by the processors: a rebuild as steps, run at once or yielding between chunks.

    The new index is swapped in at the end, so a scrape meanwhile reads the previous one; a
    rebuild overtaken by a newer rebalance is dropped.
    """

    ready = False
    _rebuild_generation = 0

    def on_rebalance_started(self) -> None:
        self.ready = False
        self._rebuild_generation += 1

    def rebuild(self, partitions: set[int]) -> None:
        """Rebuild at once (tests, tools)."""
        for _ in self._rebuild_steps(partitions, self._next_rebuild()):
            pass

    async def rebuild_async(self, partitions: set[int]) -> None:
        with _collector_paused():
            for _ in self._rebuild_steps(partitions, self._next_rebuild()):
                await asyncio.sleep(0)

    def _next_rebuild(self) -> int:
        self._rebuild_generation += 1
        return self._rebuild_generation

    def _current(self, generation: int) -> bool:
        return generation == self._rebuild_generation

    def _rebuild_steps(self, partitions: set[int], generation: int) -> Iterator[None]:
        raise NotImplementedError


class FamilyProcessor(Rebuilding):
    """Entity states in a Faust table, a derived index in memory, the watermark."""

    def __init__(
        self,
        family: Family,
        app: faust.App,
        *,
        partitions: int,
        store: str,
        topic: str,
        pipeline: PipelineMetrics,
        signals: faust.TopicT | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.family = family
        self.signals = signals
        self.cfg = family.config
        self.topic = topic
        self.pipeline = pipeline
        self.clock = clock
        self.table = EntityTable(
            app,
            name=family.table,
            default=None,
            beacon=app.tables.beacon,
            partitions=partitions,
            store=store,
            help=f"{family.name} entity states",
        )
        app.tables.add(self.table)
        self.table.processor = self
        self.index = family.make_index(self.cfg)
        self.tracker = WatermarkTracker(self.cfg.horizon, self.cfg.bucket_seconds)
        # Per partition: heap of (retention_until, key); stale entries are re-checked.
        self._expiry: dict[int, list[tuple[float, str]]] = {}
        self._too_late = pipeline.too_late.labels(topic)
        self._duplicates = pipeline.duplicates.labels(topic)
        self.ready = False
        self.last_rebuild_seconds = 0.0
        self.evicted_entities = 0

    # --- per event (inside the agent's stream: table writes go to the event's partition)

    async def handle(self, event: Any, partition: int) -> None:
        fam = self.family
        if self.tracker.observe(partition, event.ts):
            self._too_late.inc()
        key = event.subject
        stored = self.table.get(key)
        old = fam.from_dict(stored[1]) if stored is not None else None
        new, applied = fam.apply(old, event)
        if not applied:
            self._duplicates.inc()
            # A redelivery may follow a crash that lost the signal sent the first
            # time; signals are absolute, so sending it again is harmless.
            await self._signal(key, old, old, force=True)
            return
        self.index.update(
            fam.contributions(old, self.cfg) if old is not None else (), fam.contributions(new, self.cfg)
        )
        self.table[key] = [partition, new.to_dict()]
        await self._signal(key, old, new)
        self._schedule_expiry(partition, key, new)
        cutoff = self.tracker.cutoff()
        self.index.evict(cutoff)
        if cutoff is not None:
            await self._expire(partition, cutoff)

    async def _signal(self, key: str, old: Any, new: Any, *, force: bool = False) -> None:
        """Tell customer health what this entity now says about its account."""
        fam = self.family
        if self.signals is None or fam.account_signal is None:
            return
        before = fam.account_signal(old, self.cfg) if old is not None else None
        after = fam.account_signal(new, self.cfg) if new is not None else None
        if not force and _without_ts(before) == _without_ts(after):
            return
        ts = (new if new is not None else old).max_ts()
        if before is not None and (after is None or before["account_id"] != after["account_id"]):
            await self._send_signal(before["account_id"], key, ts, None)
        if after is not None:
            await self._send_signal(after["account_id"], key, ts, after)

    async def _send_signal(self, account_id: str, key: str, ts: float | None, signal: dict | None) -> None:
        message = {"source": self.family.name, "entity": key, "ts": ts, "signal": signal}
        await self.signals.send(key=account_id.encode(), value=message)

    def _schedule_expiry(self, partition: int, key: str, state: Any, expiry: dict | None = None) -> None:
        if self.family.retention_until is None:
            return
        until = self.family.retention_until(state, self.cfg)
        if until is not None:
            heapq.heappush((self._expiry if expiry is None else expiry).setdefault(partition, []), (until, key))

    async def _expire(self, partition: int, cutoff: float, budget: int = 8) -> None:
        """Delete entities of this partition that no longer affect any metric.

        Only the current event's partition: a table delete writes its tombstone
        to the changelog partition of the event being processed. A small budget
        per event keeps the hot path flat.
        """
        heap = self._expiry.get(partition)
        while heap and budget and heap[0][0] < cutoff:
            budget -= 1
            _, key = heapq.heappop(heap)
            stored = self.table.get(key)
            if stored is None:
                continue
            state = self.family.from_dict(stored[1])
            until = self.family.retention_until(state, self.cfg)
            if until is None or until >= cutoff:
                continue  # updated since it was scheduled
            self.index.retract(self.family.contributions(state, self.cfg))
            del self.table[key]
            await self._signal(key, state, None)
            self.evicted_entities += 1

    # --- rebalancing ----------------------------------------------------------

    def _rebuild_steps(self, partitions: set[int], generation: int) -> Iterator[None]:
        """Rebuild the index from the recovered states of the assigned partitions."""
        t0 = time.perf_counter()
        fam, cfg = self.family, self.cfg
        index = fam.make_index(cfg)
        tracker = WatermarkTracker(cfg.horizon, cfg.bucket_seconds)
        expiry: dict[int, list[tuple[float, str]]] = {}
        states = []
        for i, (key, stored) in enumerate(list(self.table.data.items()), 1):
            if stored is None or stored[0] not in partitions:
                continue
            partition, state = stored[0], fam.from_dict(stored[1])
            states.append(state)
            ts = state.max_ts()
            if ts is not None:
                tracker.observe(partition, ts)
            self._schedule_expiry(partition, key, state, expiry)
            if i % REBUILD_CHUNK == 0:
                yield
        for i, state in enumerate(states, 1):
            index.update((), fam.contributions(state, cfg))
            if i % REBUILD_CHUNK == 0:
                yield
        # The watermark is seeded first, so the rebuild evicts exactly what processing would have.
        index.evict(tracker.cutoff())
        if not self._current(generation):
            return  # a newer rebalance started: its own rebuild follows
        self.index, self.tracker, self._expiry = index, tracker, expiry
        self.last_rebuild_seconds = time.perf_counter() - t0
        self.ready = True
        log.info(
            "%s: rebuilt index from %d states of partitions %s in %.3fs",
            fam.name,
            len(states),
            sorted(partitions),
            self.last_rebuild_seconds,
        )

    # --- exposition -------------------------------------------------------------

    def collect(self, now: float | None = None) -> Iterable[Metric]:
        now = self.clock() if now is None else now
        yield from self.index.collect(now)
        name = self.family.name
        wm = GaugeMetricFamily(
            f"{PREFIX}_{name}_watermark_timestamp_seconds",
            f"Highest event time this worker's {name} index has seen.",
        )
        wm.add_metric([], self.tracker.watermark() or 0.0)
        yield wm


def _without_ts(signal: dict | None) -> dict | None:
    # Support signals carry the entity's newest event time, which moves on every
    # event; only a change of what the signal says is worth a message.
    return None if signal is None else {k: v for k, v in signal.items() if k != "ts"}


class HealthProcessor(Rebuilding):
    """Per-account health state from the signals topic; scores are computed when read.

    The table holds one row per (account, source, entity): the entity's latest signal (or
    tombstone), ``[partition, [account_id, source, entity, ts, signal]]``. A signal changes one
    entity, so it writes one small changelog record instead of the whole account (an account
    can hold thousands of entities: writing the account per signal made this table most of the
    bytes a worker produced). The account states in ``HealthIndex`` are rebuilt from the rows.
    Rows of the earlier layout (key = account id, ``[partition, HealthState.to_dict()]``) are
    still read, and replaced by entity rows at the account's next change.
    """

    def __init__(self, app: faust.App, *, partitions: int, store: str, config: Any) -> None:
        from .core import health

        self._health = health
        self.cfg = config
        self.table = EntityTable(
            app,
            name="account_health",
            default=None,
            beacon=app.tables.beacon,
            partitions=partitions,
            store=store,
            help="customer health: latest signal per account and entity",
        )
        app.tables.add(self.table)
        self.table.processor = self
        self.index = health.HealthIndex(config)
        self._legacy: set[str] = set()  # accounts still stored as one whole-account row
        self.ready = False

    async def handle(self, account_id: str, message: dict, partition: int) -> None:
        old = self.index.get(account_id)
        state, changed = self.index.apply(message, account_id=account_id)
        # States are kept even when no entity is live: their tombstones stop a
        # replayed older signal from bringing an entity back (the core's
        # retention bounds them).
        if changed and state is not None:
            self._write(account_id, old, state, partition)

    def _write(self, account_id: str, old: Any, new: Any, partition: int) -> None:
        """Write the rows that differ between the account's old and new state (apply_signal
        copies only what changed, so unchanged entries are the same objects)."""
        table = self.table
        if account_id in self._legacy:
            self._legacy.discard(account_id)
            _delete(table, account_id)
            old = None  # write every entry as a row
        old_entries = old.entries if old is not None else {}
        for source, entities in new.entries.items():
            before = old_entries.get(source)
            if entities is before:
                continue
            for entity, entry in entities.items():
                if before is None or before.get(entity) is not entry:
                    table[health_row_key(account_id, source, entity)] = [
                        partition,
                        [account_id, source, entity, entry[0], entry[1]],
                    ]
            if before is not None:
                for entity in before:
                    if entity not in entities:  # pruned (retention)
                        _delete(table, health_row_key(account_id, source, entity))
        for source, before in old_entries.items():
            if source not in new.entries:
                for entity in before:
                    _delete(table, health_row_key(account_id, source, entity))

    def _rebuild_steps(self, partitions: set[int], generation: int) -> Iterator[None]:
        t0 = time.perf_counter()
        health = self._health
        states: dict[str, Any] = {}
        legacy: set[str] = set()
        rows = 0
        for i, stored in enumerate(list(self.table.data.values()), 1):
            if i % REBUILD_CHUNK == 0:
                yield
            if stored is None or stored[0] not in partitions:
                continue
            value = stored[1]
            if isinstance(value, dict):  # earlier layout: the whole account in one row
                whole = health.HealthState.from_dict(value)
                legacy.add(whole.account_id)
                state = states.setdefault(whole.account_id, health.HealthState(whole.account_id))
                for source, entities in whole.entries.items():
                    for entity, entry in entities.items():
                        _merge_entry(state, source, entity, entry)
                continue
            account_id, source, entity, ts, signal = value
            rows += 1
            state = states.get(account_id)
            if state is None:
                state = states[account_id] = health.HealthState(account_id)
            _merge_entry(state, source, entity, [ts, None if signal is None else dict(signal)])
        for i, state in enumerate(states.values(), 1):
            if i % REBUILD_CHUNK == 0:
                yield
            # hw = newest entry (the newest applied signal is never pruned); pruning again makes
            # the state exact even if a crash kept a row whose deletion was not sent.
            state.hw = max((e[0] for d in state.entries.values() for e in d.values()), default=None)
            if state.hw is not None:
                state.entries = health._prune(state.entries, state.hw, self.cfg)
        index = health.HealthIndex(self.cfg)
        index.rebuild(states.values())
        # Score every account now, in chunks: the first scrape then re-scores only what changed
        # (scores are kept until their next window edge), instead of all accounts at once.
        for i, account_id in enumerate(list(index.states), 1):
            if i % REBUILD_CHUNK == 0:
                yield
            try:
                index.score(account_id, time.time())
            except Exception:  # noqa: BLE001 - only a warm-up: such an account is scored at scrape time
                log.debug("health: no score for an account at rebuild", exc_info=True)
        if not self._current(generation):
            return  # a newer rebalance started: its own rebuild follows
        self.index, self._legacy = index, legacy
        self.ready = True
        log.info(
            "health: rebuilt %d accounts from %d entity rows (+%d whole-account rows) in %.3fs",
            len(states),
            rows,
            len(legacy),
            time.perf_counter() - t0,
        )

    def collect(self, now: float | None = None) -> Iterable[Metric]:
        return self.index.collect(time.time() if now is None else now)


def health_row_key(account_id: str, source: str, entity: str) -> str:
    """Table key of one entity's signal (JSON: unambiguous whatever the ids contain)."""
    return json.dumps([account_id, source, entity], separators=(",", ":"))


def _delete(table: Any, key: str) -> None:
    if table.get(key) is not None:
        del table[key]


def _merge_entry(state: Any, source: str, entity: str, entry: list) -> None:
    """Keep the newer of two stored entries of one entity (a deletion wins a tie, as in
    apply_signal)."""
    entities = state.entries.setdefault(source, {})
    cur = entities.get(entity)
    if cur is None or entry[0] > cur[0] or (entry[0] == cur[0] and entry[1] is None):
        entities[entity] = entry
