"""``stream-app replay-deadletters``: send dead-lettered events back to their input topic.

Dead letters (docs/events.md, "Dead-letter records") keep the original key and bytes and say why
and from where in headers. This command reads the dead-letter topic up to its end now, selects
records by reason, dead-lettering time and source topic, and re-produces each selected one to the
topic it came from:

- with a correction from ``--corrections FILE`` (JSON lines, the format ``--export`` writes with
  the ``event`` field fixed by hand), the corrected event;
- without one, for a transient reason (``TRANSIENT_REASONS``: a fixed bug, a clock that caught
  up), the original bytes unchanged;
- otherwise it is left where it is and counted as "no correction".

Every event sent keeps its original ``id`` and is keyed by its subject, so it lands on its
entity's partition and a second replay is a duplicate the engine ignores. Nothing is sent that
would be dead-lettered again: each event is decoded as the worker will decode it first.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..events import REASONS, EventRejected, decode_event
from ..events.deadletter import (
    DLQ_DETAIL,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TOPIC,
    TRANSIENT_REASONS,
    WORKER_REASONS,
)

ALL_REASONS = frozenset(REASONS) | frozenset(WORKER_REASONS)

# Exit codes of the command (stream_app.cli.replay, its --help).
OK = 0  # everything selected was replayed (or would be, with --dry-run), or nothing was selected
FAILED = 1  # Kafka unreachable or a send failed
USAGE = 2  # bad option, unusable corrections file or settings
LEFT_OVER = 3  # some selected dead letters were not replayed (no correction, or still invalid)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ReplayUsageError(ValueError):
    """An option or a corrections file that cannot be used (exit 2)."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic."""

    partition: int  # where it is in the dead-letter topic
    offset: int
    timestamp: float  # when it was dead-lettered (the record's Kafka timestamp), epoch seconds
    reason: str
    detail: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    key: bytes | None
    value: bytes | None

    @classmethod
    def from_record(
        cls,
        partition: int,
        offset: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]],
    ) -> DeadLetter:
        h = {name: (v or b"").decode("utf-8", "replace") for name, v in headers}
        return cls(
            partition=partition,
            offset=offset,
            timestamp=timestamp_ms / 1000.0,
            reason=h.get(DLQ_REASON, ""),
            detail=h.get(DLQ_DETAIL, ""),
            source_topic=h.get(DLQ_TOPIC, ""),
            source_partition=_int_or_none(h.get(DLQ_PARTITION)),
            source_offset=_int_or_none(h.get(DLQ_OFFSET)),
            key=key,
            value=value,
        )

    @property
    def position(self) -> tuple[int, int]:
        return (self.partition, self.offset)

    @property
    def source(self) -> tuple[str, int | None, int | None]:
        """The input message it came from (a redelivered message may be dead-lettered twice)."""
        return (self.source_topic, self.source_partition, self.source_offset)

    def original(self) -> dict | None:
        """The value as a JSON object, or None when it is not one."""
        try:
            obj = json.loads(self.value or b"")
        except (ValueError, UnicodeDecodeError):
            return None
        return obj if isinstance(obj, dict) else None

    @property
    def event_id(self) -> str | None:
        obj = self.original()
        eid = obj.get("id") if obj is not None else None
        return eid if isinstance(eid, str) and eid else None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def export_line(dl: DeadLetter) -> dict:
    """A dead letter as one line of ``--export``: fix ``event`` and pass the file back as
    ``--corrections``. ``event`` is the original JSON object, or null when the bytes are not one
    (then ``value`` holds them as text, or ``value_base64`` when they are not UTF-8)."""
    line: dict[str, Any] = {
        "deadletter": {"partition": dl.partition, "offset": dl.offset},
        "dead_lettered_at": iso(dl.timestamp),
        "reason": dl.reason,
        "detail": dl.detail,
        "source": {"topic": dl.source_topic, "partition": dl.source_partition, "offset": dl.source_offset},
        "key": None if dl.key is None else dl.key.decode("utf-8", "replace"),
        "id": dl.event_id,
        "event": dl.original(),
    }
    if line["event"] is None and dl.value is not None:
        try:
            line["value"] = dl.value.decode("utf-8")
        except UnicodeDecodeError:
            line["value_base64"] = base64.b64encode(dl.value).decode()
    return line


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- selection


