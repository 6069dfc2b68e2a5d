"""The dead-letter record layout (docs/events.md, "Dead-letter records"): the original key and
bytes, why and from where in headers. The worker writes it (``worker.ingest``);
``stream-app replay-deadletters`` reads it back."""

from __future__ import annotations

# Header names on dead-lettered messages (values are UTF-8 bytes).
DLQ_REASON = "x-reject-reason"
DLQ_DETAIL = "x-reject-detail"
DLQ_TOPIC = "x-source-topic"
DLQ_PARTITION = "x-source-partition"
DLQ_OFFSET = "x-source-offset"

#: Reasons raised by the worker rather than by ``decode_event`` (whose codes are ``REASONS``).
WORKER_REASONS: dict[str, str] = {
    "key_mismatch": "the Kafka message key differs from the event's subject",
    "processing_error": "processing a valid event raised (a bug, or state it cannot apply to)",
}

#: Reasons whose unchanged bytes may be accepted later: a fixed bug (``processing_error``), a
#: clock that caught up (``future_time``). Every other reason needs a corrected event.
TRANSIENT_REASONS = frozenset({"processing_error", "future_time"})
