"""Event contracts: pydantic models per family, the registry, and the wire decoder.

See docs/events.md for the contract and schemas/ for the published JSON Schemas.
"""

from __future__ import annotations

from .activity import (
    ActivityEvent,
    ActivityFeatureUsed,
    ActivityHeartbeat,
    ActivityLogin,
    ActivityLogout,
    ActivitySignedUp,
)
from .decode import REASONS, EventRejected, decode_event
from .envelope import SUPPORTED_SCHEMAVERSION, Envelope, EventData
from .registry import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    FAMILIES,
    SUBJECT_FIELDS,
    TOPIC_SETTINGS,
    AnyEvent,
    family_of,
)
from .subscriptions import (
    SubscriptionCancelled,
    SubscriptionEnded,
    SubscriptionEvent,
    SubscriptionPayment,
    SubscriptionPlanChanged,
    SubscriptionRenewalDue,
    SubscriptionRenewed,
    SubscriptionStarted,
    SubscriptionTrialStarted,
)
from .surveys import SurveyCes, SurveyCsat, SurveyEvent, SurveyNps
from .tickets import (
    TicketAssigned,
    TicketClosed,
    TicketCreated,
    TicketEvent,
    TicketReopened,
    TicketReplied,
    TicketSolved,
    TicketStatusChanged,
)

#: Base class of every event model (use for isinstance checks and annotations).
Event = Envelope


def encode_event(event: Envelope) -> bytes:
    """Wire bytes of an event (what producers send and decode_event accepts)."""
    return event.model_dump_json().encode()


__all__ = [
    "REASONS",
    "SUPPORTED_SCHEMAVERSION",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "FAMILIES",
    "SUBJECT_FIELDS",
    "TOPIC_SETTINGS",
    "AnyEvent",
    "Envelope",
    "Event",
    "EventData",
    "EventRejected",
    "decode_event",
    "encode_event",
    "family_of",
    "TicketEvent",
    "TicketCreated",
    "TicketReplied",
    "TicketStatusChanged",
    "TicketAssigned",
    "TicketSolved",
    "TicketReopened",
    "TicketClosed",
    "ActivityEvent",
    "ActivitySignedUp",
    "ActivityLogin",
    "ActivityLogout",
    "ActivityHeartbeat",
    "ActivityFeatureUsed",
    "SubscriptionEvent",
    "SubscriptionTrialStarted",
    "SubscriptionStarted",
    "SubscriptionPlanChanged",
    "SubscriptionRenewalDue",
    "SubscriptionRenewed",
    "SubscriptionCancelled",
    "SubscriptionEnded",
    "SubscriptionPayment",
    "SurveyEvent",
    "SurveyNps",
    "SurveyCsat",
    "SurveyCes",
]
