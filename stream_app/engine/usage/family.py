"""Usage behind the engine's family interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from stream_app.engine.family import Family

from .config import Contribution, UsageConfig
from .state import UserState, account_signal, apply, contributions, retention_until
from .index import UsageIndex


class UsageFamily(Family[UserState, UsageConfig]):
    """Users (docs/metrics.md, Usage). Keyed by user id."""

    name = "usage"
    event_family = "activity"
    table = "users"

    def from_stored(self, stored: Mapping) -> UserState:
        return UserState.from_dict(stored)

    def to_stored(self, state: UserState) -> dict:
        return state.to_dict()

    def apply(self, state: UserState | None, event: Any) -> tuple[UserState, bool]:
        return apply(state, event, self.config)

    def contributions(self, state: UserState) -> list[Contribution]:
        return contributions(state, self.config)

    def new_index(self) -> UsageIndex:
        return UsageIndex(self.config)

    def max_ts(self, state: UserState) -> float | None:
        return state.max_ts()

    def account_signal(self, state: UserState) -> dict | None:
        """Judged at the user's newest event, so the signal is a pure function of the state (the
        health score applies its own ``now`` to the times it carries)."""
        return account_signal(state, state.max_ts())

    def retention_until(self, state: UserState) -> float | None:
        return retention_until(state, self.config)
