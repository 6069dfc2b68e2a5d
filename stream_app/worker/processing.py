"""Table I/O around the engine step: entity states in Faust tables, signals to the health stage.

Per family one Faust table holds the entity states (ticket, user, account, survey response),
keyed like the Kafka message. For each valid event the engine step (``stream_app.engine.family``)
applies it to its entity's state and moves the derived index; this shell writes the new state to
the table (one changelog record) and sends the health signals the step returned. The index is
never stored: after every rebalance it is rebuilt from the recovered states of the assigned
partitions, so it cannot drift from them and restarts do not change the numbers.

Table values are ``[partition, stored state]``: the partition is kept with the state so the
rebuild works on any store (Faust's memory store keeps revoked partitions' keys around).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Container, Iterable, Iterator
from typing import Any

import faust
from prometheus_client.core import GaugeMetricFamily, Metric

from ..engine.catalogue import HEALTH_TABLE
from ..engine.family import Engine, Family, SignalChange
from ..engine.health import HealthConfig, HealthStage
from .exposition import PREFIX, PipelineMetrics

log = logging.getLogger(__name__)


class EntityTable(faust.Table):
    """A Faust table that tells its processor when partitions move."""

    processor: Any = None  # FamilyProcessor | HealthProcessor

    async def on_rebalance(self, assigned, revoked, newly_assigned, generation_id: int = 0) -> None:
        if self.processor is not None:
            self.processor.gate.begin_rebalance()
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def on_recovery_completed(self, active_tps, standby_tps) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        if self.processor is not None:
            await self.processor.rebuild_async({tp.partition for tp in active_tps})


def _entity_table(app: faust.App, name: str, *, partitions: int, store: str, help: str) -> EntityTable:
    table = EntityTable(
        app, name=name, default=None, beacon=app.tables.beacon, partitions=partitions, store=store, help=help
    )
    app.tables.add(table)
    return table


_rebuilds_running = 0
_collector_was_enabled = True


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while rebuilds run, then freeze what they built.

    A rebuild allocates about as many objects as the state holds; that triggers full collections,
    and one full collection of ~10M objects (1M entities) took ~10 s: the event loop blocked that
    long loses the worker its group membership. The rebuilt state is long-lived, so
    ``gc.freeze()`` moves it out of later collections (reference counting still frees whatever
    is replaced or deleted). Tables rebuild concurrently: the last one to finish resumes the
    collector.
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


async def _run_steps(steps: Iterator[None]) -> None:
    """Run a rebuild's steps, giving the event loop a turn between chunks (Source partitions
    stay paused until every table's recovery callback is done, so no event is processed
    meanwhile)."""
    with _collector_paused():
        for _ in steps:
            await asyncio.sleep(0)


class TableStates:
    """One family's states in its Faust table (the engine's StateStore)."""

    def __init__(self, table: faust.Table, family: Family) -> None:
        self.table = table
        self.family = family

    def get(self, key: str) -> Any:
        stored = self.table.get(key)
        return None if stored is None else self.family.from_stored(stored[1])

    def put(self, key: str, partition: int, state: Any) -> None:
        self.table[key] = [partition, self.family.to_stored(state)]

    def delete(self, key: str, partition: int) -> None:
        del self.table[key]

    def items(self, partitions: Container[int]) -> Iterator[tuple[str, int, Any]]:
        from_stored = self.family.from_stored
        for key, stored in list(self.table.data.items()):
            if stored is not None and stored[0] in partitions:
                yield key, stored[0], from_stored(stored[1])


class FamilyProcessor:
    """One family on this worker: the engine over its table, signals out to the health stage."""

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
    ) -> None:
        self.family = family
        self.signals = signals
        self.topic = topic
        self.table = _entity_table(
            app, family.table, partitions=partitions, store=store, help=f"{family.name} entity states"
        )
        self.table.processor = self
        self.engine = Engine(family, TableStates(self.table, family))
        self.gate = self.engine.gate
        self._too_late = pipeline.too_late.labels(topic)
        self._duplicates = pipeline.duplicates.labels(topic)
        self.last_rebuild_seconds = 0.0

    @property
    def ready(self) -> bool:
        return self.engine.ready

    @property
    def index(self) -> Any:
        return self.engine.index

    async def handle(self, event: Any, partition: int) -> None:
        """One valid event (inside the agent's stream: table writes go to the event's partition)."""
        step = self.engine.process(event.subject, event, partition)
        if step.too_late:
            self._too_late.inc()
        if not step.applied:
            self._duplicates.inc()
        if self.signals is not None:
            for change in step.signals:
                await self._send_signal(change)

    async def _send_signal(self, change: SignalChange) -> None:
        await self.signals.send(key=change.account_id.encode(), value=change.message())

    def rebuild(self, partitions: set[int]) -> None:
        """Rebuild at once (tests, tools)."""
        self.engine.rebuild(partitions)

    async def rebuild_async(self, partitions: set[int]) -> None:
        t0 = time.perf_counter()
        await _run_steps(self.engine.rebuild_steps(partitions))
        if self.engine.ready:
            self.last_rebuild_seconds = time.perf_counter() - t0
            log.info(
                "%s: rebuilt index from %d states of partitions %s in %.3fs",
                self.family.name,
                self.engine.last_rebuild_states,
                sorted(partitions),
                self.last_rebuild_seconds,
            )

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
    """The health stage on this worker, its account rows in a Faust table.

    The table holds one row per (account, source, entity): the entity's latest signal (or
    tombstone), value ``[partition, row]``. A signal changes one entity, so it writes one small
    changelog record instead of the whole account.
    """

    def __init__(self, app: faust.App, *, partitions: int, store: str, config: HealthConfig) -> None:
        self.table = _entity_table(
            app,
            HEALTH_TABLE,
            partitions=partitions,
            store=store,
            help="customer health: latest signal per account and entity",
        )
        self.table.processor = self
        self.stage = HealthStage(config)
        self.gate = self.stage.gate

    @property
    def ready(self) -> bool:
        return self.stage.ready

    @property
    def index(self) -> Any:
        return self.stage.index

    async def handle(self, account_id: str, message: dict, partition: int) -> None:
        sets, deletes = self.stage.apply(account_id, message)
        table = self.table
        for key, row in sets:
            table[key] = [partition, row]
        for key in deletes:
            if table.get(key) is not None:
                del table[key]

    def _rows(self, partitions: Container[int]) -> Iterator[list]:
        for stored in list(self.table.data.values()):
            if stored is not None and stored[0] in partitions:
                yield stored[1]

    def rebuild(self, partitions: set[int]) -> None:
        """Rebuild at once (tests, tools)."""
        self.stage.rebuild(self._rows(partitions), time.time())

    async def rebuild_async(self, partitions: set[int]) -> None:
        t0 = time.perf_counter()
        await _run_steps(self.stage.rebuild_steps(self._rows(partitions), time.time()))
        if self.stage.ready:
            log.info(
                "health: rebuilt %d accounts of partitions %s in %.3fs",
                self.stage.last_rebuild_accounts,
                sorted(partitions),
                time.perf_counter() - t0,
            )

    def collect(self, now: float) -> Iterable[Metric]:
        return self.stage.index.collect(now)
