"""The shared half of every family index: aggregates derived from entity states, and their
exposition cached until it can change.

A family index keeps its aggregates (window stores, gauges) and knows how to
apply one contribution (``_apply``) and how to empty itself (``_reset``). This
base turns that into the engine pattern: apply only the difference between an
entity's old and new contributions, and rebuild from states after a rebalance.

Reading (``collect(now)``) is cached: ``version`` counts every change of the aggregates
(``update``, ``evict``, ``rebuild``), and each index says until when what it read at ``now``
stays valid without a change (``_valid_until``: the next window bucket edge, the next instant a
running clock changes stage...). A read at a time in ``[computed at, valid until)`` with the
version unchanged returns the very families computed before; otherwise they are recomputed, and
a family whose samples came out equal keeps its previous object (an exposition that caches text
per family object then copies its bytes: ``stream_app.worker.exposition``). A read earlier than
the cached one recomputes (its windows and clocks are re-judged backwards).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from typing import Any, NamedTuple

from prometheus_client.core import Metric


class _Read(NamedTuple):
    version: int
    at: float  # read time the families were computed at
    until: float  # valid for reads in [at, until) while version is unchanged
    families: list[Metric]


def reuse_unchanged(previous: list[Metric], current: list[Metric]) -> list[Metric]:
    """``current`` with every family equal to its namesake in ``previous`` replaced by that
    earlier object (same name, type, help and samples)."""
    if not previous:
        return current
    before = {m.name: m for m in previous}
    out = []
    for m in current:
        old = before.get(m.name)
        if (
            old is not None
            and old.type == m.type
            and old.documentation == m.documentation
            and old.samples == m.samples
        ):
            out.append(old)
        else:
            out.append(m)
    return out


class ContributionIndex:
    dropped: int  # contributions refused because their bucket was already evicted (too late)

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.version = 0  # bumped by every change of the aggregates
        self._read: _Read | None = None
        self._reset()

    def _apply(self, contribution: Hashable, k: int) -> int:
        """Add ``k`` times (negative: retract) one contribution; return how many were dropped."""
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError

    def _contributions(self, state: Any) -> Iterable[Hashable]:
        raise NotImplementedError

    def _evict(self, cutoff_ts: float) -> int:
        """Drop window buckets before ``cutoff_ts``; return how many were dropped."""
        raise NotImplementedError

    def _collect(self, now: float) -> list[Metric]:
        """The metric families read at ``now`` (uncached)."""
        raise NotImplementedError

    def _valid_until(self, now: float) -> float:
        """After a ``_collect(now)``: the first instant from which a read may differ (no
        change in between)."""
        raise NotImplementedError

    def update(self, old: Iterable[Hashable], new: Iterable[Hashable]) -> int:
        """Replace one entity's old contributions by its new ones, applying only the
        difference. Returns how many new contributions were dropped as too late (also added
        to ``self.dropped``)."""
        if not isinstance(old, list | tuple):
            old = list(old)
        if not isinstance(new, list | tuple):
            new = list(new)
        # Contributions come in a stable order and an event changes few of them: pairs equal at
        # the same position cancel (removing and adding one contribution is no change), only
        # the rest is counted.
        n = min(len(old), len(new))
        i = 0
        while i < n and old[i] == new[i]:
            i += 1
        if i == len(old) == len(new):
            return 0
        self.version += 1
        oc: dict = {}
        nc: dict = {}
        for j in range(i, n):
            o, c = old[j], new[j]
            if o != c:
                oc[o] = oc.get(o, 0) + 1
                nc[c] = nc.get(c, 0) + 1
        for c in old[n:]:
            oc[c] = oc.get(c, 0) + 1
        for c in new[n:]:
            nc[c] = nc.get(c, 0) + 1
        for c, k in oc.items():
            d = k - nc.get(c, 0)
            if d > 0:
                self._apply(c, -d)
        dropped = 0
        for c, k in nc.items():
            d = k - oc.get(c, 0)
            if d > 0:
                dropped += self._apply(c, d)
        self.dropped += dropped
        return dropped

    def add(self, contribs: Iterable[Hashable]) -> int:
        """Add contributions (a new entity, or a rebuild). Returns the number dropped."""
        return self.update((), contribs)

    def retract(self, contribs: Iterable[Hashable]) -> None:
        self.update(contribs, ())

    def evict(self, cutoff_ts: float | None) -> int:
        """Drop window buckets before ``cutoff_ts`` (``WatermarkTracker.cutoff()``)."""
        if cutoff_ts is None:
            return 0
        n = self._evict(cutoff_ts)
        if n:
            self.version += 1
        return n

    def rebuild(self, states: Iterable[Any]) -> float | None:
        """Reset and add every state's contributions (partition assignment, restart).
        Returns the latest event time seen in the states (to seed watermarks)."""
        self._reset()
        self.version += 1
        high = None
        for s in states:
            self.update((), self._contributions(s))
            m = s.max_ts()
            if m is not None and (high is None or m > high):
                high = m
        return high

    # -- exposition -------------------------------------------------------
    def collect(self, now: float) -> list[Metric]:
        """Prometheus metric families read at wall-clock ``now`` (epoch seconds); the same
        objects as the previous read while nothing they show can have changed. Treat them as
        read-only."""
        r = self._read
        if r is not None and r.version == self.version and r.at <= now < r.until:
            return r.families
        families = self._collect(now)
        if r is not None:
            families = reuse_unchanged(r.families, families)
        self._read = _Read(self.version, now, self._valid_until(now), families)
        return families

    def _running_clocks(self) -> list:
        """The index's running clocks (``stream_app.engine.clocks.Clocks``), judged at reads."""
        return []

    def warm_steps(self, now: float, chunk: int = 2000) -> Iterator[None]:
        """Judge every running clock at ``now`` in chunks (yielding in between) and read once:
        after a rebuild, before the index is swapped in, so its first scrape costs what changed
        since ``now`` instead of O(clocks) at once. Nothing may update or read it meanwhile."""
        for clocks in self._running_clocks():
            yield from clocks.judge_steps(now, chunk)
        self.collect(now)
