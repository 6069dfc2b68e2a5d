"""Where each source partition is read from, checked against what Kafka still has.

Retention may delete the events after a partition's checkpoint: a worker that was down (or lagged)
longer than the topic's retention. aiokafka then answers the first fetch with OffsetOutOfRange and
resets to the earliest offset (``auto_offset_reset``) with one INFO line, and Faust takes the jump
for a gap: the deleted events are missing from the numbers without a trace. The
:class:`OffsetAudit` makes that loud:

* at every assignment (``check_positions``), each position below its partition's log start is
  counted (``stream_app_checkpoint_behind_log_start_total``, and the offsets lost in
  ``stream_app_events_lost_to_retention_total``), logged as an ERROR naming the partition, and
  handled by ``STREAM_APP_LOG_START_POLICY``: ``earliest`` resumes from the log start, ``fail``
  raises :class:`LogStartError` (the worker stops);
* while reading (``observe``), an offset beyond the next expected one is a gap: when the log
  start has moved past the gap's first offset (the consumer reset after OffsetOutOfRange), the
  same counters, line and policy apply; other gaps (transaction markers) are logged at INFO.

With ``STREAM_APP_DEBUG_OFFSETS_LOG`` it also appends every offset the agents receive to a file,
as ``topic partition first last`` runs, so the fault suite can check that every offset of every
partition reached an agent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

# (TopicPartitions) -> their log start offsets
LogStarts = Callable[[list[Any]], Awaitable[Mapping[Any, int]]]


class LogStartError(RuntimeError):
    """A partition must be read from an offset retention already deleted, and the policy is fail."""


class OffsetAudit:
    """Per source partition: the next offset expected, checked against the log start."""

    def __init__(
        self,
        registry: CollectorRegistry,
        log_starts: LogStarts,
        *,
        policy: str = "earliest",
        debug_path: str = "",
    ) -> None:
        if policy not in ("earliest", "fail"):
            raise ValueError(f"log start policy must be 'earliest' or 'fail', not {policy!r}")
        self.log_starts = log_starts
        self.policy = policy
        self.behind = Counter(
            "stream_app_checkpoint_behind_log_start",
            "Times a source partition had to be read from an offset older than its log start "
            "(retention deleted the events after its checkpoint or read position).",
            ["topic"],
            registry=registry,
        )
        self.lost = Counter(
            "stream_app_events_lost_to_retention",
            "Source offsets deleted by retention before this worker read them: missing from the metrics.",
            ["topic"],
            registry=registry,
        )
        self.expected: dict[tuple[str, int], int] = {}
        self._debug = open(debug_path, "a", buffering=1 << 16) if debug_path else None  # noqa: SIM115

    # -- assignment ------------------------------------------------------------
    async def check_positions(self, positions: Mapping[Any, int]) -> dict[Any, int]:
        """``positions`` (TopicPartition -> offset to read from) with every offset below its
        log start moved to the log start (policy earliest) after counting and logging it."""
        out = dict(positions)
        if out:
            starts = await self.log_starts(list(out))
            for tp, offset in positions.items():
                start = starts.get(tp)
                if start is not None and offset < start:
                    self._lost(tp.topic, tp.partition, offset, start, "its checkpoint")
                    out[tp] = start
        self.expected = {(tp.topic, tp.partition): offset for tp, offset in out.items()}
        return out

    # -- reading -----------------------------------------------------------------
    def observe(self, topic: str, partition: int, offset: int) -> tuple[int, int] | None:
        """One message handed to an agent. Returns ``(first, last)`` of the offsets skipped
        before it, when there is such a gap (see :meth:`check_gap`)."""
        key = (topic, partition)
        expected = self.expected.get(key)
        self.expected[key] = offset + 1
        if expected is not None and offset > expected:
            return expected, offset - 1
        return None

    async def check_gap(self, tp: Any, first: int, last: int) -> None:
        """Offsets ``first..last`` never reached the agent: lost to retention if the log now
        starts after ``first``."""
        start = (await self.log_starts([tp])).get(tp)
        if start is not None and start > first:
            self._lost(tp.topic, tp.partition, first, min(start, last + 1), "the position it was reading")
        else:
            log.info("%s[%d]: offsets %d..%d were not delivered (transaction markers?)", tp.topic, tp.partition,
                     first, last)  # fmt: skip

    def _lost(self, topic: str, partition: int, offset: int, start: int, what: str) -> None:
        n = start - offset
        self.behind.labels(topic).inc()
        self.lost.labels(topic).inc(n)
        action = "refusing to go on (STREAM_APP_LOG_START_POLICY=fail)" if self.policy == "fail" else (
            f"resuming from offset {start}")  # fmt: skip
        log.error(
            "%s[%d]: %s is offset %d but the log starts at %d: retention deleted %d events before this "
            "worker read them; they are missing from the metrics; %s",
            topic, partition, what, offset, start, n, action,
        )  # fmt: skip
        if self.policy == "fail":
            raise LogStartError(f"{topic}[{partition}] must be read from {offset}, the log starts at {start}")

    # -- debug: every offset handed over ------------------------------------------
    def record(self, topic: str, partition: int, offsets: Iterable[int]) -> None:
        """Append ``offsets`` (of one partition, in order) as runs, when the debug log is on."""
        if self._debug is None:
            return
        first = last = None
        lines = []
        for o in offsets:
            if first is None:
                first = last = o
            elif o == last + 1:
                last = o
            else:
                lines.append(f"{topic} {partition} {first} {last}\n")
                first = last = o
        if first is not None:
            lines.append(f"{topic} {partition} {first} {last}\n")
        self._debug.writelines(lines)

    def flush(self) -> None:
        if self._debug is not None:
            self._debug.flush()  # to the OS: a kill -9 after this loses nothing of it


def read_offsets_log(path: str) -> dict[tuple[str, int], list[tuple[int, int]]]:
    """(topic, partition) -> merged offset ranges (inclusive) of a debug offsets log."""
    runs: dict[tuple[str, int], list[tuple[int, int]]] = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4:
                runs.setdefault((parts[0], int(parts[1])), []).append((int(parts[2]), int(parts[3])))
    out = {}
    for key, ranges in runs.items():
        merged: list[tuple[int, int]] = []
        for a, b in sorted(ranges):
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        out[key] = merged
    return out
