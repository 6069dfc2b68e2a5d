"""Producer helper for upstream teams: build contract events, validate them, send them to Kafka.

Two clients with the same methods, one blocking and one asyncio::

    from stream_app.client import EventClient, AsyncEventClient, EventRejected

    with EventClient(source="helpdesk.example.com", bootstrap="kafka:9092") as client:
        delivery = client.ticket_created(
            ticket_id="T-1", account_id="A-1", requester_id="U-1",
            channel="email", priority="high", team="billing",
        )

    async with AsyncEventClient(source="billing.example.com") as client:
        await client.subscription_payment(account_id="A-1", payment_id="P-9",
                                          amount_minor=4900, currency="EUR", status="succeeded")

Every event is built as wire JSON and checked with the consumers' own decoder
(``stream_app.events.decode_event``) *before* anything is sent: an invalid event raises
``EventRejected`` (``.reason`` code, ``.detail`` naming field paths) and nothing reaches Kafka.
The client fills in the envelope (``id`` = uuid4, ``time`` = now in UTC unless given,
``source``, ``subject`` = the family's id field, ``schemaversion``), sends to the family's topic
(``Settings.input_topics()``) with key = subject, acks=all and the idempotent producer, and
returns a ``Delivery`` once the broker has acknowledged. See docs/producing.md.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from aiokafka import AIOKafkaProducer

from .config import Settings, get_settings
from .events import (
    EVENT_TYPES,
    SUBJECT_FIELDS,
    SUPPORTED_SCHEMAVERSION,
    Event,
    EventRejected,
    decode_event,
)

__all__ = [
    "AsyncEventClient",
    "Delivery",
    "DeliveryError",
    "EventClient",
    "EventRejected",
    "OutgoingEvent",
    "build_event",
]

# Envelope attributes the client owns; extensions may not override them.
_ENVELOPE_KEYS = frozenset(
    {"specversion", "id", "source", "type", "time", "subject", "schemaversion", "data"}
)


@dataclass(frozen=True)
class OutgoingEvent:
    """A validated event and the exact bytes that will be sent (what consumers will decode)."""

    event: Event
    value: bytes

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def family(self) -> str:
        return self.event.family

    @property
    def key(self) -> bytes:
        return self.event.subject.encode()


@dataclass(frozen=True)
class Delivery:
    """Where the broker stored an event (after acks from all in-sync replicas)."""

    id: str
    type: str
    topic: str
    partition: int
    offset: int
    key: str
    timestamp_ms: int | None


class DeliveryError(Exception):
    """Kafka did not acknowledge some events. ``failed``: [(index, event id, exception)];
    ``delivered``: the Delivery of each event that did get through (None where it failed).
    Re-sending the failed events (same ids) is safe: consumers count an id once."""

    def __init__(
        self, failed: list[tuple[int, str, BaseException]], delivered: list[Delivery | None]
    ) -> None:
        first = failed[0]
        super().__init__(
            f"{len(failed)} of {len(delivered)} event(s) not delivered; first: id={first[1]} "
            f"{type(first[2]).__name__}: {first[2]}"
        )
        self.failed = failed
        self.delivered = delivered


def _json_default(value: Any) -> Any:
    # Naive datetimes serialise without an offset and are then rejected by the contract.
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def build_event(
    type: str,  # noqa: A002 - the envelope attribute's name
    data: Mapping[str, Any] | None = None,
    *,
    source: str,
    id: str | None = None,  # noqa: A002
    time: datetime | str | None = None,
    subject: str | None = None,
    schemaversion: int = SUPPORTED_SCHEMAVERSION,
    extensions: Mapping[str, Any] | None = None,
    max_bytes: int = 65536,
    max_future_skew: float = 300.0,
    **fields: Any,
) -> OutgoingEvent:
    """Build and validate one event; raises ``EventRejected`` (nothing is sent anywhere).

    ``data`` and ``fields`` together are the event's data fields. ``time``: an aware
    ``datetime`` or an RFC 3339 string with offset (default: now, UTC). ``subject`` defaults
    to the family's id field (``ticket_id``, ``user_id``, ``account_id``, ``response_id``).
    ``extensions``: extra CloudEvents attributes such as ``traceparent``.
    """
    model = EVENT_TYPES.get(type)  # unknown: decode_event below rejects it as unknown_type
    payload = dict(data or {})
    overlap = payload.keys() & fields.keys()
    if overlap:
        raise TypeError(f"data field(s) given twice: {', '.join(sorted(overlap))}")
    payload.update(fields)
    if subject is None and model is not None:
        subject = payload.get(SUBJECT_FIELDS[model.FAMILY])
    if time is None:
        time = datetime.now(timezone.utc)
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": id if id is not None else str(uuid.uuid4()),
        "source": source,
        "type": type,
        "time": time,
        "subject": subject,
        "schemaversion": schemaversion,
        "data": payload,
    }
    for name, value in (extensions or {}).items():
        if name in _ENVELOPE_KEYS:
            raise TypeError(f"extension {name!r} would override an envelope attribute")
        envelope[name] = value
    try:
        value = json.dumps(envelope, default=_json_default, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise EventRejected("invalid", f"not JSON serialisable: {exc}") from None
    # The consumers' decoder, so the client rejects exactly what a worker would dead-letter.
    event = decode_event(value, max_bytes=max_bytes, max_future_skew=max_future_skew)
    return OutgoingEvent(event, value)


def _type_method_name(event_type: str) -> str:
    return event_type.replace(".", "_")


def _fields_doc(event_type: str) -> str:
    data_model = EVENT_TYPES[event_type].model_fields["data"].annotation
    parts = []
    for name, field in data_model.model_fields.items():
        parts.append(name if field.is_required() else f"{name}={field.default!r}")
    return ", ".join(parts)


class AsyncEventClient:
    """asyncio client: ``async with AsyncEventClient(source=...) as c: await c.send(...)``.

    ``bootstrap`` and ``topics`` default to ``settings`` (``get_settings()``, i.e. the
    ``STREAM_APP_*`` environment); so do the size and future-skew limits used for validation.
    Extra keyword arguments go to ``aiokafka.AIOKafkaProducer``.
    """

    def __init__(
        self,
        *,
        source: str,
        bootstrap: str | None = None,
        topics: Mapping[str, str] | None = None,
        settings: Settings | None = None,
        client_id: str = "stream-app-client",
        linger_ms: int = 5,
        request_timeout_ms: int = 30000,
        **producer_kwargs: Any,
    ) -> None:
        s = settings or get_settings()
        self.source = source
        self.topics = dict(topics or s.input_topics())
        self.max_bytes = s.max_event_bytes
        self.max_future_skew = s.max_future_skew_seconds
        self._kwargs = dict(
            bootstrap_servers=bootstrap or s.kafka_bootstrap,
            client_id=client_id,
            # acks from all in-sync replicas; idempotence keeps the producer's own retries
            # from writing duplicates or reordering a key's events.
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            request_timeout_ms=request_timeout_ms,
            **producer_kwargs,
        )
        self._producer: AIOKafkaProducer | None = None
        self._closed = False

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("client is closed")
        if self._producer is None:
            producer = AIOKafkaProducer(**self._kwargs)
            await producer.start()
            self._producer = producer

    async def close(self) -> None:
        """Wait for everything in flight, then disconnect. Idempotent."""
        self._closed = True
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()  # flushes pending batches first

    async def flush(self) -> None:
        if self._producer is not None:
            await self._producer.flush()

    async def __aenter__(self) -> AsyncEventClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def build(self, type_or_event: str | Event | OutgoingEvent, data=None, **kwargs: Any) -> OutgoingEvent:  # noqa: ANN001
        """Validate without sending: a type string plus fields, an event model, or an OutgoingEvent."""
        if isinstance(type_or_event, OutgoingEvent):
            return type_or_event
        if isinstance(type_or_event, Event):
            if data is not None or kwargs:
                raise TypeError("fields cannot be combined with an event model")
            # Re-checked as wire bytes: a model built elsewhere may be over the size limit.
            raw = type_or_event.model_dump_json().encode()
            event = decode_event(raw, max_bytes=self.max_bytes, max_future_skew=self.max_future_skew)
            return OutgoingEvent(event, raw)
        kwargs.setdefault("source", self.source)
        return build_event(
            type_or_event,
            data,
            max_bytes=self.max_bytes,
            max_future_skew=self.max_future_skew,
            **kwargs,
        )

    async def _enqueue(self, out: OutgoingEvent) -> asyncio.Future:
        assert self._producer is not None
        return await self._producer.send(self.topics[out.family], value=out.value, key=out.key)

    @staticmethod
    def _delivery(out: OutgoingEvent, meta: Any) -> Delivery:
        return Delivery(
            id=out.id,
            type=out.type,
            topic=meta.topic,
            partition=meta.partition,
            offset=meta.offset,
            key=out.event.subject,
            timestamp_ms=meta.timestamp if meta.timestamp != -1 else None,
        )

    async def send(self, type_or_event: str | Event | OutgoingEvent, data=None, **kwargs: Any) -> Delivery:  # noqa: ANN001
        """Validate, send and wait for the broker's acknowledgement.

        Raises ``EventRejected`` before sending if the event is invalid, ``DeliveryError``
        if Kafka did not acknowledge it (retrying with the same event is safe).
        """
        out = self.build(type_or_event, data, **kwargs)
        return (await self.send_many([out]))[0]

    async def send_many(self, events: Iterable[str | Event | OutgoingEvent]) -> list[Delivery]:
        """Validate all, then send all pipelined and wait for every acknowledgement.

        Validation is all-or-nothing: one invalid event raises ``EventRejected`` (its message
        names the index) before any is sent. Per-key order is kept (same partition, one producer).
        """
        outs = []
        for index, item in enumerate(events):
            try:
                outs.append(self.build(item))
            except EventRejected as exc:
                raise EventRejected(exc.reason, f"event [{index}]: {exc.detail}", exc.event_type) from None
        if self._producer is None:
            raise RuntimeError("client is not started (use 'async with' or await start())")
        pending: list[asyncio.Future] = []
        for out in outs:
            try:
                pending.append(await self._enqueue(out))
            except Exception as exc:  # noqa: BLE001 - e.g. no metadata in time: this one failed
                fut = asyncio.get_running_loop().create_future()
                fut.set_exception(exc)
                pending.append(fut)
        results = await asyncio.gather(*pending, return_exceptions=True)
        delivered: list[Delivery | None] = []
        failed: list[tuple[int, str, BaseException]] = []
        for index, (out, result) in enumerate(zip(outs, results, strict=True)):
            if isinstance(result, BaseException):
                failed.append((index, out.id, result))
                delivered.append(None)
            else:
                delivered.append(self._delivery(out, result))
        if failed:
            raise DeliveryError(failed, delivered)
        return delivered  # type: ignore[return-value]


class EventClient:
    """Blocking client: the same API as ``AsyncEventClient``, for code without an event loop.

    It runs an ``AsyncEventClient`` on a private event loop in a daemon thread; every call
    blocks until the broker acknowledged (or ``timeout`` seconds passed). Thread-safe.
    Call ``close()`` (or use ``with``) to flush and stop the thread.
    """

    def __init__(self, *, source: str, timeout: float = 60.0, **kwargs: Any) -> None:
        self.timeout = timeout
        self._client = AsyncEventClient(source=source, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="stream-app-client", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._client.start())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def source(self) -> str:
        return self._client.source

    @property
    def topics(self) -> dict[str, str]:
        return self._client.topics

    def _call(self, coro: Any) -> Any:
        if not self._thread.is_alive():
            coro.close()
            raise RuntimeError("client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    def build(self, type_or_event: str | Event | OutgoingEvent, data=None, **kwargs: Any) -> OutgoingEvent:  # noqa: ANN001
        return self._client.build(type_or_event, data, **kwargs)

    def send(self, type_or_event: str | Event | OutgoingEvent, data=None, **kwargs: Any) -> Delivery:  # noqa: ANN001
        # Validate in the caller's thread so an invalid event raises without touching the loop.
        out = self.build(type_or_event, data, **kwargs)
        return self._call(self._client.send_many([out]))[0]

    def send_many(self, events: Iterable[str | Event | OutgoingEvent]) -> list[Delivery]:
        outs = []
        for index, item in enumerate(events):
            try:
                outs.append(self.build(item))
            except EventRejected as exc:
                raise EventRejected(exc.reason, f"event [{index}]: {exc.detail}", exc.event_type) from None
        return self._call(self._client.send_many(outs))

    def flush(self) -> None:
        self._call(self._client.flush())

    def close(self) -> None:
        """Flush, disconnect and stop the background thread. Idempotent."""
        if not self._thread.is_alive():
            return
        try:
            self._call(self._client.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> EventClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _add_type_methods() -> None:
    """One convenience method per event type: ``client.ticket_created(ticket_id=..., ...)``."""
    for event_type in EVENT_TYPES:
        name = _type_method_name(event_type)
        doc = (
            f"Send a ``{event_type}`` event and wait for the acknowledgement; returns a Delivery.\n\n"
            f"Data fields: {_fields_doc(event_type)}.\n"
            "Envelope keywords: id, time, subject, schemaversion, extensions, source."
        )

        def make_async(t: str = event_type):
            async def method(self: AsyncEventClient, data: Mapping[str, Any] | None = None, **kwargs: Any) -> Delivery:
                return await self.send(t, data, **kwargs)

            return method

        def make_sync(t: str = event_type):
            def method(self: EventClient, data: Mapping[str, Any] | None = None, **kwargs: Any) -> Delivery:
                return self.send(t, data, **kwargs)

            return method

        for cls, method in ((AsyncEventClient, make_async()), (EventClient, make_sync())):
            method.__name__ = method.__qualname__ = name
            method.__doc__ = doc
            setattr(cls, name, method)


_add_type_methods()
