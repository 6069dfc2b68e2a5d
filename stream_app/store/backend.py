"""Where checkpoints go: the interface a worker's state backend offers, and the in-memory one.

A backend holds, per (table, partition), the encoded states and the source offset they reflect,
written atomically by a checkpoint, plus which worker may write them. The Redis backend
(``redis_store``) is the system of record; the memory backend keeps nothing across a restart,
so every partition a worker is assigned is rebuilt from its source topic's start (tests, demos).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .partition_state import PartitionFlush
from .redis_flush import FLUSH_OK


@dataclass
class TableStats:
    """What a backend reports of one table, for ``stream_app_store_*``."""

    table: str
    last_write_at: float | None = None
    write_errors: int = 0
    load_fallbacks: int = 0  # partitions rebuilt from the source because the backend was unreachable
    loaded_states: dict[int, int] = field(default_factory=dict)  # states read at the last assignment


class Backend(Protocol):
    durable: bool  # whether checkpoints survive a restart

    @property
    def available(self) -> bool: ...

    async def claim(self, table: str, partition: int) -> int | None:
        """Claim the partition (a previous owner's later writes are refused from now on) and
        return its checkpoint's offset; None: no checkpoint (or the backend is unreachable),
        the partition is rebuilt from its source's start."""
        ...

    async def read(self, table: str, partition: int) -> list[tuple[str, bytes]]:
        """The encoded states of a claimed partition's checkpoint."""
        ...

    async def still_ours(self, table: str, partition: int, offset: int | None) -> bool:
        """Whether a partition kept across a rebalance is unchanged in the backend: still owned
        by this worker and at ``offset``."""
        ...

    async def write(self, flush: PartitionFlush) -> int:
        """Write one checkpoint of one partition atomically; FLUSH_OK, FLUSH_WIPED or
        FLUSH_FENCED (redis_flush). Raises when the backend cannot be reached."""
        ...

    def stats(self, table: str) -> TableStats: ...

    async def close(self) -> None: ...


class MemoryBackend:
    """Keeps nothing: a partition assigned again is rebuilt from its source's start."""

    durable = False
    available = True

    def __init__(self) -> None:
        self._stats: dict[str, TableStats] = {}

    async def claim(self, table: str, partition: int) -> int | None:
        return None

    async def read(self, table: str, partition: int) -> list[tuple[str, bytes]]:
        return []

    async def still_ours(self, table: str, partition: int, offset: int | None) -> bool:
        return True

    async def write(self, flush: PartitionFlush) -> int:
        return FLUSH_OK

    def stats(self, table: str) -> TableStats:
        return self._stats.setdefault(table, TableStats(table))

    async def close(self) -> None:
        pass
