"""docs/producing.md says "pass data={...}": every client entry point takes the event's data
fields as ``data=`` as well as positionally or as keywords (issue #12: it raised TypeError)."""

from __future__ import annotations

import asyncio
import json

import pytest

from stream_app.client import AsyncEventClient, build_event
from stream_app.config import Settings
from stream_app.events import EventRejected


@pytest.fixture
def client() -> AsyncEventClient:
    return AsyncEventClient(source="unit-test", settings=Settings())  # never started: nothing is sent


def test_build_takes_data_as_a_keyword(client):
    for out in (
        client.build("ticket.reopened", data={"ticket_id": "T-7"}),
        build_event("ticket.reopened", data={"ticket_id": "T-7"}, source="unit-test"),
    ):
        assert json.loads(out.value)["data"] == {"ticket_id": "T-7"}
        assert out.key == b"T-7"


def test_data_keyword_and_field_keywords_combine_and_clash_clearly(client):
    out = client.build("ticket.assigned", data={"ticket_id": "T-1", "team": "billing"}, agent_id="A-9")
    assert json.loads(out.value)["data"] == {"ticket_id": "T-1", "team": "billing", "agent_id": "A-9"}
    with pytest.raises(TypeError, match="given twice: ticket_id"):
        client.build("ticket.reopened", data={"ticket_id": "T-1"}, ticket_id="T-2")


def test_send_and_the_type_methods_validate_data_given_as_a_keyword(client):
    # An invalid value proves the data reached validation (before any Kafka call) instead of a
    # TypeError about the keyword.
    for call in (
        lambda: client.send("ticket.reopened", data={"ticket_id": 42}),
        lambda: client.ticket_reopened(data={"ticket_id": 42}),
    ):
        with pytest.raises(EventRejected) as info:
            asyncio.run(call())
        assert info.value.reason == "invalid" and "data.ticket_id" in info.value.detail
