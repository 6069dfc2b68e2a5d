"""Source positions against the log start (stream_app.worker.offsets): a checkpoint or read position
that retention deleted is counted, logged with its partition and handled by the policy; the debug
log records every offset handed over, as runs."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka.structs import TopicPartition as TP
from prometheus_client import CollectorRegistry

from stream_app.worker.offsets import LogStartError, OffsetAudit, read_offsets_log


def _audit(starts: dict, policy: str = "earliest", debug_path: str = "") -> tuple[OffsetAudit, CollectorRegistry]:
    registry = CollectorRegistry()

    async def log_starts(tps):
        return {tp: starts[tp] for tp in tps if tp in starts}

    return OffsetAudit(registry, log_starts, policy=policy, debug_path=debug_path), registry


def _value(registry, name, topic):
    return registry.get_sample_value(name, {"topic": topic}) or 0


def test_a_checkpoint_behind_the_log_start_resumes_there_counted_and_logged(caplog):
    audit, reg = _audit({TP("t", 0): 0, TP("t", 1): 150, TP("s", 0): 7})
    with caplog.at_level(logging.ERROR):
        out = asyncio.run(audit.check_positions({TP("t", 0): 40, TP("t", 1): 121, TP("s", 0): 7}))
    assert out == {TP("t", 0): 40, TP("t", 1): 150, TP("s", 0): 7}
    assert _value(reg, "stream_app_checkpoint_behind_log_start_total", "t") == 1
    assert _value(reg, "stream_app_events_lost_to_retention_total", "t") == 29
    assert _value(reg, "stream_app_events_lost_to_retention_total", "s") == 0
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("t[1]: its checkpoint is offset 121 but the log starts at 150")
    assert "29 events" in line and "resuming from offset 150" in line


def test_policy_fail_refuses():
    audit, reg = _audit({TP("t", 1): 150}, policy="fail")
    with pytest.raises(LogStartError, match=r"t\[1\]"):
        asyncio.run(audit.check_positions({TP("t", 1): 121}))
    assert _value(reg, "stream_app_events_lost_to_retention_total", "t") == 29
    with pytest.raises(ValueError):
        _audit({}, policy="latest")


def test_a_gap_while_reading_is_lost_to_retention_only_if_the_log_moved_past_it(caplog):
    starts = {TP("t", 0): 0}
    audit, reg = _audit(starts)
    asyncio.run(audit.check_positions({TP("t", 0): 10}))
    assert [audit.observe("t", 0, o) for o in (10, 11, 12)] == [None, None, None]
    assert audit.observe("t", 0, 20) == (13, 19)
    with caplog.at_level(logging.INFO):
        asyncio.run(audit.check_gap(TP("t", 0), 13, 19))  # log still starts at 0: e.g. a transaction marker
    assert _value(reg, "stream_app_events_lost_to_retention_total", "t") == 0
    assert "were not delivered" in caplog.text
    starts[TP("t", 0)] = 17  # the consumer was reset: retention deleted 13..16
    asyncio.run(audit.check_gap(TP("t", 0), 13, 19))
    assert _value(reg, "stream_app_events_lost_to_retention_total", "t") == 4
    assert _value(reg, "stream_app_checkpoint_behind_log_start_total", "t") == 1
    # a re-read after a seek back is no gap; a partition never positioned has no expectation
    assert audit.observe("t", 0, 5) is None and audit.observe("t", 0, 6) is None
    assert audit.observe("u", 3, 100) is None


def test_debug_log_records_runs_and_reads_back_merged(tmp_path):
    path = tmp_path / "offsets.log"
    audit, _ = _audit({}, debug_path=str(path))
    audit.record("t", 0, [0, 1, 2, 5, 6])
    audit.record("t", 1, [3])
    audit.flush()
    audit.record("t", 0, [3, 4, 7])  # a later batch (or incarnation) fills the hole
    audit.flush()
    assert path.read_text().splitlines() == ["t 0 0 2", "t 0 5 6", "t 1 3 3", "t 0 3 4", "t 0 7 7"]
    assert read_offsets_log(str(path)) == {("t", 0): [(0, 7)], ("t", 1): [(3, 3)]}
    quiet, _ = _audit({})
    quiet.record("t", 0, [1, 2])  # debug log off: nothing recorded, nothing fails
    quiet.flush()
