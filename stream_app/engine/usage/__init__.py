"""Product usage metrics (activity events): per-user state, its contributions, the derived index.

Same engine pattern as :mod:`stream_app.engine.support` (state -> contributions -> index, the index
moved by the difference of old and new contributions, rebuilt from states after a rebalance).

What differs: a user sends an event every few minutes (heartbeats), so the state cannot keep one
fact per event id like a ticket does. Every fact is a *join* over the user's events (min, max,
set union), so the same events in any order, or an event applied twice, give the same state.
Pruning is relative to the user's newest event time ``M`` (itself a max): facts older than
``M - keep`` are dropped, and a fact that old can never come back through a later event, so
pruning commutes with the joins. (Exception, documented: a session whose own events span more
than the session retention is cut in two.)

Distinct counts are exact without sketches: each user contributes *one* point at its last
activity time, so the sum of a rolling counter over a window is the number of distinct users
whose last activity is in the window, which (read at now >= every event time) is the number of
distinct users active in it. The same trick per (user, feature) and per (user, client).

Definitions of every metric: docs/metrics.md (Product usage section)."""

from __future__ import annotations

from .config import (
    ACTIVITY_TYPES,
    Contribution,
    DAY,
    DEFAULT_SESSION_EDGES,
    FEATURE_USED,
    LOGIN,
    LOGOUT,
    PREFIX,
    SIGNAL_FEATURE_SECONDS,
    SIGNAL_SESSION_SECONDS,
    SIGNED_UP,
    UsageConfig,
)
from .state import (
    UserState,
    account_signal,
    apply,
    contributions,
    retention_until,
    session_client,
    short_hash,
)
from .family import UsageFamily
from .index import UsageIndex

__all__ = [
    "ACTIVITY_TYPES",
    "Contribution",
    "DAY",
    "DEFAULT_SESSION_EDGES",
    "FEATURE_USED",
    "LOGIN",
    "LOGOUT",
    "PREFIX",
    "SIGNAL_FEATURE_SECONDS",
    "SIGNAL_SESSION_SECONDS",
    "SIGNED_UP",
    "UsageConfig",
    "UsageFamily",
    "UsageIndex",
    "UserState",
    "account_signal",
    "apply",
    "contributions",
    "retention_until",
    "session_client",
    "short_hash",
]
