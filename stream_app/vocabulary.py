"""The closed sets of values the event contracts allow and the metrics label by, in one place.

The contracts (``stream_app.events``) validate against these, the engine's label rules admit
exactly these, and the generator draws from them. Order is the contracts' (JSON Schema enums
list them in this order).
"""

from __future__ import annotations

from typing import Literal

CHANNELS = ("email", "chat", "phone", "web", "api", "social")
PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
CLIENTS = ("web", "ios", "android", "desktop", "api")

Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Priority = Literal[PRIORITIES]  # type: ignore[valid-type]
TicketStatus = Literal[TICKET_STATUSES]  # type: ignore[valid-type]
Client = Literal[CLIENTS]  # type: ignore[valid-type]

# Default SLA targets per priority, seconds: (first reply, resolution). STREAM_APP_SUPPORT_SLA_TARGETS
# overrides them; the support boards use them as histogram edges.
DEFAULT_SLA_TARGETS: dict[str, tuple[float | None, float | None]] = {
    "urgent": (1800, 4 * 3600),
    "high": (3600, 8 * 3600),
    "normal": (4 * 3600, 24 * 3600),
    "low": (24 * 3600, 72 * 3600),
}

#: Survey comment themes (stream_app.engine.feedback): theme -> words/phrases that name it. The
#: themes customer-success teams sort open comments into; a comment naming none is OTHER_THEME.
DEFAULT_COMMENT_THEMES: dict[str, tuple[str, ...]] = {
    "billing": ("bill", "billing", "billed", "invoice", "invoices", "charge", "charged", "price", "pricing",
                "refund", "payment", "expensive", "subscription"),
    "performance": ("slow", "slowly", "lag", "laggy", "latency", "performance", "timeout", "timeouts",
                    "loading", "freezes", "speed"),
    "onboarding": ("onboarding", "setup", "set up", "getting started", "tutorial", "documentation", "docs",
                   "learning curve", "confusing"),
    "bugs": ("bug", "bugs", "buggy", "crash", "crashes", "error", "errors", "broken", "glitch",
             "does not work", "doesn't work"),
    "support": ("support", "agent", "agents", "respond", "response", "answer", "answered", "helpful",
                "explain", "ticket"),
}
OTHER_THEME = "other"
