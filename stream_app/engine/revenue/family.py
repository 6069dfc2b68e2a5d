"""Revenue behind the engine's family interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from stream_app.engine.family import Family

from .config import Contribution, RevenueConfig
from .state import AccountState, apply
from .movements import account_signal, contributions, life_ended, retention_until
from .index import RevenueIndex


class RevenueFamily(Family[AccountState, RevenueConfig]):
    """Subscription accounts (docs/metrics.md, Revenue). Keyed by account id."""

    name = "revenue"
    event_family = "subscription"
    table = "accounts"

    def from_stored(self, stored: Mapping) -> AccountState:
        return AccountState.from_dict(stored)

    def to_stored(self, state: AccountState) -> dict:
        return state.to_dict()

    def apply(self, state: AccountState | None, event: Any) -> tuple[AccountState, bool]:
        # An event after the end of a (not paying) account's life starts a new life
        # (account_retention_seconds, see retention_until).
        if state is not None and not state.has_event(str(event.id)) and life_ended(state, self.config, float(event.ts)):
            state = None
        # Compaction keeps what the configured windows need.
        return apply(state, event, keep_seconds=self.config.keep_seconds)

    def contributions(self, state: AccountState) -> list[Contribution]:
        return contributions(state, self.config)

    def new_index(self) -> RevenueIndex:
        return RevenueIndex(self.config)

    def max_ts(self, state: AccountState) -> float | None:
        return state.max_ts()

    def account_signal(self, state: AccountState) -> dict | None:
        """Judged at the account's newest event (not the wall clock), so the signal is a pure
        function of the state and changes only when the account does."""
        return account_signal(state, state.max_ts(), self.config)

    def retention_until(self, state: AccountState) -> float | None:
        return retention_until(state, self.config)
