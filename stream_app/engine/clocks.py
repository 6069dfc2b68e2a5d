"""Running clocks judged at the read time, kept up to date incrementally as that time moves on.

Some aggregates depend on the wall clock continuously, not only at window bucket edges: a
ticket's running SLA clock is at risk from one instant and breached after another, a session
without a logout is over once idle longer than the timeout. Judging every clock at every read
costs O(clocks) per scrape; :class:`Clocks` instead keeps each clock's *stage* at a read
position and moves it forward by the instants passed since the previous read (a heap), so a
read costs O(stage changes since the last read), and tells until when the stages stay as they
are (:meth:`Clocks.next_change`), which is what a cached exposition needs.

A clock is a hashable key (held ``n`` times, like a contribution) with a fixed ascending
sequence of instants from :meth:`Clocks.stages`; its stage at read time ``now`` is the number of
those instants ``<= now``. :meth:`Clocks.effect` adds (``n > 0``) or removes (``n < 0``) what a
key in a stage contributes to the owner's aggregates; moving a key from one stage to the next is
removing the first and adding the second. A comparison "``elapsed > limit``" is an instant just
after ``start + limit`` (:func:`after`).

The first read (and a read before the current position: ``/metrics?at=`` in the past) judges
every clock: exact, O(clocks); :meth:`Clocks.judge_steps` does that in chunks ahead of the first
read. Not thread-safe (use the event loop).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterator


def after(t: float) -> float:
    """The first float greater than ``t``: a stage entered when ``now > t`` (strictly) starts
    at ``after(t)``, so every stage starts at an instant and is judged with ``<=``."""
    return math.nextafter(t, math.inf)


class Clocks:
    """Clocks (key -> count) and their stages at a read position; subclasses define
    :meth:`stages` and :meth:`effect` and own the aggregates those effects maintain."""

    __slots__ = ("counts", "_heap", "_pos")

    def __init__(self) -> None:
        self.counts: dict[Hashable, int] = {}
        self._heap: list[tuple[float, Hashable]] = []  # next instant of each clock not done
        self._pos: float | None = None  # read position; None: never read, stages not tracked

    # -- subclass hooks -----------------------------------------------------
    def stages(self, key: Hashable) -> tuple[float, ...]:  # pragma: no cover
        raise NotImplementedError

    def effect(self, key: Hashable, stage: int, n: int) -> None:  # pragma: no cover
        raise NotImplementedError

    def reset_effects(self) -> None:  # pragma: no cover
        """Forget every effect (all clocks are re-judged after this)."""
        raise NotImplementedError

    # -- machinery ------------------------------------------------------------
    def _stage(self, key: Hashable, at: float) -> tuple[int, tuple[float, ...]]:
        st = self.stages(key)
        return bisect_right(st, at), st

    def add(self, key: Hashable, k: int) -> None:
        """Hold ``key`` ``k`` more times (negative: fewer)."""
        before = self.counts.get(key, 0)
        n = before + k
        if n:
            self.counts[key] = n
        else:
            self.counts.pop(key, None)
        pos = self._pos
        if pos is None:
            return  # judged at the first read
        s, st = self._stage(key, pos)
        self.effect(key, s, k)
        if before == 0 and s < len(st):
            heapq.heappush(self._heap, (st[s], key))

    def advance(self, now: float) -> None:
        """Move the read position to ``now``: every clock is in its stage at ``now``."""
        pos = self._pos
        if pos is None or now < pos:
            self._rejudge(now)
            return
        heap = self._heap
        counts = self.counts
        while heap and heap[0][0] <= now:
            t, key = heapq.heappop(heap)
            while heap and heap[0] == (t, key):  # the same clock pushed twice (gone and back)
                heapq.heappop(heap)
            n = counts.get(key)
            if not n:
                continue  # removed since it was scheduled
            st = self.stages(key)
            s, s1 = bisect_left(st, t), bisect_right(st, t)  # stage before and from t
            self.effect(key, s, -n)
            self.effect(key, s1, n)
            if s1 < len(st):
                heapq.heappush(heap, (st[s1], key))
        self._pos = now
        if len(heap) > 2 * len(counts) + 1024:
            self._compact()

    def _compact(self) -> None:
        """Rebuild the heap from the clocks held (entries of clocks changed or gone before their
        instant pile up: a session's clock changes with every event of its user)."""
        pos = self._pos
        heap = []
        for key in self.counts:
            st = self.stages(key)
            s = bisect_right(st, pos)
            if s < len(st):
                heap.append((st[s], key))
        heapq.heapify(heap)
        self._heap = heap

    def _rejudge(self, now: float) -> None:
        for _ in self.judge_steps(now, chunk=0):
            pass

    def judge_steps(self, now: float, chunk: int = 2000) -> Iterator[None]:
        """Judge every clock at ``now`` from scratch, yielding every ``chunk`` clocks (0: never),
        so a rebuilt index can be judged before its first read without blocking the event loop
        (nothing may add or read in between)."""
        self.reset_effects()
        heap = []
        for i, (key, n) in enumerate(self.counts.items(), 1):
            s, st = self._stage(key, now)
            self.effect(key, s, n)
            if s < len(st):
                heap.append((st[s], key))
            if chunk and i % chunk == 0:
                yield
        heapq.heapify(heap)
        self._heap = heap
        self._pos = now

    def next_change(self) -> float:
        """An instant up to which (exclusive) no stage changes without an :meth:`add`
        (conservative: a clock removed since it was scheduled may still bound it)."""
        return self._heap[0][0] if self._heap else math.inf

    def clear(self) -> None:
        self.counts.clear()
        self._heap = []
        self._pos = None
        self.reset_effects()

    def __len__(self) -> int:
        return len(self.counts)
