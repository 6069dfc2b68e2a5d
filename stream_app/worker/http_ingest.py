"""HTTP ingest: ``POST /events`` on the worker's web server, for apps that cannot speak Kafka.

The body is one JSON event, a JSON array of events, or NDJSON (``Content-Type:
application/x-ndjson``). Each event is checked with the consumers' decoder (``decode_event``);
valid ones are written, byte for byte, to their family's topic with key = subject, and the
answer waits for the broker's acknowledgement. Invalid ones are refused at the door: they get a
per-event reason in the answer and never reach Kafka (so never the dead-letter topic). The
worker's ingest agents then consume the accepted events like any other. An accepted event older
than every window of its family (plus grace) carries a ``warning``: it is stored, but no
windowed metric will count it (usually a wrong or copied time).

Pure request parsing (``parse_body``, ``content_length_error``, ``http_status``,
``too_old_warning``) is separate from the aiohttp/Faust shell (``HttpIngest``) so it can be unit
tested without a server. See docs/producing.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from ..events import EventRejected, decode_event
from .api_guard import ApiGuard

log = logging.getLogger(__name__)

PATH = "/events"
NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
    }
)
# Only media types a browser cannot send cross-site without a CORS preflight (so no text/plain,
# form types or a missing type): a web page must not be able to post events to a worker.
JSON_TYPES = frozenset({"application/json"})
# Marks messages that came in over HTTP (provenance when reading a topic).
INGEST_HEADER = ("x-ingested-via", b"http")
# Per-event reason when Kafka did not acknowledge a valid event (safe to retry: same id).
NOT_DELIVERED = "not_delivered"


class IngestError(Exception):
    """A request-level refusal: HTTP status, short reason code and a readable detail."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(status, reason, detail)
        self.status, self.reason, self.detail = status, reason, detail

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, "detail": self.detail}


# --------------------------------------------------------------------------- pure parts


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def content_length_error(content_length: str | None, max_bytes: int) -> IngestError | None:
    """413 from the Content-Length header alone, before reading any of the body."""
    if content_length is None:
        return None
    try:
        length = int(content_length)
    except ValueError:
        return IngestError(400, "bad_request", "Content-Length is not an integer")
    if length > max_bytes:
        return IngestError(413, "too_large", f"request body of {length} bytes exceeds {max_bytes}")
    return None


def parse_body(body: bytes, content_type: str | None, max_events: int) -> list[bytes]:
    """Split a request body into the raw bytes of each event, unchanged.

    NDJSON: one event per non-blank line. JSON: an array (each element's exact source text)
    or anything else as a single event, which ``decode_event`` then judges. Raises
    IngestError for what cannot be split: unknown media type, a broken array, no events, too many.
    """
    kind = media_type(content_type)
    if kind in NDJSON_TYPES:
        items = [line for line in (raw.rstrip(b"\r") for raw in body.split(b"\n")) if line.strip()]
        if len(items) > max_events:
            raise _too_many(len(items), max_events)
    elif kind in JSON_TYPES or kind.endswith("+json"):
        if body.lstrip()[:1] == b"[":
            items = _split_array(body, max_events)
        elif body.strip():
            items = [body]
        else:
            items = []
    else:
        raise IngestError(
            415,
            "unsupported_media_type",
            "set Content-Type: application/json (an event or an array of events) "
            "or application/x-ndjson (one event per line)",
        )
    if not items:
        raise IngestError(400, "no_events", "the request holds no events")
    return items


def _too_many(count: int | str, max_events: int) -> IngestError:
    return IngestError(413, "too_many_events", f"{count} events exceed the limit of {max_events} per request")


def _split_array(body: bytes, max_events: int) -> list[bytes]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise IngestError(400, "not_utf8", f"invalid UTF-8 at byte {err.start}") from None
    decoder = json.JSONDecoder()
    ws = " \t\r\n"
    pos = len(text) - len(text.lstrip(ws)) + 1  # just past '['
    items: list[bytes] = []

    def skip(i: int) -> int:
        while i < len(text) and text[i] in ws:
            i += 1
        return i

    pos = skip(pos)
    if text[pos : pos + 1] == "]":
        pos += 1
    else:
        while True:
            try:
                _, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as err:
                raise IngestError(400, "malformed_json", f"JSON array: {err.msg} at character {err.pos}") from None
            # The element's own source text: what the client sent is what Kafka gets.
            items.append(text[pos:end].encode("utf-8"))
            if len(items) > max_events:
                raise _too_many(f"more than {max_events}", max_events)
            pos = skip(end)
            sep = text[pos : pos + 1]
            pos = skip(pos + 1)
            if sep == "]":
                break
            if sep != ",":
                raise IngestError(400, "malformed_json", f"JSON array: expected ',' or ']' at character {pos}")
    if skip(pos) != len(text):
        raise IngestError(400, "malformed_json", "extra data after the JSON array")
    return items


