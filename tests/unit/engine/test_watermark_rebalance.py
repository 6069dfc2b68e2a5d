"""A worker's high watermark never goes back (docs/metrics.md, Event time and windows), not even
when a rebalance takes away the partition that held its newest event: the rebuild after an
assignment must not recompute it from the remaining partitions only."""

from __future__ import annotations

from stream_app.engine.support import SupportConfig, SupportFamily
from tests.support.engine import EngineRunner

from .test_support import created, reply

DAY = 86400.0
T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600


def _runner() -> EngineRunner:
    # ticket "A" lives on partition 0, "B" on partition 1
    return EngineRunner(SupportFamily(SupportConfig()), partition_of=lambda key: 0 if key == "A" else 1)


def test_rebuild_keeps_the_high_watermark_of_a_revoked_partition():
    run = _runner()
    run.feed([created("a1", T0, "A"), created("b1", T0 + 2 * DAY, "B")])
    engine = run.engine
    high, cutoff = engine.tracker.watermark(), engine.tracker.cutoff()
    assert high == T0 + 2 * DAY
    # partition 1 (the newest event) moves to another worker; this one keeps partition 0
    for _ in engine.rebuild_steps({0}):
        pass
    assert engine.tracker.watermark() == high, "the high watermark went back after the rebuild"
    assert engine.tracker.cutoff() == cutoff
    assert engine.tracker.watermark(1) is None  # the revoked partition's own watermark is gone
    assert engine.tracker.watermark(0) == T0
    # an event as old as the cutoff says is still too late on this worker
    assert engine.process("A", reply("a2", T0 + 60, "A"), 0).too_late


def test_rebuild_raises_the_high_watermark_from_newly_assigned_partitions():
    run = _runner()
    run.feed([created("a1", T0, "A"), created("b1", T0 + DAY, "B")])
    engine = run.engine
    for _ in engine.rebuild_steps({0}):
        pass
    assert engine.tracker.watermark() == T0 + DAY
    run.states.put("B", 1, run.family.apply(run.states.get("B"), created("b2", T0 + 3 * DAY, "B"))[0])
    for _ in engine.rebuild_steps({0, 1}):
        pass
    assert engine.tracker.watermark() == T0 + 3 * DAY
