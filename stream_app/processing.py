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

import heapq
import logging
import time
from collections.abc import Callable, Iterable
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
            self.processor.rebuild({tp.partition for tp in active_tps})


class FamilyProcessor:
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
        self.ready = False
        self.last_rebuild_seconds = 0.0
        self.evicted_entities = 0

    # --- per event (inside the agent's stream: table writes go to the event's partition)

    async def handle(self, event: Any, partition: int) -> None:
        fam = self.family
        if self.tracker.observe(partition, event.ts):
            self.pipeline.too_late.labels(self.topic).inc()
        key = event.subject
        stored = self.table.get(key)
        old = fam.from_dict(stored[1]) if stored is not None else None
        new, applied = fam.apply(old, event)
        if not applied:
            self.pipeline.duplicates.labels(self.topic).inc()
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

    def _schedule_expiry(self, partition: int, key: str, state: Any) -> None:
        if self.family.retention_until is None:
            return
        until = self.family.retention_until(state, self.cfg)
        if until is not None:
            heapq.heappush(self._expiry.setdefault(partition, []), (until, key))

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

    def on_rebalance_started(self) -> None:
        self.ready = False

    def rebuild(self, partitions: set[int]) -> None:
        """Rebuild the index from the recovered states of the assigned partitions."""
        t0 = time.perf_counter()
        fam, cfg = self.family, self.cfg
        self.index = fam.make_index(cfg)
        self.tracker = WatermarkTracker(cfg.horizon, cfg.bucket_seconds)
        self._expiry = {}
        states = []
        for key, stored in list(self.table.data.items()):
            if stored is None or stored[0] not in partitions:
                continue
            partition, state = stored[0], fam.from_dict(stored[1])
            states.append(state)
            ts = state.max_ts()
            if ts is not None:
                self.tracker.observe(partition, ts)
            self._schedule_expiry(partition, key, state)
        # Seed the watermark first so rebuild evicts exactly what processing would have.
        self.index.rebuild(states)
        self.index.evict(self.tracker.cutoff())
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


class HealthProcessor:
    """Per-account health state from the signals topic; scores are computed when read."""

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
            help="customer health per account",
        )
        app.tables.add(self.table)
        self.table.processor = self
        self.index = health.HealthIndex(config)
        self.ready = False

    async def handle(self, account_id: str, message: dict, partition: int) -> None:
        state, changed = self.index.apply(message, account_id=account_id)
        # States are kept even when no entity is live: their tombstones stop a
        # replayed older signal from bringing an entity back (the core's
        # retention bounds them).
        if changed and state is not None:
            self.table[account_id] = [partition, state.to_dict()]

    def on_rebalance_started(self) -> None:
        self.ready = False

    def rebuild(self, partitions: set[int]) -> None:
        t0 = time.perf_counter()
        states = [
            self._health.HealthState.from_dict(stored[1])
            for stored in list(self.table.data.values())
            if stored is not None and stored[0] in partitions
        ]
        self.index = self._health.HealthIndex(self.cfg)
        self.index.rebuild(states)
        self.ready = True
        log.info("health: rebuilt %d accounts in %.3fs", len(states), time.perf_counter() - t0)

    def collect(self, now: float | None = None) -> Iterable[Metric]:
        return self.index.collect(time.time() if now is None else now)
