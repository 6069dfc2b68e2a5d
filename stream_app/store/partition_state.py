"""One table's entity states on a worker, per partition: what the engine reads and writes, the
source offset they reflect, and what the next checkpoint must write.

Plain Python (no Kafka, no Redis): the engine step reads and writes states here (it is the
engine's ``StateStore``); a checkpoint takes each partition's changes as a :class:`PartitionFlush`
at one instant (encoded, with the offset they reflect) and the backend (``redis_store``) writes
them atomically. ``tests/unit/store`` drives it directly.

Memory: a state changed since the last checkpoint is held as the engine's object; once a
checkpoint has encoded it, as its encoded bytes (a few dozen bytes instead of a tree of dicts and
lists). A bounded cache keeps the decoded objects of recently used states, so an entity with
several events in a row is decoded once (and the engine's per-entity memo of its contributions
stays valid: it is the same object).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

Encode = Callable[[Any], bytes]
Decode = Callable[[bytes], Any]


@dataclass
class PartitionFlush:
    """What one checkpoint writes for one partition of one table (already encoded)."""

    table: str
    partition: int
    sets: list[tuple[str, bytes]]
    deletes: list[str]
    offset: int | None  # last source offset the states reflect; None: nothing applied yet
    full: bool  # rewrite: drop what the backend holds for the partition first
    keys: set[str] = field(default_factory=set)  # the keys taken out of the dirty set


# Decoded states kept per table (cleared when full): about the entities with events in flight.
DECODED_CACHE = 20_000


class _Partition:
    __slots__ = ("states", "dirty", "offset", "flushed_offset", "full", "loaded")

    def __init__(self, offset: int | None, full: bool, loaded: bool) -> None:
        self.states: dict[str, Any] = {}  # key -> state object (changed) or its encoded bytes
        self.dirty: set[str] = set()
        self.offset = offset  # last source offset applied to these states
        self.flushed_offset = offset  # last offset a checkpoint wrote
        self.full = full
        self.loaded = loaded  # False until the checkpoint's states are in (fill)


class PartitionStates:
    """Entity states of one table, by partition, with dirty sets and offsets."""

    def __init__(self, table: str, encode: Encode, decode: Decode) -> None:
        self.table = table
        self.encode = encode
        self.decode = decode
        self.parts: dict[int, _Partition] = {}
        self._decoded: dict[str, tuple[bytes, Any]] = {}  # key -> (encoded, its decoded object)

    def _object(self, key: str, value: Any) -> Any:
        if value.__class__ is not bytes:
            return value
        cached = self._decoded.get(key)
        if cached is not None and cached[0] is value:
            return cached[1]
        state = self.decode(value)
        self._remember(key, value, state)
        return state

    def _remember(self, key: str, raw: bytes, state: Any) -> None:
        decoded = self._decoded
        if len(decoded) >= DECODED_CACHE:
            decoded.clear()
        decoded[key] = (raw, state)

    # -- the engine's StateStore ------------------------------------------------
    def get(self, key: str, partition: int) -> Any:
        p = self.parts.get(partition)
        if p is None:
            return None
        value = p.states.get(key)
        return None if value is None else self._object(key, value)

    def put(self, key: str, partition: int, state: Any) -> None:
        p = self.parts[partition]
        p.states[key] = state
        p.dirty.add(key)

    def delete(self, key: str, partition: int) -> None:
        p = self.parts[partition]
        p.states.pop(key, None)
        p.dirty.add(key)

    def items(self, partitions: Container[int]) -> Iterator[tuple[str, int, Any]]:
        """Every state of ``partitions``, decoded (not cached: a rebuild reads each once)."""
        decode = self.decode
        for partition, p in list(self.parts.items()):
            if partition in partitions:
                for key, value in list(p.states.items()):
                    yield key, partition, decode(value) if value.__class__ is bytes else value

    # -- offsets ----------------------------------------------------------------
    def applied(self, partition: int, offset: int) -> None:
        """The event at ``offset`` of the partition's source is in the states."""
        self.parts[partition].offset = offset

    def offset(self, partition: int) -> int | None:
        p = self.parts.get(partition)
        return None if p is None else p.offset

    def flushed_offset(self, partition: int) -> int | None:
        """The offset of the last checkpoint written (what the backend holds)."""
        p = self.parts.get(partition)
        return None if p is None else p.flushed_offset

    def position(self, partition: int) -> int:
        """Where the partition's source must be read from: after the last applied offset."""
        offset = self.offset(partition)
        return 0 if offset is None else offset + 1

    # -- partitions ---------------------------------------------------------------
    def partitions(self) -> set[int]:
        return set(self.parts)

    def install(self, partition: int, items: Iterable[tuple[str, bytes]] | None, offset: int | None) -> int:
        """Hold a partition read from the backend (clean: nothing dirty). ``offset`` None: the
        backend had no checkpoint, so the partition is rebuilt from its source's start and its
        first checkpoint rewrites it whole. ``items`` None: the checkpoint's states come later
        (:meth:`fill`); until then the partition is not :meth:`holds`. Returns the number of
        states."""
        p = _Partition(offset, full=offset is None, loaded=offset is None or items is not None)
        if offset is not None and items is not None:
            p.states.update(items)  # kept encoded: decoded when first used
        self.parts[partition] = p
        return len(p.states)

    def fill(self, partition: int, items: Iterable[tuple[str, bytes]]) -> int:
        """The states of a partition installed without them; returns how many."""
        p = self.parts[partition]
        p.states.update(items)
        p.loaded = True
        return len(p.states)

    def holds(self, partition: int) -> bool:
        """Whether events of the partition may be applied: held, and its states in."""
        p = self.parts.get(partition)
        return p is not None and p.loaded

    def drop(self, partition: int) -> int:
        """Forget a partition (revoked); returns the number of states dropped."""
        p = self.parts.pop(partition, None)
        return 0 if p is None else len(p.states)

    def require_full_rewrite(self, partition: int) -> None:
        """The backend lost the partition (wiped): the next checkpoint writes all of it."""
        p = self.parts.get(partition)
        if p is not None:
            p.full = True

    # -- checkpoints ----------------------------------------------------------------
    def pending(self, partition: int) -> bool:
        """Whether the partition has anything the next checkpoint must write."""
        p = self.parts.get(partition)
        return p is not None and bool(p.dirty or p.full or p.offset != p.flushed_offset)

    def take(self, partition: int) -> PartitionFlush | None:
        """The partition's changes since the last checkpoint, encoded, and the offset they
        reflect, at one instant (synchronous: no event is applied in between). None when there
        is nothing to write."""
        if not self.pending(partition):
            return None
        p = self.parts[partition]
        if not p.loaded:
            return None  # nothing was applied to it: nothing of it is written
        keys = set(p.states) if p.full else p.dirty
        p.dirty = set()
        sets: list[tuple[str, bytes]] = []
        deletes: list[str] = []
        encode = self.encode
        states = p.states
        for key in keys:
            value = states.get(key)
            if value is None:
                deletes.append(key)
            elif value.__class__ is bytes:
                sets.append((key, value))
            else:
                raw = encode(value)
                sets.append((key, raw))
                # Held encoded from now on; the object stays cached for the entity's next event.
                states[key] = raw
                self._remember(key, raw, value)
        return PartitionFlush(self.table, partition, sets, deletes, p.offset, p.full, keys)

    def flushed(self, flush: PartitionFlush) -> None:
        p = self.parts.get(flush.partition)
        if p is None:
            return
        p.flushed_offset = flush.offset
        if flush.full:
            p.full = False

    def restore(self, flush: PartitionFlush) -> None:
        """A write failed: its keys are dirty again (unless the partition left)."""
        p = self.parts.get(flush.partition)
        if p is not None:
            p.dirty |= flush.keys

    def dirty_count(self) -> int:
        return sum(len(p.dirty) + (len(p.states) if p.full else 0) for p in self.parts.values())

    def counts(self) -> dict[int, int]:
        return {partition: len(p.states) for partition, p in sorted(self.parts.items())}
