"""Event-time window primitives and label guard: hand-worked cases plus brute-force comparisons."""

from __future__ import annotations

import enum
import math
import random

import pytest

from stream_app.engine.labels import OTHER, LabelGuard, LabelRule
from stream_app.engine.windows import (
    RollingCounter,
    RollingHistogram,
    WatermarkTracker,
    bucket_index,
    bucket_start,
    window_label,
)

L = ("a",)


def test_bucket_arithmetic():
    assert bucket_index(0, 60) == 0
    assert bucket_index(59.999, 60) == 0
    assert bucket_index(60, 60) == 1
    assert bucket_index(-0.5, 60) == -1  # floor, not truncation
    assert bucket_start(125.5, 60) == 120
    assert [window_label(w) for w in (300, 3600, 86400, 90)] == ["5m", "1h", "24h", "90s"]


def test_windows_must_be_multiples_of_bucket():
    with pytest.raises(ValueError):
        RollingCounter([90], 60)
    with pytest.raises(ValueError):
        RollingCounter([], 60)


def test_window_is_w_over_g_buckets_including_current():
    c = RollingCounter([180], 60)
    for ts in (0, 59, 60, 125, 179, 180):
        assert c.add(L, ts, 1)
    # now=185 is in bucket 3 (180..239): window = buckets 1, 2, 3 = starts 60..180
    # -> events 60, 125, 179, 180 = 4 (0 and 59 are in bucket 0, outside)
    assert c.window_sum(L, 185, 180) == 4
    assert c.window_sum(L, 239.9, 180) == 4  # same bucket, same answer
    # now=240 (bucket 4): buckets 2, 3, 4 -> 125, 179, 180 = 3
    assert c.window_sum(L, 240, 180) == 3
    # going back in time recomputes: now=60 (bucket 1): buckets -1, 0, 1 -> 0, 59, 60 = 3
    assert c.window_sum(L, 60, 180) == 3


def test_future_bucket_counts_only_when_reached():
    c = RollingCounter([120], 60)
    c.window_sum(L, 100, 120)  # position the running totals at bucket 1
    c.add(L, 200, 1)  # bucket 3, ahead of now
    assert c.window_sum(L, 100, 120) == 0
    assert c.window_sum(L, 179, 120) == 0  # bucket 2
    assert c.window_sum(L, 180, 120) == 1  # bucket 3 entered


def test_retraction_deletes_cells():
    c = RollingCounter([300], 60)
    c.add(L, 10, 1)
    assert c.window(30, 300) == {L: 1}
    c.add(L, 10, -1)
    assert dict(c.window(30, 300)) == {}
    assert c.bucket_count() == 0


def _brute(log, now, w, g):
    pb = math.floor(now / g)
    out = {}
    for labels, ts, d in log:
        b = math.floor(ts / g)
        if pb - w // g < b <= pb:
            out[labels] = out.get(labels, 0) + d
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize("seed", range(30))
def test_running_totals_match_brute_force(seed):
    rnd = random.Random(seed)
    g = rnd.choice([1, 10, 60])
    windows = sorted({g * rnd.randint(1, 12) for _ in range(3)})
    c = RollingCounter(windows, g)
    log = []
    for _ in range(300):
        op = rnd.random()
        if op < 0.55:
            item = ((rnd.choice("xyz"),), rnd.uniform(0, 40 * g), rnd.randint(1, 3))
            log.append(item)
            c.add(*item)
        elif op < 0.75 and log:
            labels, ts, d = log.pop(rnd.randrange(len(log)))
            c.add(labels, ts, -d)
        else:
            # mostly forward in time, sometimes back, sometimes a big jump
            now = rnd.uniform(0, 45 * g)
            for w in windows:
                assert dict(c.window(now, w)) == _brute(log, now, w, g)


