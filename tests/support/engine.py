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

from stream_app.engine.family import Engine, Family, SignalChange


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


def subject_of(event: Any) -> str:
    """The Kafka key of an event: its subject (decoded events have one; a test's stand-in may
    name its entity in ``data`` only)."""
    subject = getattr(event, "subject", None)
    if subject is not None:
        return subject
    data = event.data
    for name in ("ticket_id", "user_id", "account_id", "response_id"):
        if isinstance(data, dict) and data.get(name):
            return str(data[name])
    raise ValueError(f"no subject for {event!r}")


class EngineRunner:
    """One family's engine over a :class:`DictStates`, counting what the worker counts."""

    def __init__(
        self,
        family: Family,
        *,
        partition_of: Callable[[str], int] = lambda key: 0,
        key_of: Callable[[Any], str] = subject_of,
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

    def state(self, key: str) -> Any:
        return self.states.get(key)

    def rebuilt(self, partitions: Container[int] | None = None) -> Engine:
        """A fresh engine rebuilt from the stored states (of ``partitions``, default all), as a
        worker rebuilds after an assignment."""
        engine = Engine(self.family, self.states)
        parts = {p for p, _ in self.states.data.values()} if partitions is None else set(partitions)
        engine.rebuild(parts)
        return engine

    def samples(self, now: float, index: Any = None) -> dict[tuple, float]:
        """{(sample name, sorted labels): value} of the index read at ``now``."""
        index = self.index if index is None else index
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in index.collect(now) for s in m.samples}
