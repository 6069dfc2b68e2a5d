"""The producer helper's pure part: building and validating events before anything is sent."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from stream_app.client import AsyncEventClient, EventClient, build_event
from stream_app.events import EVENT_TYPES, SUBJECT_FIELDS, EventRejected, decode_event
from tests.support.paths import EXAMPLES_DIR

EXAMPLES = EXAMPLES_DIR


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_type_builds_from_its_example_data(event_type):
    example = json.loads((EXAMPLES / f"{event_type}.json").read_text())
    before = datetime.now(timezone.utc)
    out = build_event(event_type, example["data"], source="unit-test")
    after = datetime.now(timezone.utc)
    ev = out.event
    assert ev.type == event_type and out.type == event_type
    assert uuid.UUID(ev.id).version == 4
    assert before <= ev.time <= after and ev.time.tzinfo == timezone.utc
    assert ev.subject == example["data"][SUBJECT_FIELDS[ev.family]]
    assert out.key == ev.subject.encode()
    assert ev.source == "unit-test" and ev.schemaversion == 1
    # The bytes sent are what a worker decodes, to the same event.
    assert decode_event(out.value) == ev


def test_envelope_values_given_and_extensions_kept():
    when = datetime(2025, 3, 4, 9, 15, tzinfo=timezone(timedelta(hours=1)))
    out = build_event(
        "ticket.reopened",
        source="helpdesk",
        id="evt-1",
        time=when,
        ticket_id="T-1",
        extensions={"traceparent": "00-abc-01"},
    )
    assert (out.id, out.event.time) == ("evt-1", when.astimezone(timezone.utc))
    assert json.loads(out.value)["traceparent"] == "00-abc-01"
    with pytest.raises(TypeError):
        build_event("ticket.reopened", source="s", ticket_id="T", extensions={"subject": "x"})
    with pytest.raises(TypeError):
        build_event("ticket.reopened", {"ticket_id": "T"}, source="s", ticket_id="T")


@pytest.mark.parametrize(
    ("kwargs", "reason", "in_detail"),
    [
        ({"type": "ticket.created", "ticket_id": "T", "account_id": "A", "requester_id": "U",
          "channel": "fax", "priority": "high", "team": "x"}, "invalid", "data.channel"),
        ({"type": "ticket.created", "ticket_id": "T", "account_id": "A", "requester_id": "U",
          "channel": "email", "priority": "high"}, "invalid", "data.team"),
        ({"type": "subscription.payment", "account_id": "A", "payment_id": "P", "amount_minor": 49.0,
          "currency": "EUR", "status": "succeeded"}, "invalid", "data.amount_minor"),
        ({"type": "ticket.reopened", "ticket_id": "T", "time": datetime(2025, 1, 1)}, "invalid", "time"),
        ({"type": "ticket.reopened", "ticket_id": "T", "time": 1750000000}, "invalid", "time"),
        ({"type": "ticket.reopened", "ticket_id": "T", "subject": "other"}, "subject_mismatch", "subject"),
        ({"type": "ticket.reopened", "ticket_id": "T", "schemaversion": 2}, "unsupported_version", "schemaversion"),
        ({"type": "ticket.reopened", "ticket_id": "T",
          "time": datetime.now(timezone.utc) + timedelta(hours=2)}, "future_time", "time"),
        ({"type": "ticket.teleported", "ticket_id": "T"}, "unknown_type", "type"),
    ],
)
def test_invalid_events_raise_with_reason_and_field_path(kwargs, reason, in_detail):
    kwargs = dict(kwargs)
    event_type = kwargs.pop("type")
    with pytest.raises(EventRejected) as info:
        build_event(event_type, source="unit-test", **kwargs)
    assert info.value.reason == reason
    assert in_detail in info.value.detail


def test_size_limit_applies():
    with pytest.raises(EventRejected) as info:
        build_event("survey.nps", source="s", response_id="R", score=5, comment="x" * 1999, max_bytes=1000)
    assert info.value.reason == "too_large"


def test_one_method_per_type_on_both_clients():
    for event_type in EVENT_TYPES:
        name = event_type.replace(".", "_")
        assert callable(getattr(AsyncEventClient, name)) and callable(getattr(EventClient, name))
        assert event_type in getattr(EventClient, name).__doc__
