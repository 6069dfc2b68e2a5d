"""The shared half of every family index: aggregates derived from entity states.

A family index keeps its aggregates (window stores, gauges) and knows how to
apply one contribution (``_apply``) and how to empty itself (``_reset``). This
base turns that into the engine pattern: apply only the difference between an
entity's old and new contributions, and rebuild from states after a rebalance.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any


class ContributionIndex:
    dropped: int  # contributions refused because their bucket was already evicted (too late)

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self._reset()

    def _apply(self, contribution: Hashable, k: int) -> int:
        """Add ``k`` times (negative: retract) one contribution; return how many were dropped."""
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError

    def _contributions(self, state: Any) -> Iterable[Hashable]:
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

    def rebuild(self, states: Iterable[Any]) -> float | None:
        """Reset and add every state's contributions (partition assignment, restart).
        Returns the latest event time seen in the states (to seed watermarks)."""
        self._reset()
        high = None
        for s in states:
            self.update((), self._contributions(s))
            m = s.max_ts()
            if m is not None and (high is None or m > high):
                high = m
        return high
