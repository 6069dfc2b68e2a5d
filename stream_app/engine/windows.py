"""Event-time rolling windows: the generic, pure primitives every metric family uses.

Time is cut into buckets of ``g`` seconds (default 60). Bucket ``i`` covers event times
``[i*g, (i+1)*g)``; ``bucket_index(ts, g) == floor(ts / g)``.

Window semantics (exact, shared by every family and by the reference implementations):
a window of ``W`` seconds read at ``now`` is the sum over the ``W/g`` buckets whose index lies in
``(bucket_index(now) - W/g, bucket_index(now)]``, i.e. whose *start* lies in
``[bucket_start(now) - W + g, bucket_start(now)]``. The current, partial bucket is included, so a
window covers between ``W - g`` and ``W`` seconds of history. Contributions with an event time in a
later bucket than ``now`` (clock skew) are not counted until ``now`` reaches their bucket.
``W`` must be a positive multiple of ``g``.

A late event belongs to the bucket of its own event time. Buckets are kept until the eviction
cutoff passes them (see :class:`WatermarkTracker`): ``cutoff = bucket_start(high_watermark -
max_window - grace)``. An event with ``ts < cutoff`` is *too late*: its bucket is gone, so its window
contributions are dropped; ``add``/``observe`` return ``False`` and the caller must count it. Its
entity state is still updated by the caller (state-derived gauges stay exact).

Reads are incremental: each store keeps running totals per window, advanced bucket by bucket when
``now`` moves forward, so a read costs O(buckets passed + labelsets changed), not O(window).
Retractions are additions with a negative sign; a cell whose count reaches zero is deleted, so an
index that retracts everything it added is empty again (no float residue, no memory growth).

Not thread-safe: call everything from one thread (the Faust event loop).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable, Iterable, Mapping

from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]

DEFAULT_BUCKET_SECONDS = 60


def bucket_index(ts: float, g: int = DEFAULT_BUCKET_SECONDS) -> int:
    """Index of the bucket holding event time ``ts`` (floor division, also for negatives)."""
    return int(ts // g)


def bucket_start(ts: float, g: int = DEFAULT_BUCKET_SECONDS) -> int:
    """Start (epoch seconds) of the bucket holding ``ts``."""
    return int(ts // g) * g


def window_label(seconds: int) -> str:
    """Compact label value for a window length: 300 -> '5m', 3600 -> '1h', 86400 -> '24h',
    604800 -> '7d' (whole days beyond one day read as days; one day stays '24h')."""
    if seconds % 86400 == 0 and seconds > 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def check_windows(windows: Iterable[int], g: int) -> tuple[int, ...]:
    if int(g) != g or g <= 0:
        raise ValueError(f"bucket width must be a positive integer, got {g!r}")
    ws = tuple(sorted({int(w) for w in windows}))
    if not ws:
        raise ValueError("at least one window is required")
    for w in ws:
        if w <= 0 or w % g:
            raise ValueError(f"window {w}s must be a positive multiple of the bucket width {g}s")
    return ws


class _Rolling:
    """Bucketed cells keyed by labels, with running per-window totals.

    Subclasses define the cell type through ``_merge`` (add a whole cell with a sign).
    """

    __slots__ = ("g", "windows", "_n", "_buckets", "_pos", "_totals", "_cutoff")

    def __init__(self, windows: Iterable[int], bucket_seconds: int = DEFAULT_BUCKET_SECONDS):
        self.g = int(bucket_seconds)
        self.windows = check_windows(windows, self.g)
        self._n = {w: w // self.g for w in self.windows}  # window -> number of buckets
        self._buckets: dict[int, dict] = {}  # bucket index -> {labels: cell}
        self._pos: int | None = None  # bucket index the running totals are positioned at
        self._totals: dict[int, dict] = {w: {} for w in self.windows}
        self._cutoff: int | None = None  # buckets with index < cutoff are evicted

    # -- subclass hooks ---------------------------------------------------
    def _merge(self, dst: dict, labels: Labels, cell, sign: int) -> None:  # pragma: no cover
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------
    def _bucket_for_write(self, ts: float) -> int | None:
        b = int(ts // self.g)
        if self._cutoff is not None and b < self._cutoff:
            return None
        return b

    def _windows_containing(self, b: int):
        """Totals dicts of the windows whose current range contains bucket ``b``."""
        pos = self._pos
        if pos is None or b > pos:
            return ()
        return [self._totals[w] for w, n in self._n.items() if b > pos - n]

    def _drop_empty_bucket(self, b: int, bucket: dict) -> None:
        if not bucket:
            del self._buckets[b]

    def is_evicted(self, ts: float) -> bool:
        """True if ``ts`` falls in an evicted bucket (a write there would be dropped)."""
        return self._cutoff is not None and int(ts // self.g) < self._cutoff

    @property
    def cutoff(self) -> int | None:
        """Start (epoch s) of the oldest bucket still kept, or None before any eviction."""
        return None if self._cutoff is None else self._cutoff * self.g

    def evict(self, before_ts: float) -> int:
        """Drop every bucket that starts before ``bucket_start(before_ts)``; monotone (a lower
        cutoff than the current one is ignored). Later writes into those buckets are refused.
        Returns the number of buckets removed."""
        cb = int(before_ts // self.g)
        if self._cutoff is not None and cb <= self._cutoff:
            return 0
        self._cutoff = cb
        old = [b for b in self._buckets if b < cb]
        for b in old:
            bucket = self._buckets.pop(b)
            for tot in self._windows_containing(b):
                for labels, cell in bucket.items():
                    self._merge(tot, labels, cell, -1)
        return len(old)

    def _advance(self, now: float) -> None:
        p = int(now // self.g)
        old = self._pos
        if old == p:
            return
        if old is None or p < old or p - old >= max(self._n.values()):
            self._recompute(p)
            return
        buckets = self._buckets
        for w, n in self._n.items():
            tot = self._totals[w]
            for b in range(old - n + 1, p - n + 1):  # buckets leaving the window
                bucket = buckets.get(b)
                if bucket:
                    for labels, cell in bucket.items():
                        self._merge(tot, labels, cell, -1)
            for b in range(old + 1, p + 1):  # buckets entering it
                bucket = buckets.get(b)
                if bucket:
                    for labels, cell in bucket.items():
                        self._merge(tot, labels, cell, +1)
        self._pos = p

    def _recompute(self, p: int) -> None:
        self._totals = {w: {} for w in self.windows}
        for b, bucket in self._buckets.items():
            if b > p:
                continue
            for w, n in self._n.items():
                if b > p - n:
                    tot = self._totals[w]
                    for labels, cell in bucket.items():
                        self._merge(tot, labels, cell, +1)
        self._pos = p

    def window(self, now: float, window: int) -> Mapping[Labels, object]:
        """Totals per labels of ``window`` read at ``now`` (a live view: do not mutate, copy if
        kept). Labelsets with nothing in the window are absent."""
        self._advance(now)
        return self._totals[window]

    def windows_at(self, now: float) -> Mapping[int, Mapping[Labels, object]]:
        """{window: {labels: total}} for every configured window, read at ``now`` (live views)."""
        self._advance(now)
        return self._totals

    def bucket_count(self) -> int:
        return len(self._buckets)

    def next_edge(self, now: float) -> int:
        """Start of the bucket after the one holding ``now``: every window read at any time in
        ``[bucket_start(now), next_edge(now))`` is the same (writes aside)."""
        return (int(now // self.g) + 1) * self.g

    def reset(self) -> None:
        """Empty, keeping the eviction cutoff (writes before it are still refused)."""
        self._buckets.clear()
        self._totals = {w: {} for w in self.windows}
        self._pos = None

    def clear(self) -> None:
        self.reset()
        self._cutoff = None


class RollingCounter(_Rolling):
    """Sum of deltas per labels over event-time windows.

    Meant for integer deltas (counts): a cell whose value returns to 0 is deleted, which is exact
    for integers. For float sums use :class:`RollingHistogram` (it tracks a count, so a fully
    retracted cell is deleted exactly even when float sums do not cancel bit for bit).
    """

    __slots__ = ()

    def _merge(self, dst: dict, labels: Labels, cell, sign: int) -> None:
        v = dst.get(labels, 0) + sign * cell
        if v == 0:
            dst.pop(labels, None)
        else:
            dst[labels] = v

    def add(self, labels: Labels, ts: float, delta: float = 1) -> bool:
        """Add ``delta`` (negative to retract) at event time ``ts``. Returns False, changing
        nothing, if ``ts`` falls in an evicted bucket."""
        b = self._bucket_for_write(ts)
        if b is None:
            return False
        bucket = self._buckets.get(b)
        if bucket is None:
            bucket = self._buckets[b] = {}
        self._merge(bucket, labels, delta, 1)
        self._drop_empty_bucket(b, bucket)
        for tot in self._windows_containing(b):
            self._merge(tot, labels, delta, 1)
        return True

    def window_sum(self, labels: Labels, now: float, window: int) -> float:
        return self.window(now, window).get(labels, 0)


class RollingHistogram(_Rolling):
    """Histogram per labels over event-time windows, with fixed upper-inclusive edges.

    A cell is a list ``[c_0, ..., c_k, sum, count]`` of non-cumulative counts per edge (``c_k`` is
    the +Inf bucket). ``observe(..., sign=-1)`` retracts an earlier observation exactly.
    With ``edges=()`` it is a plain sum/count pair (for means).
    """

    __slots__ = ("edges", "_k", "le")

    def __init__(
        self,
        edges: Iterable[float],
        windows: Iterable[int],
        bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
    ):
        super().__init__(windows, bucket_seconds)
        es = tuple(float(e) for e in edges)
        if any(b <= a for a, b in zip(es, es[1:])):
            raise ValueError("histogram edges must be strictly increasing")
        if any(e != e or e in (float("inf"), float("-inf")) for e in es):
            raise ValueError("histogram edges must be finite (+Inf is implicit)")
        self.edges = es
        self._k = len(es) + 1  # count slots incl. +Inf
        self.le = [floatToGoString(e) for e in es] + ["+Inf"]  # Prometheus `le` label values

    def _merge(self, dst: dict, labels: Labels, cell, sign: int) -> None:
        cur = dst.get(labels)
        if cur is None:
            if sign > 0:
                dst[labels] = list(cell)
            else:
                dst[labels] = [-x for x in cell]
            cur = dst[labels]
        else:
            for i, x in enumerate(cell):
                cur[i] += sign * x
        if cur[-1] == 0:
            del dst[labels]

    def _point(self, dst: dict, labels: Labels, slot: int, value: float, sign: int) -> None:
        cur = dst.get(labels)
        if cur is None:
            cur = dst[labels] = [0] * self._k + [0.0, 0]
        cur[slot] += sign
        cur[-2] += sign * value
        cur[-1] += sign
        if cur[-1] == 0:
            del dst[labels]

    def observe(self, labels: Labels, ts: float, value: float, sign: int = 1) -> bool:
        """Record (sign=+1) or retract (sign=-1) one observation ``value`` at event time ``ts``.
        Returns False, changing nothing, if ``ts`` falls in an evicted bucket."""
        b = self._bucket_for_write(ts)
        if b is None:
            return False
        slot = bisect_left(self.edges, value)  # first edge >= value: `le` is inclusive
        bucket = self._buckets.get(b)
        if bucket is None:
            bucket = self._buckets[b] = {}
        self._point(bucket, labels, slot, value, sign)
        self._drop_empty_bucket(b, bucket)
        for tot in self._windows_containing(b):
            self._point(tot, labels, slot, value, sign)
        return True

    def cumulative(self, cell) -> tuple[list[tuple[str, float]], float, int]:
        """Prometheus form of a window cell: ([(le, cumulative count), ..., ('+Inf', count)],
        sum, count). ``cell=None`` gives an all-zero histogram."""
        if cell is None:
            return [(le, 0) for le in self.le], 0.0, 0
        acc = 0
        out = []
        for le, c in zip(self.le, cell):
            acc += c
            out.append((le, acc))
        return out, cell[-2], cell[-1]


class WatermarkTracker:
    """Per-partition watermarks (max event time seen) and the too-late rule.

    ``horizon = max_window + grace``. The eviction cutoff is
    ``bucket_start(high_watermark - horizon)`` where the high watermark is the maximum event time
    seen on any partition of this worker (monotone: it never goes back, even when a partition is
    revoked). Windows are read at wall-clock ``now`` and ``now`` is about the high watermark, so a
    bucket before the cutoff can no longer be inside any window that is read (as long as ``grace``
    covers the accepted future skew of event times plus one bucket).
    An event is too late iff ``ts < cutoff()`` judged *before* it raises the watermark.
    """

    __slots__ = ("horizon", "g", "_wm", "_high")

    def __init__(self, horizon_seconds: float, bucket_seconds: int = DEFAULT_BUCKET_SECONDS):
        if horizon_seconds <= 0:
            raise ValueError("horizon must be positive")
        self.horizon = float(horizon_seconds)
        self.g = int(bucket_seconds)
        self._wm: dict[Hashable, float] = {}
        self._high: float | None = None

    def observe(self, partition: Hashable, ts: float) -> bool:
        """Record event time ``ts`` seen on ``partition``. Returns True if the event is too late
        (its window contributions fall in evicted buckets): the caller counts it and still
        updates the entity state."""
        too_late = self.is_too_late(ts)
        wm = self._wm.get(partition)
        if wm is None or ts > wm:
            self._wm[partition] = ts
        if self._high is None or ts > self._high:
            self._high = ts
        return too_late

    def is_too_late(self, ts: float) -> bool:
        c = self.cutoff()
        return c is not None and ts < c

    def watermark(self, partition: Hashable | None = None) -> float | None:
        """Watermark of one partition, or the worker's high watermark when ``partition`` is None."""
        if partition is None:
            return self._high
        return self._wm.get(partition)

    def partitions(self) -> dict[Hashable, float]:
        return dict(self._wm)

    def cutoff(self) -> float | None:
        """Eviction cutoff (epoch s, a bucket start) or None before any event."""
        if self._high is None:
            return None
        return bucket_start(self._high - self.horizon, self.g)

    def forget(self, partition: Hashable) -> None:
        """Partition revoked: drop its watermark (the high watermark stays)."""
        self._wm.pop(partition, None)

    def keep_high(self, previous: WatermarkTracker) -> None:
        """Carry the high watermark of the tracker this one replaces (a rebuild after partitions
        moved seeds a new tracker from the assigned partitions only): it never goes back."""
        high = previous._high
        if high is not None and (self._high is None or high > self._high):
            self._high = high
