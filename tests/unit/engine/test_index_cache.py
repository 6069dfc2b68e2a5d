"""The cached exposition of every family index is exact.

An index returns the families it computed before while its version is unchanged and the read
time is inside their validity (``stream_app.engine.index``: next window bucket edge, next instant
a running SLA clock or idle session changes stage; health: the next account score edge). These
properties drive real generated lifecycles through the real engine step, read at random times
(forward, at edges, backwards) between random batches of events, and require at every read:

* the cached read equals a read of an identical index that never caches (``_collect``) — the
  same numbers and, rendered, the same bytes;
* and equals an index rebuilt from the same states and read once at that time (fresh clocks,
  fresh windows; non-zero samples: a live index keeps publishing emptied gauges at 0).

Event times are whole seconds, so sums of durations are exact and "equal" means equal (against
the rebuilt index, handle times reported with decimals are summed in another order: 1e-12).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.config import Settings
from stream_app.engine.health import HealthIndex
from stream_app.events import EventRejected, decode_event
from stream_app.tools.generator import Profile, generate
from stream_app.worker.exposition import family_text
from stream_app.worker.families import build_families, health_config
from tests.support.engine import EngineRunner

T0 = 1_717_243_200  # 2024-06-01 12:00 UTC
FAMILY_OF = {"support": "ticket", "usage": "activity", "revenue": "subscription", "voice": "survey"}


def _log(seed: int, hours: float, rate: float) -> list[SimpleNamespace]:
    """Decoded generated events with whole-second event times."""
    out = []
    for g in generate(seed, T0, hours * 3600, rate, profile=Profile.fast()):
        try:
            e = decode_event(g.value, expected_family=g.family, now=T0 + 30 * 86400)
        except EventRejected:
            continue
        out.append(SimpleNamespace(id=e.id, type=e.type, ts=float(round(e.ts)), data=e.data, subject=e.subject,
                                   family=g.family))  # fmt: skip
    return out


def _values(families, nonzero: bool = False) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in families for s in m.samples
            if s.value or not nonzero}  # fmt: skip


def _text(families) -> bytes:
    return b"".join(family_text(m) for m in families)


def _fresh_text(families) -> bytes:
    # the same formatter on objects that never had a text: a byte-for-byte fresh render
    for m in families:
        m.__dict__.pop("_stream_app_text", None)
    return _text(families)


def _same(x: float, y: float, rel: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=rel)


def _assert_equal(cached, fresh, what: str, nonzero: bool = False, rel: float = 0.0) -> None:
    a, b = _values(cached, nonzero), _values(fresh, nonzero)
    assert a.keys() == b.keys(), (what, sorted(a.keys() ^ b.keys())[:5])
    wrong = [(k, a[k], b[k]) for k in a if not _same(a[k], b[k], rel)]
    assert not wrong, (what, wrong[:5])


reads = st.lists(
    st.tuples(
        st.one_of(st.just(0), st.integers(0, 40)),  # events applied before the read
        st.one_of(st.integers(-900, 7200), st.integers(0, 90),
                  st.sampled_from([0, 59, 60, 61, 1439, 1440, 1800, 1801, 3600])),
    ),
    min_size=2, max_size=7,
)  # fmt: skip


@given(st.integers(0, 10_000), st.sampled_from(sorted(FAMILY_OF)), reads)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_cached_family_reads_equal_uncached_and_rebuilt_reads(seed, name, plan):
    families = {f.name: f for f in build_families(Settings())}
    family = families[name]
    log = [e for e in _log(seed, 3.0, 0.4) if e.family == FAMILY_OF[name]]
    cached, twin = EngineRunner(family), EngineRunner(family)
    pos = 0
    for batch, offset in plan:
        for e in log[pos : pos + batch]:
            cached.process(e)
            twin.process(e)
        pos += batch
        newest = max((e.ts for e in log[:pos]), default=T0)
        now = newest + offset + 0.25 * (seed % 4)  # also reads between whole seconds
        got = cached.index.collect(now)
        assert cached.index.collect(now) is got  # unchanged: the very same families
        plain = twin.index._collect(now)
        _assert_equal(got, plain, f"{name}: cached vs uncached at {now - T0:+.2f}")
        assert _text(got) == _fresh_text(plain)
        # A rebuilt index has not seen the gauges that emptied (published at 0 by a live one), and
        # adds reported handle times (decimals) in another order: last-bit differences in sums.
        rebuilt = cached.rebuilt().index._collect(now)
        _assert_equal(got, rebuilt, f"{name}: cached vs rebuilt at {now - T0:+.2f}", nonzero=True, rel=1e-12)


@given(st.integers(0, 10_000), reads)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_cached_health_reads_equal_a_fresh_index(seed, plan):
    cfg = health_config(Settings())
    runners = {f.event_family: EngineRunner(f) for f in build_families(Settings())}
    log = _log(seed, 3.0, 0.5)
    live, twin = HealthIndex(cfg), HealthIndex(cfg)
    pos = 0
    for batch, offset in plan:
        for e in log[pos : pos + batch * 4]:
            run = runners[e.family]
            run.process(e)
            for change in run.signals:
                live.apply(change.message(), change.account_id)
                twin.apply(change.message(), change.account_id)
            run.signals.clear()
        pos += batch * 4
        newest = max((e.ts for e in log[:pos]), default=T0)
        now = newest + offset * 30  # health edges are days apart: move further
        got = live.collect(now)
        assert live.collect(now) is got
        fresh = HealthIndex(cfg)
        fresh.rebuild(live.states.values())
        _assert_equal(got, fresh.collect(now), f"health: cached vs fresh at {now - T0:+.0f}")
        _assert_equal(got, twin.collect(now), f"health: twin at {now - T0:+.0f}")
        assert _text(got) == _fresh_text(fresh.collect(now))


def test_a_read_inside_the_validity_returns_the_same_objects_and_an_update_does_not():
    family = {f.name: f for f in build_families(Settings())}["support"]
    log = [e for e in _log(5, 2.0, 0.5) if e.family == "ticket"]
    run = EngineRunner(family).feed(log)
    idx = run.index
    now = max(e.ts for e in log) + 1
    first = idx.collect(now)
    assert idx.collect(now + 0.5) is first  # same window bucket, no clock passes in 0.5 s
    data = {"ticket_id": "T-new", "account_id": "A-new", "requester_id": "R", "channel": "email",
            "priority": "low", "team": "billing"}  # fmt: skip
    run.process(SimpleNamespace(id="new", type="ticket.created", ts=now, data=data, subject="T-new"))
    second = idx.collect(now + 0.5)
    assert second is not first
    # families the event did not change are the very objects read before (their text is kept)
    same = {m.name for m in second if any(m is f for f in first)}
    assert same and same != {m.name for m in second}


def test_warm_steps_judge_the_clocks_in_chunks_ahead_of_the_first_read():
    for name in ("support", "usage"):
        family = {f.name: f for f in build_families(Settings())}[name]
        log = [e for e in _log(9, 3.0, 0.6) if e.family == FAMILY_OF[name]]
        run = EngineRunner(family).feed(log)
        now = max(e.ts for e in log) + 120
        rebuilt = run.rebuilt().index
        steps = sum(1 for _ in rebuilt.warm_steps(now, chunk=5))
        assert steps >= len(rebuilt._running_clocks()[0]) // 5 > 0
        warm = rebuilt.collect(now)
        assert rebuilt.collect(now) is warm  # the warm-up's read, kept
        _assert_equal(warm, run.rebuilt().index._collect(now), f"{name}: warmed vs cold first read")


def test_clock_heap_stays_bounded_when_clocks_change_before_their_instant():
    from stream_app.engine.clocks import Clocks

    class Deadlines(Clocks):
        __slots__ = ("passed",)

        def __init__(self):
            super().__init__()
            self.passed = 0

        def stages(self, key):
            return (key,)

        def effect(self, key, stage, n):
            self.passed += n if stage == 1 else 0

        def reset_effects(self):
            self.passed = 0

    c = Deadlines()
    c.advance(0.0)
    for i in range(20_000):  # a session's clock moves with every event: old one out, new one in
        c.add(1000.0 + i, 1)
        if i:
            c.add(999.0 + i, -1)
        if i % 500 == 0:
            c.advance(i / 1000)
    assert len(c) == 1 and len(c._heap) <= 2 * len(c) + 1024 + 500
    c.advance(50_000.0)
    assert c.passed == 1 and c.next_change() == float("inf")


def test_health_warm_steps_count_every_account_ahead_of_the_first_read():
    cfg = health_config(Settings())
    runners = {f.event_family: EngineRunner(f) for f in build_families(Settings())}
    live = HealthIndex(cfg)
    log = _log(4, 3.0, 0.5)
    for e in log:
        run = runners[e.family]
        run.process(e)
        for change in run.signals:
            live.apply(change.message(), change.account_id)
        run.signals.clear()
    now = max(e.ts for e in log) + 600
    warm = HealthIndex(cfg)
    warm.rebuild(live.states.values())
    assert sum(1 for _ in warm.warm_steps(now, chunk=10)) >= len(warm) // 10 > 0
    got = warm.collect(now)
    assert warm.collect(now) is got
    fresh = HealthIndex(cfg)
    fresh.rebuild(live.states.values())
    _assert_equal(got, fresh.collect(now), "health: warmed vs cold first read")
