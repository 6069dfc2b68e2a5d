"""The ingest agents: one Faust agent per input topic decodes each message, dead-letters what is
not a valid event, and hands valid events to their family's processor (``processing``).

Dead letters keep the original bytes and say why in headers (docs/events.md, reasons).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import faust
from faust.types import TP

from ..config import Settings
from ..events import EventRejected, decode_event
from ..events.deadletter import DLQ_DETAIL, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC
from .exposition import PipelineMetrics
from .offsets import LogStartError, OffsetAudit
from .processing import PartitionNotHeld

log = logging.getLogger(__name__)


class Ingest:
    """Decode, validate, dead-letter, dispatch: the per-message path of the input topics.

    Agents take messages in batches (``stream.take_events``): one batch's valid events are
    applied synchronously, so Faust's per-message machinery is the only cost per event besides
    decoding and the engine step. A batch waits while an assignment loads and rebuilds
    (``processing``), and events of partitions this worker no longer holds (read before a
    rebalance) are left to their new owner.
    """

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        pipeline: PipelineMetrics,
        processing: asyncio.Event,
        offsets: OffsetAudit | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.pipeline = pipeline
        self.processing = processing
        self.offsets = offsets
        self.not_held = 0  # events of partitions moved away before they were processed
        self.deadletter = app.topic(
            settings.topic_deadletter,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )

    def add_agent(self, family: str, topic_name: str, processor: Any | None) -> None:
        topic = self.app.topic(
            topic_name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.settings.topic_partitions,
        )
        ingest_batch = self.ingest_batch
        size, within = self.settings.ingest_batch_max, self.settings.ingest_batch_seconds

        async def ingest(stream: faust.StreamT) -> None:
            async for events in stream.take_events(size, within=within):
                await ingest_batch(events, family, topic_name, processor)

        # One agent per topic, concurrency 1: faust #606 commits past in-flight
        # messages with concurrency > 1. Scale with partitions and workers instead.
        self.app.agent(topic, name=f"stream_app.ingest.{family}", concurrency=1)(ingest)

    async def ingest_batch(
        self, events: Sequence[faust.EventT], family: str, topic_name: str, processor: Any | None
    ) -> None:
        if not self.processing.is_set():
            await self.processing.wait()
        await self.audit_batch(events, topic_name)
        now = time.time()
        s = self.settings
        pipeline = self.pipeline
        pipeline.observe_consumed(topic_name, now, len(events))
        types: dict[str, int] = {}
        delays: list[float] = []
        newest = 0.0
        for event in events:
            raw = event.value if isinstance(event.value, bytes | bytearray) else b""
            try:
                decoded = decode_event(
                    bytes(raw),
                    max_bytes=s.max_event_bytes,
                    expected_family=family,
                    now=now,
                    max_future_skew=s.max_future_skew_seconds,
                )
                key = event.key
                if key is None:
                    # The key picks the partition; without it one entity's events scatter.
                    raise EventRejected("key_mismatch", "message has no key; the key must be the subject")
                if key != decoded.subject.encode():
                    # Events of one entity must share a partition, or per-entity
                    # state splits across workers.
                    raise EventRejected("key_mismatch", "message key differs from subject")
            except EventRejected as rejected:
                await self.dead_letter(event, topic_name, rejected.reason, rejected.detail)
                continue
            types[decoded.type] = types.get(decoded.type, 0) + 1
            ts = decoded.ts
            delays.append(now - ts if now > ts else 0.0)
            if ts > newest:
                newest = ts
            if processor is None:
                continue
            msg = event.message
            if not processor.holds(msg.partition):
                self.not_held += 1
                continue
            try:
                processor.process(decoded, msg.partition, msg.offset)
            except PartitionNotHeld:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad event must never stop the worker
                log.exception("processing failed for %s event id=%s", decoded.type, decoded.id)
                await self.dead_letter(event, topic_name, "processing_error", f"{type(exc).__name__} while processing")
        if types:
            pipeline.observe_valid_batch(topic_name, types, newest, delays)

    async def audit_batch(self, events: Sequence[faust.EventT], topic_name: str) -> None:
        """Every offset of a batch handed to an agent: a gap in a partition's offsets that
        retention caused is counted and logged before anything after it is applied
        (``offsets.OffsetAudit``); with the debug log on, the offsets are recorded."""
        audit = self.offsets
        if audit is None:
            return
        by_partition: dict[int, list[int]] = {}
        for event in events:
            msg = event.message
            gap = audit.observe(topic_name, msg.partition, msg.offset)
            if gap is not None:
                try:
                    await audit.check_gap(TP(topic_name, msg.partition), *gap)
                except LogStartError as exc:  # STREAM_APP_LOG_START_POLICY=fail: the worker stops
                    await self.app.crash(exc)
                    raise
            by_partition.setdefault(msg.partition, []).append(msg.offset)
        for partition, offsets in by_partition.items():
            audit.record(topic_name, partition, offsets)
        audit.flush()

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
