"""Support behind the engine's family interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from stream_app.engine.family import Family

from .config import Contribution, SupportConfig
from .state import TicketState, account_signal, apply, contributions, retention_until
from .index import SupportIndex


class SupportFamily(Family[TicketState, SupportConfig]):
    """Tickets (docs/metrics.md, Support). Keyed by ticket id."""

    name = "support"
    event_family = "ticket"
    table = "tickets"

    def from_stored(self, stored: Mapping) -> TicketState:
        return TicketState.from_dict(stored)

    def to_stored(self, state: TicketState) -> dict:
        return state.to_dict()

    def apply(self, state: TicketState | None, event: Any) -> tuple[TicketState, bool]:
        return apply(state, event, self.config.ticket_retention_seconds)

    def contributions(self, state: TicketState) -> list[Contribution]:
        return contributions(state, self.config)

    def new_index(self) -> SupportIndex:
        return SupportIndex(self.config)

    def max_ts(self, state: TicketState) -> float | None:
        return state.max_ts()

    def account_signal(self, state: TicketState) -> dict | None:
        return account_signal(state, self.config)

    def retention_until(self, state: TicketState) -> float | None:
        """A solved, closed or incomplete ticket's life ends ``ticket_retention_seconds`` after
        its newest event (docs/metrics.md, Support, Retention); open tickets are kept."""
        return retention_until(state, self.config.ticket_retention_seconds)
