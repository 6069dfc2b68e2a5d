"""The real engine step (``stream_app.engine.family.Engine``) over states kept in a dict: what a
worker does per event, minus Kafka and its tables. Tests drive families through this runner,
never through a copy of the step.

Every stored state goes through a JSON round trip of its stored form, as a table (changelog or
Redis) gives it back on recovery.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any

from stream_app.config import Settings
from stream_app.engine.family import Engine, Family, SignalChange
from stream_app.events import decode_event
from stream_app.worker.families import build_families

from .events import NOW
from .samples import Samples, samples


class DictStates:
    """The engine's StateStore in a dict: key -> (partition, state)."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.data: dict[str, tuple[int, Any]] = {}

    def get(self, key: str, partition: int = 0) -> Any:
        stored = self.data.get(key)
        return None if stored is None else stored[1]

    def put(self, key: str, partition: int, state: Any) -> None:
        fam = self.family
        self.data[key] = (partition, fam.from_stored(json.loads(json.dumps(fam.to_stored(state)))))

    def delete(self, key: str, partition: int) -> None:
        self.data.pop(key, None)

    def items(self, partitions: Container[int]) -> Iterator[tuple[str, int, Any]]:
        for key, (partition, state) in list(self.data.items()):
            if partition in partitions:
                yield key, partition, state


class EngineRunner:
    """One family's engine over a :class:`DictStates`, counting what the worker counts. Events are
    keyed by their subject (the Kafka key); all on partition 0 unless ``partition_of`` says."""

    def __init__(
        self,
        family: Family,
        *,
        partition_of: Callable[[str], int] = lambda key: 0,
        key_of: Callable[[Any], str] = lambda event: event.subject,
    ) -> None:
        self.family = family
        self.states = DictStates(family)
        self.engine = Engine(family, self.states)
        self.partition_of = partition_of
        self.key_of = key_of
        self.duplicates = 0
        self.too_late = 0
        self.signals: list[SignalChange] = []

    @property
    def index(self) -> Any:
        return self.engine.index

    @property
    def cfg(self) -> Any:
        return self.family.config

    @property
    def entities(self) -> dict[str, Any]:
        """key -> state of every entity kept (expired ones are deleted)."""
        return {key: state for key, (_, state) in self.states.data.items()}

    def stored(self) -> dict[str, dict]:
        """key -> stored form: what two runs are compared by."""
        return {key: self.family.to_stored(state) for key, state in self.entities.items()}

    def process(self, event: Any) -> bool:
        """One event; returns whether it changed its entity's state."""
        key = self.key_of(event)
        step = self.engine.process(key, event, self.partition_of(key))
        self.too_late += step.too_late
        self.duplicates += not step.applied
        self.signals.extend(step.signals)
        return step.applied

    def feed(self, events: Iterable[Any]) -> EngineRunner:
        for event in events:
            self.process(event)
        return self

    def rebuilt(self, partitions: Container[int] | None = None) -> Engine:
        """A fresh engine rebuilt from the stored states (of ``partitions``, default all), as a
        worker rebuilds after an assignment."""
        engine = Engine(self.family, self.states)
        parts = {p for p, _ in self.states.data.values()} if partitions is None else set(partitions)
        engine.rebuild(parts)
        return engine

    def samples(self, now: float, *, zeros: bool = False) -> Samples:
        return samples(self.index, now, zeros=zeros)


class Pipeline:
    """decode -> each family's engine runner: the worker's hot path without Kafka (states
    round-tripped through their stored form, as a table keeps them), for property tests."""

    def __init__(self, settings: Settings | None = None, now: float | None = None) -> None:
        self.now = NOW if now is None else now
        self.families = {f.event_family: EngineRunner(f) for f in build_families(settings or Settings())}

    @property
    def states(self) -> dict[tuple[str, str], object]:
        return {(family, key): state for family, run in self.families.items() for key, state in run.entities.items()}

    def ingest(self, raw: bytes, family: str) -> str:
        """'applied' or 'duplicate'; raises EventRejected."""
        ev = decode_event(raw, expected_family=family, now=self.now)
        return "applied" if self.families[family].process(ev) else "duplicate"

    def samples(self, family: str) -> Samples:
        """Every series of the family's index (zeros too) at ``now``."""
        return self.families[family].samples(self.now, zeros=True)

    def rebuilt(self, family: str) -> Samples:
        """The same, read from an index rebuilt from the family's states."""
        return samples(self.families[family].rebuilt().index, self.now, zeros=True)