def parse_time(text: str, now: float) -> float:
    """RFC 3339 with an offset (``2026-12-05T18:00:00Z``) or a duration before ``now``
    (``90s``, ``15m``, ``2h``, ``3d``); epoch seconds."""
    m = _DURATION.match(text.strip())
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReplayUsageError(f"not a time: {text!r} (RFC 3339 with offset, or a duration like 2h)") from None
    if parsed.tzinfo is None:
        raise ReplayUsageError(f"time without an offset: {text!r} (add Z or +01:00)")
    return parsed.timestamp()


@dataclass(frozen=True)
class Selection:
    """Which dead letters to act on; None = no restriction."""

    reasons: frozenset[str] | None = None
    since: float | None = None  # dead-lettered at or after
    until: float | None = None  # dead-lettered before
    topics: frozenset[str] | None = None  # source topics

    def matches(self, dl: DeadLetter) -> bool:
        return (
            (self.reasons is None or dl.reason in self.reasons)
            and (self.since is None or dl.timestamp >= self.since)
            and (self.until is None or dl.timestamp < self.until)
            and (self.topics is None or dl.source_topic in self.topics)
        )


def selection_of(reasons: Sequence[str], since: str | None, until: str | None, topics: Sequence[str],
                 now: float) -> Selection:  # fmt: skip
    unknown = sorted(set(reasons) - ALL_REASONS)
    if unknown:
        raise ReplayUsageError(f"unknown reason(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_REASONS))}")
    sel = Selection(
        reasons=frozenset(reasons) or None,
        since=parse_time(since, now) if since else None,
        until=parse_time(until, now) if until else None,
        topics=frozenset(topics) or None,
    )
    if sel.since is not None and sel.until is not None and sel.since >= sel.until:
        raise ReplayUsageError("--since must be before --until")
    return sel


# --------------------------------------------------------------------------- corrections


@dataclass(frozen=True)
class Corrections:
    """Corrected events by dead-letter position, and by original event id."""

    by_position: Mapping[tuple[int, int], dict] = field(default_factory=dict)
    by_id: Mapping[str, dict] = field(default_factory=dict)
    lines: int = 0

    def for_(self, dl: DeadLetter) -> dict | None:
        found = self.by_position.get(dl.position)
        if found is None and dl.event_id is not None:
            found = self.by_id.get(dl.event_id)
        return found


def load_corrections(lines: Iterable[str]) -> Corrections:
    """Parse a corrections file: JSON lines, each an object with ``event`` (the corrected event)
    and ``deadletter`` ({partition, offset}, as ``--export`` writes) or ``id`` (the original
    event id). Blank lines are ignored; a line that is neither is an error naming its number."""
    by_position: dict[tuple[int, int], dict] = {}
    by_id: dict[str, dict] = {}
    n = 0
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        n += 1
        try:
            obj = json.loads(text)
        except ValueError:
            raise ReplayUsageError(f"corrections line {number}: not JSON") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("event"), dict):
            raise ReplayUsageError(f"corrections line {number}: needs an 'event' object")
        pos = obj.get("deadletter")
        if isinstance(pos, dict) and isinstance(pos.get("partition"), int) and isinstance(pos.get("offset"), int):
            by_position[(pos["partition"], pos["offset"])] = obj["event"]
        elif isinstance(obj.get("id"), str) and obj["id"]:
            by_id[obj["id"]] = obj["event"]
        else:
            raise ReplayUsageError(f"corrections line {number}: needs 'deadletter' {{partition, offset}} or 'id'")
    return Corrections(by_position, by_id, n)


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Step:
    """What happens to one selected dead letter."""

    dead_letter: DeadLetter
    action: str  # "corrected" | "as_is" | "no_correction" | "still_invalid" | "repeat"
    why: str = ""
    topic: str = ""
    key: bytes | None = None
    value: bytes | None = None

    @property
    def sends(self) -> bool:
        return self.action in ("corrected", "as_is")


