"""Support (ticket) metrics: per-ticket state, its contributions, and the derived index.

The family pattern (``stream_app.engine.family``; every family follows it):

* ``TicketState`` is the single source of truth per ticket (kept by the caller's state store,
  keyed by ticket id, as ``state.to_dict()``). It records *facts* keyed by event id (timestamps by
  event time, author roles, statuses with their event times), never running aggregates, so any
  arrival order of the same events gives the same state, and a duplicate delivery (same id) is a
  no-op.
* ``contributions(state, cfg)`` derives from a state everything it adds to the aggregates: a list of
  ``(metric, labels, ts, value)`` tuples (``ts`` is the event time bucketed in windows, or None for
  current-state gauges).
* ``SupportIndex`` holds the aggregates. On every state change the caller calls
  ``index.update(contributions(old), contributions(new))``; on partition assignment it rebuilds by
  adding every state's contributions. Aggregates can never drift from the states.

Definitions of every metric: docs/metrics.md (Support section). Durations are clamped at 0 (a
reply timestamped before its ticket's creation by clock skew counts as 0 s)."""

from __future__ import annotations

from .config import (
    BASE_LABELS,
    BusinessCalendar,
    Contribution,
    DEFAULT_HANDLE_TIME_EDGES,
    DEFAULT_RESOLUTION_EDGES,
    DEFAULT_RESPONSE_EDGES,
    DEFAULT_TICKET_RETENTION_SECONDS,
    PREFIX,
    RESOLVED,
    SLA_KINDS,
    SlaTarget,
    SupportConfig,
    WAITING,
    default_sla_targets,
)
from .state import (
    TicketFacts,
    TicketState,
    account_signal,
    apply,
    contributions,
    derive,
    life_ends,
    requester_wait,
    retention_until,
)
from .family import SupportFamily
from .index import SupportIndex

__all__ = [
    "BASE_LABELS",
    "BusinessCalendar",
    "Contribution",
    "DEFAULT_HANDLE_TIME_EDGES",
    "DEFAULT_RESOLUTION_EDGES",
    "DEFAULT_RESPONSE_EDGES",
    "DEFAULT_TICKET_RETENTION_SECONDS",
    "PREFIX",
    "RESOLVED",
    "SLA_KINDS",
    "SlaTarget",
    "SupportConfig",
    "SupportFamily",
    "SupportIndex",
    "TicketFacts",
    "TicketState",
    "WAITING",
    "account_signal",
    "apply",
    "contributions",
    "default_sla_targets",
    "derive",
    "life_ends",
    "requester_wait",
    "retention_until",
]