def event_id_hint(raw: bytes) -> str | None:
    """The id of a rejected event, if it has a plausible one, so the caller can match results."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    ident = value.get("id") if isinstance(value, dict) else None
    return ident if isinstance(ident, str) and 0 < len(ident) <= 128 else None


def http_status(results: list[dict[str, Any]]) -> int:
    """200 all accepted, 207 mixed, 400 all refused as invalid, 503 none accepted but some
    valid ones not acknowledged by Kafka (retry those)."""
    accepted = sum(r["status"] == "accepted" for r in results)
    if accepted == len(results):
        return 200
    if accepted:
        return 207
    if any(r["reason"] == NOT_DELIVERED for r in results):
        return 503
    return 400


@dataclass
class Checked:
    """One event after validation: either ``event`` (accepted so far) or a rejection."""

    index: int
    raw: bytes
    event: Any = None
    reason: str | None = None
    detail: str | None = None


def validate_all(
    items: list[bytes], *, max_event_bytes: int, max_future_skew: float, now: float
) -> list[Checked]:
    out = []
    for index, raw in enumerate(items):
        try:
            event = decode_event(raw, max_bytes=max_event_bytes, now=now, max_future_skew=max_future_skew)
        except EventRejected as rejected:
            out.append(Checked(index, raw, reason=rejected.reason, detail=rejected.detail))
        else:
            out.append(Checked(index, raw, event=event))
    return out


def too_old_warning(event: Any, now: float, horizons: dict[str, float]) -> str | None:
    """A warning for an event older than its family's longest window plus grace (the family's
    horizon, seconds): the worker applies it to the entity's state, but every window has already
    let go of its time, so it moves no windowed metric. None for anything newer."""
    horizon = horizons.get(event.family)
    age = now - event.ts
    if horizon is None or age <= horizon:
        return None
    return (
        f"event time is {_days(age)} old, older than every {event.family} window "
        f"({_days(horizon)} with grace): accepted, but no windowed metric will count it; "
        "is the time right?"
    )


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.0f} days" if days >= 1.5 else f"{seconds / 3600:.0f} hours"


def result_of(
    checked: Checked, delivery: Any = None, error: BaseException | None = None, warning: str | None = None
) -> dict[str, Any]:
    if checked.event is None:
        return {
            "index": checked.index,
            "id": event_id_hint(checked.raw),
            "status": "rejected",
            "reason": checked.reason,
            "detail": checked.detail,
        }
    if error is not None:
        return {
            "index": checked.index,
            "id": checked.event.id,
            "status": "rejected",
            "reason": NOT_DELIVERED,
            "detail": f"Kafka did not acknowledge the event ({type(error).__name__}); retry it",
        }
    result = {
        "index": checked.index,
        "id": checked.event.id,
        "status": "accepted",
        "reason": None,
        "detail": None,
        "topic": delivery.topic,
        "partition": delivery.partition,
        "offset": delivery.offset,
    }
    if warning is not None:
        result["warning"] = warning
    return result


# --------------------------------------------------------------------------- shell


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "stream_app_http_ingest_events",
            "Events received on POST /events, by outcome (accepted, rejected) and reason "
            "(a decode_event reason, not_delivered, or none when accepted).",
            ["outcome", "reason"],
            registry=registry,
        )
        self.requests = Counter(
            "stream_app_http_ingest_requests",
            "Requests to POST /events, by HTTP status code.",
            ["code"],
            registry=registry,
        )
        self.events.labels("accepted", "none")
        self.requests.labels("200")


class HttpIngest:
    """Serves ``POST /events`` on a Faust app; writes through the app's own producer (acks=all)."""

    def __init__(
        self,
        app: Any,
        topics: dict[str, str],
        registry: CollectorRegistry,
        *,
        token: str = "",
        rate_limit: float = 0.0,
        rate_burst: int = 20,
        max_request_bytes: int = 1024 * 1024,
        max_events: int = 1000,
        max_event_bytes: int = 65536,
        max_future_skew: float = 300.0,
        ack_timeout: float = 30.0,
        horizons: dict[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.topics = dict(topics)
        self.metrics = IngestMetrics(registry)
        # Rate limit per client address, then the bearer token (same guard as /accounts).
        self.guard = ApiGuard(token, rate_limit, rate_burst)
        self.max_request_bytes = max_request_bytes
        self.max_events = max_events
        self.max_event_bytes = max_event_bytes
        self.max_future_skew = max_future_skew
        self.ack_timeout = ack_timeout
        self.horizons = dict(horizons or {})  # family -> longest window + grace (s)
        self.clock = clock

    @classmethod
    def for_worker(cls, worker: Any) -> HttpIngest | None:
        """Build from a StreamWorker's settings and register the page; None when disabled."""
        s = worker.settings
        if not getattr(s, "http_ingest_enabled", True):
            return None
        token = getattr(s, "ingest_token", "")
        token = token.get_secret_value() if hasattr(token, "get_secret_value") else str(token or "")
        ingest = cls(
            worker.app,
            s.input_topics(),
            worker.registry,
            token=token,
            rate_limit=s.api_rate_limit,
            rate_burst=s.api_rate_burst,
            max_request_bytes=getattr(s, "http_ingest_max_bytes", 1024 * 1024),
            max_events=getattr(s, "http_ingest_max_events", 1000),
            max_event_bytes=s.max_event_bytes,
            max_future_skew=s.max_future_skew_seconds,
            horizons=family_horizons(s),
        )
        ingest.register()
        return ingest

    def register(self) -> None:
        import faust

        ingest = self

        class EventsView(faust.web.View):
            async def post(self, request: faust.web.Request) -> faust.web.Response:
                status, body, headers = await ingest.handle(request)
                return self.json(body, status=status, headers=headers)

        self.app.page(PATH, name="http_ingest")(EventsView)

    async def handle(self, request: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        # Before reading anything; the token itself is never logged.
        denied = self.guard.check(request.headers.get("Authorization"), getattr(request, "remote", None))
        if denied is not None:
            self.metrics.requests.labels(str(denied.status)).inc()
            return denied.status, dict(denied.body), dict(denied.headers)
        try:
            status, body, headers = await self._handle(request)
        except IngestError as err:
            headers = {}
            status, body = err.status, err.body()
        self.metrics.requests.labels(str(status)).inc()
        return status, body, headers

    async def _handle(self, request: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        err = content_length_error(request.headers.get("Content-Length"), self.max_request_bytes)
        if err is not None:
            raise err
        body = await self._read_body(request)
        items = parse_body(body, request.headers.get("Content-Type"), self.max_events)
        now = self.clock()
        checked = validate_all(
            items, max_event_bytes=self.max_event_bytes, max_future_skew=self.max_future_skew, now=now
        )
        results = await self._send(checked, now)
        for r in results:
            if r["status"] == "accepted":
                self.metrics.events.labels("accepted", "none").inc()
            else:
                self.metrics.events.labels("rejected", r["reason"]).inc()
        status = http_status(results)
        accepted = sum(r["status"] == "accepted" for r in results)
        body_out = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
        return status, body_out, {}

    async def _read_body(self, request: Any) -> bytes:
        # Chunked bodies have no Content-Length: stop reading one byte past the limit.
        chunks, size = [], 0
        while True:
            chunk = await request.content.read(64 * 1024)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_request_bytes:
                raise IngestError(413, "too_large", f"request body exceeds {self.max_request_bytes} bytes")
            chunks.append(chunk)

    async def _send(self, checked: list[Checked], now: float) -> list[dict[str, Any]]:
        producer = self.app.producer
        futures: dict[int, Any] = {}
        errors: dict[int, BaseException] = {}
        for c in checked:
            if c.event is None:
                continue
            try:
                # Enqueued in request order: per-key order within the request is kept.
                futures[c.index] = await producer.send(
                    self.topics[c.event.family], c.event.subject.encode(), c.raw, None, None, [INGEST_HEADER]
                )
            except Exception as exc:  # noqa: BLE001 - reported per event, never a 500
                errors[c.index] = exc
        deliveries: dict[int, Any] = {}
        if futures:
            # Not cancelled on timeout: the event may still land; the caller retries with the same id.
            await asyncio.wait(futures.values(), timeout=self.ack_timeout)
            for index, fut in futures.items():
                if not fut.done():
                    errors[index] = TimeoutError(f"no acknowledgement within {self.ack_timeout:g}s")
                elif fut.exception() is not None:
                    errors[index] = fut.exception()
                else:
                    deliveries[index] = fut.result()
        results = []
        for c in checked:
            outcome = deliveries.get(c.index)
            if c.index in errors:
                log.warning("HTTP ingest: event id=%s not acknowledged: %r", c.event.id, errors[c.index])
                results.append(result_of(c, error=errors[c.index]))
            else:
                warning = too_old_warning(c.event, now, self.horizons) if c.event is not None else None
                results.append(result_of(c, delivery=outcome, warning=warning))
        return results


def family_horizons(settings: Any) -> dict[str, float]:
    """Event family -> how far back its longest window plus grace reaches (s), from the same
    configuration the engine gets."""
    from .families import label_guard, revenue_config, support_config, usage_config, voice_config

    labels = label_guard(settings)
    return {
        "ticket": support_config(settings, labels).horizon,
        "activity": usage_config(settings, labels).horizon,
        "subscription": revenue_config(settings, labels).horizon,
        "survey": voice_config(settings, labels).horizon,
    }
