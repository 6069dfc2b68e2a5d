"""Type registry: type string -> model, family metadata, and the discriminated union decoders use."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from .activity import ACTIVITY_EVENTS
from .envelope import Envelope
from .subscriptions import SUBSCRIPTION_EVENTS
from .surveys import SURVEY_EVENTS
from .tickets import TICKET_EVENTS

FAMILIES: tuple[str, ...] = ("ticket", "activity", "subscription", "survey")

#: Family -> name of the Settings field holding its topic (see stream_app/config.py).
TOPIC_SETTINGS: dict[str, str] = {
    "ticket": "topic_tickets",
    "activity": "topic_activity",
    "subscription": "topic_subscriptions",
    "survey": "topic_surveys",
}

#: Family -> data field that is the subject, the Kafka key and so the partitioning/ordering key.
SUBJECT_FIELDS: dict[str, str] = {
    "ticket": "ticket_id",
    "activity": "user_id",
    "subscription": "account_id",
    "survey": "response_id",
}

_MODELS: tuple[type[Envelope], ...] = (
    *TICKET_EVENTS,
    *ACTIVITY_EVENTS,
    *SUBSCRIPTION_EVENTS,
    *SURVEY_EVENTS,
)

#: Type string -> event model class, in contract order.
EVENT_TYPES: dict[str, type[Envelope]] = {m.model_fields["type"].default: m for m in _MODELS}

#: Pydantic type for "any event", dispatched on ``type`` without trying each model.
AnyEvent = Annotated[Union[_MODELS], Field(discriminator="type")]  # noqa: UP007
EVENT_ADAPTER: TypeAdapter[Envelope] = TypeAdapter(AnyEvent)


def family_of(type_str: str) -> str:
    """Family of an event type, e.g. 'ticket.created' -> 'ticket'. KeyError if unknown."""
    return EVENT_TYPES[type_str].FAMILY


def _check_consistency() -> None:
    # Cheap import-time guard: a model in the wrong family tuple would route to the wrong topic.
    for type_str, model in EVENT_TYPES.items():
        assert type_str.split(".", 1)[0] == model.FAMILY, type_str
        assert SUBJECT_FIELDS[model.FAMILY] == model.SUBJECT_FIELD, type_str
        assert model.SUBJECT_FIELD in model.model_fields["data"].annotation.model_fields, type_str
    assert len(EVENT_TYPES) == len(_MODELS)


_check_consistency()
