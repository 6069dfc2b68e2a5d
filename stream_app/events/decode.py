"""Bytes -> validated event, or EventRejected with a dead-letter reason code.

Fast path: one pydantic-core ``validate_json`` over the raw bytes (parse + validate + dispatch on
``type`` in Rust). Only when that fails do we look closer to choose the reason. Details carry
field paths and error kinds, never input values: payloads may hold personal data and rejection
details end up in logs and dead-letter headers.
"""

from __future__ import annotations

import re
import time as _time
from typing import Any

from pydantic import ValidationError

from .envelope import SUPPORTED_SCHEMAVERSION, Envelope
from .registry import EVENT_ADAPTER, EVENT_TYPES, FAMILIES

#: Every reason code decode_event can raise, with a one-line meaning (docs/events.md mirrors it).
REASONS: dict[str, str] = {
    "too_large": "message larger than the configured limit; not parsed",
    "not_utf8": "bytes are not valid UTF-8",
    "malformed_json": "not valid JSON",
    "not_an_object": "JSON top level is not an object",
    "unknown_type": "'type' missing, not a string, or not a known event type",
    "unsupported_version": "schemaversion higher than this consumer supports",
    "wrong_topic": "event family does not belong to the topic it was read from",
    "subject_mismatch": "subject differs from the family's id field in data",
    "future_time": "time is further in the future than the allowed clock skew",
    "invalid": "any other schema violation (types, required fields, ranges, enums, extra data fields)",
}

_MAX_ERRORS_IN_DETAIL = 5
_MAX_DETAIL = 600
# Type strings echoed in details only if they look like identifiers, so arbitrary input is never echoed.
_SAFE_TOKEN = re.compile(r"^[a-z0-9_.-]{1,64}$")


class EventRejected(Exception):
    """An event that must not be processed. ``reason`` is a code from REASONS; ``detail`` is safe to log."""

    def __init__(self, reason: str, detail: str, event_type: str | None = None) -> None:
        super().__init__(reason, detail, event_type)
        self.reason = reason
        self.detail = detail
        #: The event's type when it is a known type, else None.
        self.event_type = event_type

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def decode_event(
    raw: bytes,
    *,
    max_bytes: int = 65536,
    expected_family: str | None = None,
    now: float | None = None,
    max_future_skew: float = 300.0,
) -> Envelope:
    """Validate one wire event.

    ``expected_family``: the family of the topic the bytes came from (None: any).
    ``now``: epoch seconds for the future-time check (None: the wall clock).
    """
    if expected_family is not None and expected_family not in FAMILIES:
        raise ValueError(f"unknown family {expected_family!r}; expected one of {FAMILIES}")
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")  # lone surrogates then fail as not_utf8
    elif isinstance(raw, memoryview):
        raw = raw.tobytes()
    if len(raw) > max_bytes:
        raise EventRejected("too_large", f"{len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        event: Envelope = EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        rejected = _classify(raw, exc, expected_family)
    else:
        rejected = None
        if expected_family is not None and event.FAMILY != expected_family:
            rejected = _wrong_topic(event.type, expected_family)
        else:
            limit = (_time.time() if now is None else now) + max_future_skew
            ahead = event.ts - limit
            if ahead > 0:
                rejected = EventRejected(
                    "future_time",
                    f"time: {ahead + max_future_skew:.0f}s ahead of now, "
                    f"allowed skew {max_future_skew:g}s",
                    event.type,
                )
    if rejected is not None:
        # Raised outside the except block so the ValidationError (whose text quotes input
        # values) is not attached as __context__ and never reaches a logged traceback.
        raise rejected
    return event


def _wrong_topic(type_str: str, expected_family: str) -> EventRejected:
    return EventRejected(
        "wrong_topic",
        f"type {type_str} belongs to family {EVENT_TYPES[type_str].FAMILY}, "
        f"topic carries {expected_family}",
        type_str,
    )


def _classify(raw: bytes, exc: ValidationError, expected_family: str | None) -> EventRejected:
    """Pick the dead-letter reason for a failed fast-path validation (slow path, failures only)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return EventRejected("not_utf8", f"invalid UTF-8 at byte {err.start}")
        return EventRejected("malformed_json", _one_line(first["msg"]))
    if not first["loc"]:
        # Errors at the root come from the tagged union itself: no object, or no usable tag.
        if first["type"] in ("dict_type", "model_type", "model_attributes_type"):
            return EventRejected("not_an_object", "top-level JSON value is not an object")
        if first["type"] == "union_tag_not_found":
            return EventRejected("unknown_type", "type: missing")
        return EventRejected("unknown_type", _unknown_type_detail(raw))
    # The tag was valid: every error is located under it (loc[0] is the type string).
    type_str = str(first["loc"][0])
    if expected_family is not None and EVENT_TYPES[type_str].FAMILY != expected_family:
        return _wrong_topic(type_str, expected_family)
    for err in errors:
        # schemaversion is a strict int with ge=1, le=SUPPORTED: a failed upper bound means newer.
        if err["loc"][1:] == ("schemaversion",) and err["type"] == "less_than_equal":
            return EventRejected(
                "unsupported_version",
                f"schemaversion: newer than the supported version {SUPPORTED_SCHEMAVERSION}",
                type_str,
            )
    if any(err["type"] == "subject_mismatch" for err in errors):
        msg = next(e["msg"] for e in errors if e["type"] == "subject_mismatch")
        return EventRejected("subject_mismatch", f"subject: {msg}", type_str)
    return EventRejected("invalid", _describe(errors), type_str)


def _unknown_type_detail(raw: bytes) -> str:
    # Only reached for a present but unknown tag; re-parse just to name it if it looks harmless.
    try:
        import json

        value: Any = json.loads(raw).get("type")
    except Exception:  # noqa: BLE001 - best effort, detail only
        value = None
    if isinstance(value, str) and _SAFE_TOKEN.match(value):
        return f"type: {value!r} is not a known event type"
    if not isinstance(value, str):
        return "type: should be a string"
    return "type: not a known event type"


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = [
        f"{_path(err['loc'][1:])}: {_one_line(err['msg'])}" for err in errors[:_MAX_ERRORS_IN_DETAIL]
    ]
    if len(errors) > _MAX_ERRORS_IN_DETAIL:
        parts.append(f"(+{len(errors) - _MAX_ERRORS_IN_DETAIL} more)")
    detail = "; ".join(parts)
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 3] + "..."


def _path(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "(event)"
    # Keys of unknown (extra) fields are input too; bound their length.
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p)[:64] for p in loc).replace(".[", "[")


def _one_line(msg: str) -> str:
    return " ".join(msg.split())
