"""The ingest agents: one Faust agent per input topic decodes each message, dead-letters what is
not a valid event, and hands valid events to their family's processor.

Dead letters keep the original bytes and say why in headers (docs/events.md, reasons).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import faust

from ..config import Settings
from ..events import EventRejected, decode_event
from .exposition import PipelineMetrics

log = logging.getLogger(__name__)

# Header names on dead-lettered messages (values are UTF-8 bytes).
DLQ_REASON = "x-reject-reason"
DLQ_DETAIL = "x-reject-detail"
DLQ_TOPIC = "x-source-topic"
DLQ_PARTITION = "x-source-partition"
DLQ_OFFSET = "x-source-offset"

# Called with each valid event and the partition it came from.
EventHandler = Callable[[Any, int], Any]


class Ingest:
    """Decode, validate, dead-letter, dispatch: the per-message path of the input topics."""

    def __init__(self, app: faust.App, settings: Settings, pipeline: PipelineMetrics) -> None:
        self.app = app
        self.settings = settings
        self.pipeline = pipeline
        self.deadletter = app.topic(
            settings.topic_deadletter,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )

    def add_agent(self, family: str, topic_name: str, handler: EventHandler | None) -> None:
        topic = self.app.topic(
            topic_name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.settings.topic_partitions,
        )
        ingest_one = self.ingest_one

        async def ingest(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await ingest_one(event, family, topic_name, handler)

        # One agent per topic, concurrency 1: faust #606 commits past in-flight
        # messages with concurrency > 1. Scale with partitions and workers instead.
        self.app.agent(topic, name=f"stream_app.ingest.{family}", concurrency=1)(ingest)

    async def ingest_one(
        self, event: faust.EventT, family: str, topic_name: str, handler: EventHandler | None
    ) -> None:
        now = time.time()
        self.pipeline.observe_consumed(topic_name, now)
        raw = event.value if isinstance(event.value, bytes | bytearray) else b""
        s = self.settings
        try:
            decoded = decode_event(
                bytes(raw),
                max_bytes=s.max_event_bytes,
                expected_family=family,
                now=now,
                max_future_skew=s.max_future_skew_seconds,
            )
            key = event.key
            if key is not None and key != decoded.subject.encode():
                # Events of one entity must share a partition, or per-entity
                # state splits across workers.
                raise EventRejected("key_mismatch", "message key differs from subject")
        except EventRejected as rejected:
            await self.dead_letter(event, topic_name, rejected.reason, rejected.detail)
            return
        self.pipeline.observe_valid(topic_name, decoded.type, decoded.ts, now)
        if handler is None:
            return
        try:
            await handler(decoded, event.message.partition)
        except Exception as exc:  # noqa: BLE001 - a bad event must never stop the worker
            log.exception("processing failed for %s event id=%s", decoded.type, decoded.id)
            await self.dead_letter(event, topic_name, "processing_error", f"{type(exc).__name__} while processing")

    async def dead_letter(self, event: faust.EventT, topic_name: str, reason: str, detail: str) -> None:
        self.pipeline.invalid.labels(topic_name, reason).inc()
        msg = event.message
        headers = [
            (DLQ_REASON, reason.encode()),
            (DLQ_DETAIL, detail.encode()),
            (DLQ_TOPIC, topic_name.encode()),
            (DLQ_PARTITION, str(msg.partition).encode()),
            (DLQ_OFFSET, str(msg.offset).encode()),
        ]
        raw = event.value if isinstance(event.value, bytes | bytearray) else None
        await self.deadletter.send(key=event.key, value=raw, headers=headers)
        self.pipeline.deadlettered.labels(topic_name, reason).inc()
        log.info("dead-lettered %s[%s]@%s: %s (%s)", topic_name, msg.partition, msg.offset, reason, detail)
