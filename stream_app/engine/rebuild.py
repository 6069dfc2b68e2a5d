"""What every derived index shares after partitions move: readiness and dropping an
overtaken rebuild.

Indexes are never stored; they are rebuilt from the assigned partitions' states. A rebuild runs
in steps (a caller yields to its event loop between them) and swaps its result in only at the
end, and only if no newer rebalance or rebuild started meanwhile.
"""

from __future__ import annotations

# Rebuilds yield every this many states or rows: with a million entities a rebuild takes tens
# of seconds, and a worker whose loop is blocked that long misses its consumer heartbeats.
REBUILD_CHUNK = 2000


class RebuildGate:
    """Readiness of one derived index and the generation of its latest rebuild."""

    def __init__(self) -> None:
        self.ready = False
        self._generation = 0

    def begin_rebalance(self) -> None:
        """Partitions are moving: not ready until the next rebuild, and a running one is dropped."""
        self.ready = False
        self._generation += 1

    def start(self) -> int:
        """A rebuild starts: its token (any later start or rebalance overtakes it)."""
        self._generation += 1
        return self._generation

    def finish(self, token: int) -> bool:
        """Whether the rebuild with ``token`` is still the latest; if so, ready."""
        if token != self._generation:
            return False
        self.ready = True
        return True
