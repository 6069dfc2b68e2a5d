"""The table store's functional core: in-memory table contents tracked per partition, with dirty
sets and the changelog offsets they reflect, and what one flush of a partition writes.

Plain Python (no Faust, no Redis): tests/unit/store drive it directly. The Faust shell is
``faust_store``; the Redis side of a flush is ``redis_flush``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass
class PartitionSnapshot:
    """What one flush writes for one partition (already encoded)."""

    partition: int
    sets: list[tuple[bytes, bytes]]
    deletes: list[bytes]
    offset: int | None  # changelog offset covered by the data; None = none known
    full: bool  # rewrite: drop the partition's hash first, then write every key
    keys: set  # the decoded keys taken out of the dirty set (restored on failure)


class PartitionedState:
    """In-memory table contents tracked per partition, with dirty sets and offsets.

    ``data`` is a plain dict (the hot path for reads); every write goes through
    :meth:`set` / :meth:`delete` / :meth:`apply` so that the key's partition,
    the partition's dirty set and the changelog offset stay in step.
    Only *owned* partitions (active on this worker) are flushed; others
    (standby replicas) live in memory only.
    """

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        self.key_partition: dict[Any, int] = {}
        self.partition_keys: dict[int, set] = {}
        self.dirty: dict[int, set] = {}
        self.offsets: dict[int, int] = {}  # latest changelog offset reflected in memory
        self.flushed_offsets: dict[int, int] = {}  # offset last written to Redis
        self.owned: set[int] = set()
        self.full_rewrite: set[int] = set()

    # -- writes -------------------------------------------------------------
    def set(self, key: Hashable, value: Any, partition: int) -> None:
        old = self.key_partition.get(key)
        if old is not None and old != partition:
            # Same key written from another partition (table not keyed like its
            # source topic): it moves, so the old partition's hash must drop it.
            self.partition_keys[old].discard(key)
            self._mark(old, key)
        self.data[key] = value
        self.key_partition[key] = partition
        keys = self.partition_keys.get(partition)
        if keys is None:
            keys = self.partition_keys[partition] = set()
        keys.add(key)
        self._mark(partition, key)

    def delete(self, key: Hashable, partition: int | None = None) -> bool:
        """Remove ``key``; returns whether it existed."""
        existed = key in self.data
        if existed:
            del self.data[key]
        old = self.key_partition.pop(key, None)
        if old is not None:
            self.partition_keys[old].discard(key)
            self._mark(old, key)
        if partition is not None and partition != old:
            self._mark(partition, key)
        return existed

    def apply(self, key: Hashable, value: Any, partition: int, offset: int | None, deleted: bool) -> None:
        """One changelog record (recovery): full value or tombstone, in log order."""
        if deleted:
            self.delete(key, partition)
        else:
            self.set(key, value, partition)
        if offset is not None:
            self.note_offset(partition, offset)

    def note_offset(self, partition: int, offset: int) -> None:
        cur = self.offsets.get(partition)
        if cur is None or offset > cur:
            self.offsets[partition] = offset

    def _mark(self, partition: int, key: Hashable) -> None:
        d = self.dirty.get(partition)
        if d is None:
            d = self.dirty[partition] = set()
        d.add(key)

    # -- partitions ---------------------------------------------------------
    def partition_of(self, key: Hashable) -> int | None:
        return self.key_partition.get(key)

    def keys_of(self, partition: int) -> list:
        return list(self.partition_keys.get(partition, ()))

    def drop_partition(self, partition: int) -> int:
        """Forget a partition's keys, dirty set and offsets; returns keys dropped."""
        keys = self.partition_keys.pop(partition, set())
        for key in keys:
            if self.key_partition.get(key) == partition:
                del self.key_partition[key]
                self.data.pop(key, None)
        self.dirty.pop(partition, None)
        self.offsets.pop(partition, None)
        self.flushed_offsets.pop(partition, None)
        self.full_rewrite.discard(partition)
        self.owned.discard(partition)
        return len(keys)

    def load_partition(self, partition: int, items: Iterable[tuple[Any, Any]], offset: int | None) -> int:
        """Install a partition read from Redis (clean: nothing dirty). Returns keys loaded."""
        self.drop_partition(partition)
        self.owned.add(partition)
        keys = self.partition_keys[partition] = set()
        n = 0
        for key, value in items:
            other = self.key_partition.get(key)
            if other is not None and other != partition:
                self.partition_keys[other].discard(key)
            self.data[key] = value
            self.key_partition[key] = partition
            keys.add(key)
            n += 1
        if offset is None:
            # No offset stored: whatever the hash holds is not a usable snapshot
            # (fresh, wiped or half-rewritten). Faust replays the whole changelog
            # and the first flush replaces the hash wholesale.
            self.full_rewrite.add(partition)
        else:
            self.offsets[partition] = offset
            self.flushed_offsets[partition] = offset
        return n

    def require_full_rewrite(self, partition: int) -> None:
        self.full_rewrite.add(partition)

    # -- flushing -------------------------------------------------------------
    def begin(self, partition: int) -> PartitionSnapshot | None:
        """Take the partition's pending keys and its offset at one instant (sync).

        Returns None when there is nothing to write. Values are read later, by
        :meth:`encode`; a value changed in between is newer than the offset,
        which is safe (docs/state-store.md), and its key is dirty again anyway.
        """
        full = partition in self.full_rewrite
        offset = self.offsets.get(partition)
        dirty = self.dirty.pop(partition, None) or set()
        if not full and not dirty and offset == self.flushed_offsets.get(partition):
            return None
        if full:
            dirty |= self.partition_keys.get(partition, set())
        return PartitionSnapshot(partition, [], [], offset, full, dirty)

    def encode(
        self,
        partition: int,
        keys: Iterable,
        encode_key: Callable[[Any], bytes],
        encode_value: Callable[[Any], bytes],
    ) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
        """Current state of ``keys`` in ``partition``: (field, value) sets and field deletes."""
        sets: list[tuple[bytes, bytes]] = []
        deletes: list[bytes] = []
        data, kp = self.data, self.key_partition
        for key in keys:
            value = data.get(key, _MISSING) if kp.get(key) == partition else _MISSING
            if value is _MISSING:
                deletes.append(encode_key(key))
            else:
                sets.append((encode_key(key), encode_value(value)))
        return sets, deletes

    def snapshot(
        self,
        partition: int,
        encode_key: Callable[[Any], bytes],
        encode_value: Callable[[Any], bytes],
    ) -> PartitionSnapshot | None:
        """:meth:`begin` + :meth:`encode` of every key, in one synchronous step."""
        snap = self.begin(partition)
        if snap is not None:
            snap.sets, snap.deletes = self.encode(partition, snap.keys, encode_key, encode_value)
        return snap

    def flushed(self, snap: PartitionSnapshot) -> None:
        if snap.partition not in self.owned:
            return
        if snap.offset is not None:
            self.flushed_offsets[snap.partition] = snap.offset
        if snap.full:
            self.full_rewrite.discard(snap.partition)

    def restore(self, snap: PartitionSnapshot) -> None:
        """A flush failed: its keys are dirty again (unless the partition left)."""
        if snap.partition in self.owned and snap.keys:
            self._mark_many(snap.partition, snap.keys)

    def _mark_many(self, partition: int, keys: Iterable) -> None:
        d = self.dirty.get(partition)
        if d is None:
            d = self.dirty[partition] = set()
        d.update(keys)

    def dirty_count(self) -> int:
        return sum(len(d) for p, d in self.dirty.items() if p in self.owned)

    def keys_per_partition(self) -> dict[int, int]:
        return {p: len(k) for p, k in sorted(self.partition_keys.items())}
