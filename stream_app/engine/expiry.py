"""When entities may be deleted: each partition's keys by the bucket of their retention time.

An entity affects no metric once the eviction cutoff passes its ``retention_until`` (the family
says when). Keys are filed under ``floor(until / g)`` with ``g`` the family's bucket width;
the cutoff is always a bucket start (a multiple of ``g``), so a whole bucket is due exactly
when every key in it is (``until < cutoff``). One entry per entity, moved when its retention
time moves to another bucket: memory follows the entities, not their events.
"""

from __future__ import annotations

import heapq


class Expiry:
    """Retention buckets of the keys of every partition of one family on one worker."""

    __slots__ = ("g", "_bucket_of", "_keys", "_heap")

    def __init__(self, bucket_seconds: int) -> None:
        self.g = int(bucket_seconds)
        self._bucket_of: dict[int, dict[str, int]] = {}  # partition -> key -> bucket
        self._keys: dict[int, dict[int, set[str]]] = {}  # partition -> bucket -> keys
        self._heap: dict[int, list[int]] = {}  # partition -> buckets (min-heap, may hold empty ones)

    def schedule(self, partition: int, key: str, until: float | None) -> None:
        """``key`` may be deleted once the cutoff passes ``until`` (None: keep it)."""
        bucket_of = self._bucket_of.setdefault(partition, {})
        old = bucket_of.get(key)
        b = None if until is None else int(until // self.g)
        if old == b:
            return
        keys = self._keys.setdefault(partition, {})
        if old is not None:
            bucket = keys[old]
            bucket.discard(key)
            if not bucket:
                del keys[old]
        if b is None:
            bucket_of.pop(key, None)
            return
        bucket_of[key] = b
        bucket = keys.get(b)
        if bucket is None:
            bucket = keys[b] = set()
            heapq.heappush(self._heap.setdefault(partition, []), b)
        bucket.add(key)

    def forget(self, partition: int, key: str) -> None:
        self.schedule(partition, key, None)

    def due(self, partition: int, cutoff: float, budget: int) -> list[str]:
        """Up to ``budget`` keys of ``partition`` whose retention time is before ``cutoff``
        (a bucket start), taken out of the index."""
        heap = self._heap.get(partition)
        out: list[str] = []
        if not heap:
            return out
        keys = self._keys[partition]
        bucket_of = self._bucket_of[partition]
        limit = cutoff // self.g  # buckets below this one are entirely before the cutoff
        while heap and heap[0] < limit and len(out) < budget:
            bucket = keys.get(heap[0])
            if not bucket:
                keys.pop(heapq.heappop(heap), None)
                continue
            while bucket and len(out) < budget:
                key = bucket.pop()
                del bucket_of[key]
                out.append(key)
        return out

    def __len__(self) -> int:
        return sum(len(k) for k in self._bucket_of.values())


# --------------------------------------------------------------------------- retained-entity gauges
#
# ``*_tracked`` (and other gauges over whole entities) count an entity while it is *retained at
# the read time*: until the cutoff a watermark at ``now`` would give (``bucket_start(now -
# horizon)``) passes its retention time. An entity past that may still be held (deletion runs on
# later events of its partition) or already deleted; the gauge is the same either way, so it does
# not depend on when the worker got round to deleting it. Contributions carry the retention
# bucket as their label (None: kept for good); the index sums the buckets still retained.


def retention_bucket(until: float | None, bucket_seconds: int) -> int | None:
    """The label a retained-entity contribution carries."""
    return None if until is None else int(until // bucket_seconds)


def retained_from_bucket(now: float, horizon: float, bucket_seconds: int) -> int:
    """Buckets at or after this one are retained when read at ``now``."""
    return int((now - horizon) // bucket_seconds)


def count_retained(counts: dict, now: float, horizon: float, bucket_seconds: int) -> float:
    """Sum of ``counts`` ({(retention bucket,): n}) retained at ``now``."""
    first = retained_from_bucket(now, horizon, bucket_seconds)
    return sum(n for (b, *_), n in counts.items() if b is None or b >= first)
