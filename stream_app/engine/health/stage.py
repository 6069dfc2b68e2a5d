"""The health stage on one worker: the accounts of its signal partitions, as rows to store and
as an index to score, rebuilt from the stored rows after partitions move.

The second pipeline stage: family engines send signals keyed by account to the signals topic,
so every account's signals meet in one partition, whichever workers hold its entities.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping

from .. import rebuild as rebuilds
from ..rebuild import RebuildGate
from .config import HealthConfig
from .index import HealthIndex
from .state import HealthState, Row, merge_row, row_changes, settle

log = logging.getLogger(__name__)


class HealthStage:
    """Applies signal messages to the held accounts; says which rows the caller must store."""

    def __init__(self, cfg: HealthConfig) -> None:
        self.cfg = cfg
        self.index = HealthIndex(cfg)
        self.gate = RebuildGate()
        self.last_rebuild_accounts = 0

    @property
    def ready(self) -> bool:
        return self.gate.ready

    def apply(self, account_id: str, message: Mapping) -> tuple[list[tuple[str, Row]], list[str]]:
        """Record one signal message; returns (rows to write, row keys to delete)."""
        old = self.index.get(account_id)
        state, changed = self.index.apply(message, account_id=account_id)
        # States are kept even when no entity is live: their tombstones stop a replayed older
        # signal from bringing an entity back (the per-source retention bounds them).
        if not changed or state is None:
            return [], []
        return row_changes(old, state)

    def rebuild(self, rows: Iterable[tuple[str, Row]], now: float) -> None:
        """Rebuild at once (tests, tools)."""
        for _ in self.rebuild_steps(rows, now):
            pass

    def rebuild_steps(self, rows: Iterable[tuple[str, Row]], now: float) -> Iterator[None]:
        """Rebuild the index from the stored (key, row) pairs of the assigned partitions, yielding every
        ``rebuilds.REBUILD_CHUNK`` rows or accounts; dropped if overtaken (see RebuildGate)."""
        token = self.gate.start()
        chunk = rebuilds.REBUILD_CHUNK
        states: dict[str, HealthState] = {}
        for i, (key, row) in enumerate(rows, 1):
            merge_row(states, key, row)
            if i % chunk == 0:
                yield
        for i, state in enumerate(states.values(), 1):
            settle(state, self.cfg)
            if i % chunk == 0:
                yield
        index = HealthIndex(self.cfg)
        index.rebuild(states.values())
        # Score every account now, in chunks: the first scrape then re-scores only what changed
        # (scores are kept until their next window edge), instead of all accounts at once.
        for i, account_id in enumerate(list(index.states), 1):
            try:
                index.score(account_id, now)
            except Exception:  # noqa: BLE001 - only a warm-up: such an account is scored at scrape time
                log.debug("health: no score for an account at rebuild", exc_info=True)
            if i % chunk == 0:
                yield
        if self.gate.finish(token):
            self.index = index
            self.last_rebuild_accounts = len(states)
