"""The one interface every metric family implements, and the engine step that drives it.

A family (support, usage, revenue, voice) turns the events of one contract family into
per-entity *facts* (a ticket, a user, an account, a survey response) and derives everything
it publishes from those facts:

* :meth:`Family.apply` records one event in its entity's state (pure; a redelivered event
  changes nothing);
* :meth:`Family.contributions` lists what one state adds to the aggregates; the family's
  index (:class:`~stream_app.engine.index.ContributionIndex`) holds their sums and renders
  them at scrape time;
* :meth:`Family.account_signal` is what the entity tells customer health about its account;
* :meth:`Family.retention_until` says when the entity stops affecting every metric.

:class:`Engine` is the per-event step on that interface (apply, move the index by the
difference of the old and new contributions, watermark, expiry, health signals) and the rebuild
of the index from stored states after partitions move. The worker drives it over its tables
(``stream_app.worker.processing``); the tests drive the very same step over a dict
(``tests/support/engine.py``). No I/O here: where states live is the caller's
:class:`StateStore`, and signals are returned, not sent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Container, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

from prometheus_client.core import Metric

from .health import Signal, coarsen_signal, same_signal
from .expiry import Expiry
from .index import ContributionIndex
from . import rebuild as rebuilds
from .rebuild import RebuildGate

# Entities whose derived facts are remembered between events (see Engine._memo).
MEMO_SIZE = 50_000
from .windows import WatermarkTracker

S = TypeVar("S")  # an entity state (TicketState, UserState, AccountState, ResponseState)
C = TypeVar("C")  # the family's config

class Event(Protocol):
    """What the families read of a decoded event (``stream_app.events`` models, or a test's
    stand-in)."""

    id: str
    type: str
    ts: float
    data: Any


class Family(ABC, Generic[S, C]):
    """One metric family: its names, its config, and the pure functions of its entity state."""

    name: ClassVar[str]  # metric family, e.g. "support" (also the health signal source)
    event_family: ClassVar[str]  # event contract family it consumes, e.g. "ticket"
    table: ClassVar[str]  # name of the table holding its entity states, e.g. "tickets"

    def __init__(self, config: C) -> None:
        self.config = config

    @abstractmethod
    def from_stored(self, stored: Mapping) -> S:
        """A state from its stored (JSON-shaped) form."""

    @abstractmethod
    def to_stored(self, state: S) -> dict:
        """The stored (JSON-shaped) form of a state."""

    @abstractmethod
    def apply(self, state: S | None, event: Event) -> tuple[S, bool]:
        """Record ``event`` in its entity's state. Pure (``state`` is not mutated). Returns the
        new state and whether anything changed (False: a redelivery, or a fact already known)."""

    @abstractmethod
    def contributions(self, state: S) -> Sequence[Hashable]:
        """Everything this state adds to the family's aggregates, in a stable order."""

    @abstractmethod
    def new_index(self) -> ContributionIndex:
        """An empty index for this family's aggregates."""

    @abstractmethod
    def max_ts(self, state: S) -> float | None:
        """Newest event time recorded in the state (seeds watermarks after a rebuild)."""

    def account_signal(self, state: S) -> Signal | None:
        """What the entity tells customer health about its account, or None (no account, or
        the family feeds no health component). A pure function of the state."""
        return None

    def retention_until(self, state: S) -> float | None:
        """Event time after which the entity affects no metric and may be deleted (once the
        watermark cutoff passes it), or None to keep it."""
        return None


class StateStore(Protocol[S]):
    """Where the caller keeps one family's entity states, by key and partition."""

    def get(self, key: str, partition: int) -> S | None: ...

    def put(self, key: str, partition: int, state: S) -> None: ...

    def delete(self, key: str, partition: int) -> None: ...

    def items(self, partitions: Container[int]) -> Iterable[tuple[str, int, S]]:
        """(key, partition, state) of every stored state of ``partitions``; may be lazy."""
        ...


class SignalChange(NamedTuple):
    """One message for the health stage: ``signal`` None = the entity no longer counts for
    ``account_id``. Keyed by account on the signals topic."""

    account_id: str
    source: str
    entity: str
    ts: float | None
    signal: Signal | None

    def message(self) -> dict:
        return {"source": self.source, "entity": self.entity, "ts": self.ts, "signal": self.signal}


class Step(NamedTuple):
    """What processing one event did."""

    applied: bool  # False: the event changed no state (a duplicate)
    too_late: bool  # older than the eviction cutoff: state updated, windows no longer hold it
    signals: list[SignalChange]  # for the health stage, in order
    evicted: int  # entities deleted by expiry during this step