def plan(
    selected: Iterable[DeadLetter],
    corrections: Corrections,
    families: Mapping[str, str],
    *,
    now: float,
    max_bytes: int,
    max_future_skew: float,
) -> list[Step]:
    """One step per selected dead letter, in dead-letter order. ``families`` maps input topic ->
    event family (what the worker expects on it). Each event to send is decoded first, exactly
    as the worker will; the key is its subject and its id the original one."""
    steps: list[Step] = []
    seen_sources: set[tuple] = set()
    for dl in selected:
        if dl.source in seen_sources:  # the same input message dead-lettered again after a redelivery
            steps.append(Step(dl, "repeat", "same source message as an earlier dead letter"))
            continue
        seen_sources.add(dl.source)
        family = families.get(dl.source_topic)
        if family is None:
            steps.append(Step(dl, "still_invalid", f"source topic {dl.source_topic!r} is not an input topic"))
            continue
        corrected = corrections.for_(dl)
        if corrected is not None:
            value = json.dumps(corrected, separators=(",", ":"), ensure_ascii=False).encode()
            action = "corrected"
        elif dl.reason in TRANSIENT_REASONS and dl.value is not None:
            value, action = dl.value, "as_is"
        else:
            steps.append(Step(dl, "no_correction", f"reason {dl.reason} needs a corrected event"))
            continue
        try:
            event = decode_event(value, max_bytes=max_bytes, expected_family=family, now=now,
                                 max_future_skew=max_future_skew)  # fmt: skip
        except EventRejected as rejected:
            steps.append(Step(dl, "still_invalid", f"{rejected.reason}: {rejected.detail}"))
            continue
        original_id = dl.event_id
        if original_id is not None and event.id != original_id:
            # A new id would make a second replay count twice: the id is what deduplicates.
            steps.append(Step(dl, "still_invalid", "corrected event has a different id than the dead letter"))
            continue
        steps.append(Step(dl, action, topic=dl.source_topic, key=event.subject.encode(), value=value))
    return steps


def summary(steps: Sequence[Step], read: int, *, dry_run: bool) -> str:
    count = {a: sum(s.action == a for s in steps) for a in ("corrected", "as_is", "no_correction", "still_invalid", "repeat")}
    sent = count["corrected"] + count["as_is"]
    verb = "would replay" if dry_run else "replayed"
    return (
        f"replay-deadletters: {read} dead letters read, {len(steps)} selected; {verb} {sent} "
        f"({count['corrected']} corrected, {count['as_is']} as they were); left {count['no_correction'] + count['still_invalid']} "
        f"({count['no_correction']} without a correction, {count['still_invalid']} still invalid); "
        f"{count['repeat']} repeated dead letters of the same message"
    )


def exit_code_of(steps: Sequence[Step]) -> int:
    return LEFT_OVER if any(s.action in ("no_correction", "still_invalid") for s in steps) else OK


# --------------------------------------------------------------------------- Kafka


async def read_deadletters(bootstrap: str, topic: str, *, since: float | None = None,
                           **client_kwargs: Any) -> list[DeadLetter]:  # fmt: skip
    """Every record of the dead-letter topic up to its end offsets now (from ``since`` on, by
    record timestamp, when given). No consumer group: nothing is committed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from aiokafka.admin import AIOKafkaAdminClient

    from ..kafka.lag import partition_numbers

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs)
    await admin.start()
    try:
        numbers = (await partition_numbers(admin, [topic])).get(topic, [])
    finally:
        await admin.close()
    if not numbers:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_kwargs)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in parts})
            starts = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in parts}
        for tp in parts:
            consumer.seek(tp, starts[tp])
        out: list[DeadLetter] = []
        pending = {tp for tp in parts if ends[tp] > starts[tp]}
        while pending:
            for tp, msgs in (await consumer.getmany(*pending, timeout_ms=1000)).items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        out.append(DeadLetter.from_record(tp.partition, m.offset, m.timestamp, m.key, m.value, m.headers))
                if msgs and msgs[-1].offset >= ends[tp] - 1:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    out.sort(key=lambda d: (d.timestamp, d.partition, d.offset))
    return out


async def send(bootstrap: str, steps: Sequence[Step], **client_kwargs: Any) -> int:
    """Produce every sending step (acks=all, idempotent); returns how many the broker acknowledged."""
    from .producer import EventProducer

    async with EventProducer(bootstrap, {}, client_id="stream-app-replay", **client_kwargs) as producer:
        for s in steps:
            if s.sends:
                await producer.send_raw(s.topic, s.key, s.value)
    return producer.acked
