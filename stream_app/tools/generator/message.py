"""What the generator emits: one Kafka message of the log (GeneratedEvent) in the CloudEvents
envelope of the contract (docs/events.md), with its true event time and its fault flags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

FAMILIES: tuple[str, ...] = ("ticket", "activity", "subscription", "survey")
#: data field that is the subject (= Kafka key) of each family.
SUBJECT_FIELDS: dict[str, str] = {
    "ticket": "ticket_id",
    "activity": "user_id",
    "subscription": "account_id",
    "survey": "response_id",
}
SOURCES: dict[str, str] = {
    "ticket": "generator/helpdesk",
    "activity": "generator/webapp",
    "subscription": "generator/billing",
    "survey": "generator/surveys",
}


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One message of the log: where it goes, its exact bytes, and what was done to it."""

    family: str  # 'ticket' | 'activity' | 'subscription' | 'survey' (selects the topic)
    key: str  # Kafka key = envelope subject
    value: bytes  # wire JSON (or deliberately bad bytes when is_invalid)
    time: float  # true event time, epoch seconds (the JSON 'time', millisecond precision)
    emit_time: float  # position in the emission timeline; > time for late/out-of-order events
    type: str  # event type ('ticket.created', ...) as written in the value
    id: str  # envelope id (duplicates share it with their original)
    is_duplicate: bool = False
    is_out_of_order: bool = False
    is_late: bool = False
    is_invalid: bool = False
    invalid_kind: str | None = None  # a key of INVALID_KINDS when is_invalid

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode()


def rfc3339(ts: float) -> str:
    """Epoch seconds -> '2025-06-15T12:00:00.123Z' (millisecond precision, UTC)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def envelope(t: float, typ: str, data: dict[str, Any], event_id: str) -> GeneratedEvent:
    """The clean message of an event of type ``typ`` at ``t``: key = subject = the family's subject field."""
    family = typ.split(".", 1)[0]
    subject = data[SUBJECT_FIELDS[family]]
    doc = {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCES[family],
        "type": typ,
        "time": rfc3339(t),
        "subject": subject,
        "schemaversion": 1,
        "data": data,
    }
    return GeneratedEvent(family, subject, orjson.dumps(doc), t, t, typ, event_id)
