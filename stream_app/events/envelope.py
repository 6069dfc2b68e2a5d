"""CloudEvents-style envelope shared by every event, and the field types the families reuse.

Models are strict (no coercion: ``"5"`` is not an int, ``"yes"`` is not a bool) because coercion
would hide producer bugs that later skew metrics. ``data`` forbids unknown fields so typos fail
loudly; the envelope ignores unknown attributes so producers may add CloudEvents extensions.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

#: Highest ``schemaversion`` this code understands; higher versions are rejected, not guessed at.
SUPPORTED_SCHEMAVERSION = 1

# RFC 3339 requires a full date and a time; lax datetime parsing would also take unix-time
# numbers or numeric strings, which we refuse (they are ambiguous: seconds? milliseconds?).
_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339_only(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC3339_START.match(value):
        return value
    raise PydanticCustomError("datetime_type", "Input should be an RFC 3339 date-time string")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        # e.g. 0001-01-01T00:00:00+14:00: valid RFC 3339, but not representable in UTC.
        raise PydanticCustomError("datetime_range", "Input should be within years 1..9999 in UTC") from None


#: Timezone-aware datetime (naive rejected), normalised to UTC. Lax only so that Python callers
#: may pass RFC 3339 strings too; the before-validator still refuses numbers.
UtcDatetime = Annotated[
    AwareDatetime,
    Field(strict=False),
    BeforeValidator(_rfc3339_only),
    AfterValidator(_to_utc),
]
#: Opaque identifier (ticket, user, account, ...).
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
#: Short free-form name (team, plan).
Name64 = Annotated[str, StringConstraints(min_length=1, max_length=64)]
#: ISO 4217 alphabetic code.
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
#: Money in the currency's minor unit (cents), never a float.
AmountMinor = Annotated[int, Field(ge=0)]
#: Non-negative finite duration in seconds.
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def field_error(loc: tuple[str, ...], error_type: str, message: str, value: Any) -> ValidationError:
    """A ValidationError located at ``loc``, for raising from model validators (keeps field paths)."""
    return ValidationError.from_exception_data(
        "event",
        [InitErrorDetails(type=PydanticCustomError(error_type, message), loc=loc, input=value)],
    )


class EventData(BaseModel):
    """Base of every ``data`` payload: strict, immutable, unknown fields rejected."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _require_type(schema: dict[str, Any]) -> None:
    # ``type`` has a default for Python callers, but on the wire it is the discriminator.
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


class Envelope(BaseModel):
    """CloudEvents 1.0 attributes common to every event; subclasses pin ``type`` and ``data``."""

    model_config = ConfigDict(
        strict=True, extra="ignore", frozen=True, json_schema_extra=_require_type
    )

    #: Event family ('ticket', 'activity', 'subscription', 'survey'); set by family base classes.
    FAMILY: ClassVar[str] = ""
    #: Name of the ``data`` field that ``subject`` (and the Kafka key) must equal.
    SUBJECT_FIELD: ClassVar[str] = ""

    specversion: Literal["1.0"] = Field("1.0", description="CloudEvents spec version.")
    id: Id = Field(description="Unique per event; consumers may use it to drop duplicates.")
    source: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="Producing system, e.g. 'helpdesk' or a URI."
    )
    type: str = Field(description="Event type, e.g. 'ticket.created'.")
    time: UtcDatetime = Field(
        description="When it happened (event time), RFC 3339 with offset; normalised to UTC."
    )
    subject: Id = Field(
        description="Entity key: equals the family's id field in data and the Kafka message key."
    )
    schemaversion: int = Field(
        SUPPORTED_SCHEMAVERSION,
        ge=1,
        le=SUPPORTED_SCHEMAVERSION,
        description="Version of this type's schema; higher than supported is rejected.",
    )
    data: EventData

    @model_validator(mode="after")
    def _subject_is_entity_key(self) -> Envelope:
        if self.SUBJECT_FIELD and self.subject != getattr(self.data, self.SUBJECT_FIELD):
            raise field_error(
                ("subject",),
                "subject_mismatch",
                f"must equal data.{self.SUBJECT_FIELD}",
                None,
            )
        return self

    @property
    def family(self) -> str:
        return self.FAMILY

    @property
    def ts(self) -> float:
        """Event time as float epoch seconds."""
        return self.time.timestamp()