def test_histogram_cumulative_and_inclusive_edges():
    h = RollingHistogram([10, 60], [3600], 60)
    for v in (5, 10, 30, 61):  # 10 sits on an edge: le="10.0" is inclusive
        h.observe(L, 100, v)
    buckets, s, n = h.cumulative(h.window(100, 3600)[L])
    assert buckets == [("10.0", 2), ("60.0", 3), ("+Inf", 4)]
    assert (s, n) == (5 + 10 + 30 + 61, 4)
    h.observe(L, 100, 30, -1)
    buckets, s, n = h.cumulative(h.window(100, 3600)[L])
    assert buckets == [("10.0", 2), ("60.0", 2), ("+Inf", 3)]
    assert (s, n) == (76, 3)
    for v in (5, 10, 61):
        h.observe(L, 100, v, -1)
    assert dict(h.window(100, 3600)) == {}
    assert h.cumulative(None) == ([("10.0", 0), ("60.0", 0), ("+Inf", 0)], 0.0, 0)


def test_histogram_float_sums_retract_to_exact_empty():
    h = RollingHistogram([], [600], 60)
    vals = [0.1, 0.2, 0.3, 1e9 + 0.7]
    for v in vals:
        h.observe(L, 5, v)
    for v in reversed(vals):
        h.observe(L, 5, v, -1)
    assert dict(h.window(5, 600)) == {}  # deleted by count, no float residue left behind


def test_histogram_edges_validated():
    with pytest.raises(ValueError):
        RollingHistogram([10, 10], [60], 60)
    with pytest.raises(ValueError):
        RollingHistogram([float("inf")], [60], 60)


def test_eviction_refuses_late_writes_and_updates_totals():
    c = RollingCounter([300], 60)
    c.add(L, 30, 1)  # bucket 0
    c.add(L, 130, 1)  # bucket 2
    assert c.window_sum(L, 200, 300) == 2
    assert c.evict(120) == 1  # buckets before bucket 2 go, even inside the read window
    assert c.cutoff == 120
    assert c.window_sum(L, 200, 300) == 1
    assert c.add(L, 119, 1) is False  # too late: refused, nothing changes
    assert c.is_evicted(119) and not c.is_evicted(120)
    assert c.window_sum(L, 200, 300) == 1
    assert c.add(L, 120, 1) is True
    assert c.evict(60) == 0  # a lower cutoff is ignored (monotone)
    assert c.window_sum(L, 200, 300) == 2


def test_watermark_tracker_too_late_rule():
    t = WatermarkTracker(horizon_seconds=3600, bucket_seconds=60)
    assert t.cutoff() is None
    assert t.observe(0, 10_000.0) is False
    # cutoff = bucket_start(10000 - 3600) = bucket_start(6400) = 6360
    assert t.cutoff() == 6360
    assert t.observe(1, 6359.9) is True  # its bucket 6300..6359 is evicted: too late
    assert t.observe(1, 6360.0) is False  # first kept bucket: late but accepted
    assert t.watermark(1) == 6360.0 and t.watermark(0) == 10_000.0
    assert t.watermark() == 10_000.0  # high watermark over partitions
    assert t.observe(1, 20_000.0) is False  # an event is never too late against itself
    t.forget(1)
    assert t.watermark(1) is None
    assert t.watermark() == 20_000.0  # monotone: revoking a partition never lowers the cutoff
    assert t.partitions() == {0: 10_000.0}


# ----------------------------------------------------------------------------- labels


class Channel(enum.Enum):
    EMAIL = "email"


def test_label_guard_allow_list_and_cap():
    g = LabelGuard.with_overrides(team=LabelRule(cap=2))
    assert g.value("channel", "email") == "email"
    assert g.value("channel", Channel.EMAIL) == "email"
    assert g.value("channel", "fax") == OTHER
    assert g.value("priority", None) == OTHER
    assert [g.value("team", t) for t in ("b", "a", "c", "b", "d", "a")] == ["b", "a", OTHER, "b", OTHER, "a"]
    assert g.kept("team") == {"a", "b"}
    assert g.labels(("team", "channel"), ("c", "chat")) == (OTHER, "chat")
    with pytest.raises(KeyError):
        g.value("ticket_id", "T-1")  # no rule -> refused, ids can never become labels


def test_label_rule_requires_exactly_one_mode():
    with pytest.raises(ValueError):
        LabelRule()
    with pytest.raises(ValueError):
        LabelRule(allow=frozenset({"a"}), cap=3)


def test_label_guard_seed_keeps_previous_choice():
    g = LabelGuard.with_overrides(team=LabelRule(cap=1))
    g.seed("team", ["support-eu"])
    assert g.value("team", "billing") == OTHER
    assert g.value("team", "support-eu") == "support-eu"
