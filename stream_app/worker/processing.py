"""The engine step on the worker: each family's states by partition, signals to the health stage.

Per family a :class:`FamilyProcessor` holds the entity states of the partitions this worker owns
(``stream_app.store.partition_state``) and drives the engine step (``stream_app.engine.family``)
for every valid event, synchronously: no Kafka or Redis call per event. What the step changes
is written by the next checkpoint (``checkpoint``): the changed states, with the source offset
they reflect, in one atomic write per partition, after the health signals they caused were
produced. Signals wait in an :class:`Outbox` until then, coalesced per (account, source, entity).

The index is never stored: after every rebalance it is rebuilt from the states of the assigned
partitions (``assignment``), so it cannot drift from them and restarts do not change the numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import msgspec
from prometheus_client.core import GaugeMetricFamily, Metric

from ..engine.catalogue import HEALTH_TABLE
from ..engine.family import Engine, Family, SignalChange
from ..engine.health import HealthConfig, HealthStage
from ..store.partition_state import PartitionStates
from .exposition import PREFIX, PipelineMetrics

log = logging.getLogger(__name__)

_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.decode


class PartitionNotHeld(RuntimeError):
    """An event of a partition this worker does not hold reached a processor."""


class Outbox:
    """Health signals waiting for the next checkpoint, the latest per (account, source, entity).

    Coalescing keeps what the health stage would keep of the whole sequence (its rule in
    ``stream_app.engine.health.apply_signal``): a newer ``ts`` replaces, an older one is dropped,
    an equal one replaces unless the kept one is a deletion.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str, str], SignalChange] = {}

    def add(self, changes: Iterable[SignalChange]) -> None:
        pending = self.pending
        for change in changes:
            k = (change.account_id, change.source, change.entity)
            cur = pending.get(k)
            if (
                cur is None
                or cur.ts is None
                or (change.ts is not None and (change.ts > cur.ts or (change.ts == cur.ts and cur.signal is not None)))
            ):
                pending[k] = change

    def take(self) -> list[SignalChange]:
        out = list(self.pending.values())
        self.pending = {}
        return out

    def restore(self, changes: list[SignalChange]) -> None:
        """Sending failed: put them back under anything newer."""
        newer, self.pending = self.pending, {}
        self.add(changes)
        self.add(newer.values())

    def __len__(self) -> int:
        return len(self.pending)


class FamilyProcessor:
    """One family on this worker: the engine over its partition states, signals into the outbox."""

    def __init__(self, family: Family, *, topic: str, pipeline: PipelineMetrics, outbox: Outbox) -> None:
        self.family = family
        self.topic = topic
        self.table = family.table
        self.outbox = outbox
        from_stored, to_stored = family.from_stored, family.to_stored
        self.states = PartitionStates(
            family.table, lambda s: _encode(to_stored(s)), lambda raw: from_stored(_decode(raw))
        )
        self.engine = Engine(family, self.states)
        self.gate = self.engine.gate
        self._too_late = pipeline.too_late.labels(topic)
        self._duplicates = pipeline.duplicates.labels(topic)
        self.skipped = 0  # redelivered events at or below the partition's applied offset

    @property
    def ready(self) -> bool:
        return self.engine.ready

    @property
    def index(self) -> Any:
        return self.engine.index

    def process(self, event: Any, partition: int, offset: int) -> None:
        """One valid event at ``offset`` of ``partition`` of the family's topic."""
        states = self.states
        applied = states.offset(partition)
        if applied is not None and offset <= applied:
            self.skipped += 1  # already in the states (read again after a seek back)
            return
        if not states.holds(partition):
            raise PartitionNotHeld(f"{self.topic}[{partition}] is not held by this worker")
        step = self.engine.process(event.subject, event, partition)
        if step.too_late:
            self._too_late.inc()
        if not step.applied:
            self._duplicates.inc()
        if step.signals:
            self.outbox.add(step.signals)
        states.applied(partition, offset)

    def holds(self, partition: int) -> bool:
        return self.states.holds(partition)

    def collect(self, now: float) -> Iterable[Metric]:
        yield from self.engine.collect(now)
        name = self.family.name
        wm = GaugeMetricFamily(
            f"{PREFIX}_{name}_watermark_timestamp_seconds",
            f"Highest event time this worker's {name} index has seen.",
        )
        wm.add_metric([], self.engine.tracker.watermark() or 0.0)
        yield wm


class HealthProcessor:
    """The health stage on this worker: account rows by partition of the signals topic, one row
    per (account, source, entity) with the entity's latest signal or tombstone."""

    def __init__(self, config: HealthConfig, *, topic: str) -> None:
        self.topic = topic
        self.table = HEALTH_TABLE
        self.stage = HealthStage(config)
        self.gate = self.stage.gate
        self.states = PartitionStates(HEALTH_TABLE, _encode, _decode)
        self.skipped = 0

    @property
    def ready(self) -> bool:
        return self.stage.ready

    @property
    def index(self) -> Any:
        return self.stage.index

    def process(self, account_id: str, message: dict, partition: int, offset: int) -> None:
        states = self.states
        applied = states.offset(partition)
        if applied is not None and offset <= applied:
            self.skipped += 1
            return
        if not states.holds(partition):
            raise PartitionNotHeld(f"{self.topic}[{partition}] is not held by this worker")
        sets, deletes = self.stage.apply(account_id, message)
        for key, row in sets:
            states.put(key, partition, row)
        for key in deletes:
            states.delete(key, partition)
        states.applied(partition, offset)

    def holds(self, partition: int) -> bool:
        return self.states.holds(partition)

    def rows(self, partitions: set[int]) -> Iterable[tuple[str, list]]:
        return ((key, row) for key, _, row in self.states.items(partitions))

    def collect(self, now: float) -> Iterable[Metric]:
        return self.stage.index.collect(now)