class Engine(Generic[S]):
    """One family's engine on one worker: the derived index, the watermark and entity expiry
    over the caller's :class:`StateStore`.

    The index is never stored: after partitions move it is rebuilt from the states of the
    assigned partitions (:meth:`rebuild_steps`), so it cannot drift from them.
    """

    def __init__(self, family: Family[S, Any], states: StateStore[S], *, expiry_budget: int = 8) -> None:
        self.family = family
        self.states = states
        self.expiry_budget = expiry_budget
        cfg = family.config
        self.index = family.new_index()
        self.tracker = WatermarkTracker(cfg.horizon, cfg.bucket_seconds)
        self._expiry = Expiry(cfg.bucket_seconds)
        self.evicted_entities = 0
        self.last_rebuild_states = 0
        self.gate = RebuildGate()
        # key -> (state, its contributions, its coarsened signal), for the state last stored under
        # the key: the next event of the same entity then derives only its new state's. Valid
        # while the store hands back that very object; bounded (cleared when full).
        self._memo: dict[str, tuple[Any, Sequence[Hashable], Signal | None]] = {}

    # --- per event ------------------------------------------------------------

    def process(self, key: str, event: Event, partition: int) -> Step:
        """Apply one event of entity ``key`` from ``partition``."""
        fam = self.family
        too_late = self.tracker.observe(partition, event.ts)
        old = self.states.get(key, partition)
        new, applied = fam.apply(old, event)
        old_contribs, old_signal = self._derived(key, old)
        if not applied:
            # A redelivery may follow a crash that lost the signal sent the first time;
            # signals are absolute, so sending it again is harmless.
            return Step(False, too_late, self._signal_changes(key, old, old_signal, old_signal, force=True), 0)
        new_contribs = fam.contributions(new)
        new_signal = coarsen_signal(fam.name, fam.account_signal(new))
        self.index.update(old_contribs, new_contribs)
        self.states.put(key, partition, new)
        memo = self._memo
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[key] = (new, new_contribs, new_signal)
        signals = self._signal_changes(key, new, old_signal, new_signal)
        self._expiry.schedule(partition, key, fam.retention_until(new))
        cutoff = self.tracker.cutoff()
        self.index.evict(cutoff)
        evicted = self._expire(partition, cutoff, signals) if cutoff is not None else 0
        return Step(True, too_late, signals, evicted)

    def _derived(self, key: str, state: S | None) -> tuple[Sequence[Hashable], Signal | None]:
        """Contributions and coarsened signal of the state stored under ``key``."""
        if state is None:
            return (), None
        memo = self._memo.get(key)
        if memo is not None and memo[0] is state:
            return memo[1], memo[2]
        fam = self.family
        return fam.contributions(state), coarsen_signal(fam.name, fam.account_signal(state))

    def _signal_changes(
        self, key: str, latest: S, before: Signal | None, after: Signal | None, *, force: bool = False
    ) -> list[SignalChange]:
        """Tell customer health what this entity now says about its account (``latest``: the
        entity's state now, or its last state when it is deleted)."""
        if not force and same_signal(before, after):
            return []
        source = self.family.name
        ts = self.family.max_ts(latest)
        out = []
        if before is not None and (after is None or before["account_id"] != after["account_id"]):
            out.append(SignalChange(before["account_id"], source, key, ts, None))
        if after is not None:
            out.append(SignalChange(after["account_id"], source, key, ts, after))
        return out

    def _expire(self, partition: int, cutoff: float, signals: list[SignalChange]) -> int:
        """Delete entities of this partition that no longer affect any metric.

        Only the current event's partition (the one whose offset the step moves), and a small
        budget per event, which keeps the step flat.
        """
        evicted = 0
        fam = self.family
        for key in self._expiry.due(partition, cutoff, self.expiry_budget):
            state = self.states.get(key, partition)
            if state is None:
                continue
            until = fam.retention_until(state)
            if until is None or until >= cutoff:
                self._expiry.schedule(partition, key, until)  # not due after all
                continue
            contribs, signal = self._derived(key, state)
            self.index.retract(contribs)
            self.states.delete(key, partition)
            self._memo.pop(key, None)
            signals.extend(self._signal_changes(key, state, signal, None))
            evicted += 1
        self.evicted_entities += evicted
        return evicted

    # --- partitions moved -----------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.gate.ready

    def rebuild(self, partitions: set[int]) -> None:
        """Rebuild at once (tests, tools)."""
        for _ in self.rebuild_steps(partitions):
            pass

    def rebuild_steps(self, partitions: set[int]) -> Iterator[None]:
        """Rebuild the index, watermarks and expiry from the stored states of ``partitions``,
        yielding every ``rebuilds.REBUILD_CHUNK`` states. The new index replaces the old one only at
        the end (a scrape meanwhile reads the previous one); a rebuild overtaken by
        ``gate.begin_rebalance()`` or a newer rebuild is dropped."""
        token = self.gate.start()
        chunk = rebuilds.REBUILD_CHUNK
        fam = self.family
        cfg = fam.config
        index = fam.new_index()
        tracker = WatermarkTracker(cfg.horizon, cfg.bucket_seconds)
        expiry = Expiry(cfg.bucket_seconds)
        states = []
        for i, (key, partition, state) in enumerate(self.states.items(partitions), 1):
            states.append(state)
            ts = fam.max_ts(state)
            if ts is not None:
                tracker.observe(partition, ts)
            expiry.schedule(partition, key, fam.retention_until(state))
            if i % chunk == 0:
                yield
        for i, state in enumerate(states, 1):
            index.update((), fam.contributions(state))
            if i % chunk == 0:
                yield
        # The high watermark never goes back, even when the partition holding the newest event
        # moved away (docs/metrics.md); it is seeded first, so the rebuild evicts exactly what
        # processing would have.
        tracker.keep_high(self.tracker)
        index.evict(tracker.cutoff())
        if not self.gate.finish(token):
            return  # a newer rebalance started: its own rebuild follows
        self.index, self.tracker, self._expiry = index, tracker, expiry
        self._memo = {}
        self.last_rebuild_states = len(states)

    # --- reading --------------------------------------------------------------

    def collect(self, now: float) -> Iterable[Metric]:
        return self.index.collect(now)
