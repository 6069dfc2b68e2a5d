"""Ticket retention (docs/metrics.md, Support, Retention): a solved, closed or incomplete ticket's
life ends ``ticket_retention_seconds`` after its newest event; a later event starts a new life
(a reopen then makes an incomplete ticket), and the state is deleted once the watermark cutoff
passes the end of its life. Hand-worked on the real engine step, then the same rules against the
batch reference for any arrival order."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings

from stream_app.engine.support import SupportConfig, SupportFamily
from stream_app.engine.support import retention_until
from tests.reference import support_reference as ref
from tests.support.engine import EngineRunner

from tests.support.events import Ev
from tests.support.references import support_params
from tests.support.samples import assert_same, lab, state_derived
from tests.support.samples import samples as family_samples

from .test_support import PARIS_REF, T0, created, ev, event_logs, prop_cfg, reply, solved

H = 3600
R = 3 * H  # retention
P = "stream_app_support_"


def cfg(retention: int = R) -> SupportConfig:
    # longest window 1 h + grace 1 h: the horizon is 2 h, the least a retention may be
    return SupportConfig(volume_windows=(300, 3600), windows=(3600,), grace_seconds=3600,
                         ticket_retention_seconds=retention)  # fmt: skip


def reopened(eid, ts, ticket):
    return ev(eid, "ticket.reopened", ts, ticket)


def scenario():
    return [
        # A: solved at T0+1200; its life ends at T0+1200+R
        created("a1", T0, "A"), reply("a2", T0 + 600, "A"), solved("a3", T0 + 1200, "A"),
        # B: solved at T0+600, reopened 60 s after its life ended: a new, incomplete life
        created("b1", T0, "B", team="t2"), solved("b2", T0 + 600, "B"),
        # C: open for good
        created("c1", T0, "C"),
        # D: solved, reopened 60 s before its life ends: the same life, back in the backlog
        created("d1", T0, "D", team="t3"), solved("d2", T0 + 600, "D"),
        # E: no ticket.created: incomplete, its life ends R after its newest event
        reply("e1", T0, "E", role="customer"),
        reopened("d3", T0 + 600 + R - 60, "D"),
        reopened("b3", T0 + 600 + R + 60, "B"), solved("b4", T0 + 600 + R + 100, "B"),
    ]  # fmt: skip


NOW = T0 + 600 + R + 120


def samples(runner, now):
    """Non-zero samples: {(name, frozenset(labels)): value}."""
    return family_samples(runner.engine.index, now)


def test_hand_worked_lives_and_retention():
    run = EngineRunner(SupportFamily(cfg())).feed(scenario())
    s = samples(run, NOW)
    # every ticket is retained at NOW: A's life ends at T0+1200+R, after the read's cutoff
    # bucket_start(NOW - 2h); B is its new life; C and D are open; E ended at T0+R, after it too
    assert s[(P + "tickets_tracked", lab())] == 5
    assert s[(P + "incomplete_tickets", lab())] == 2  # E, and B's new life (a reopen without creation)
    t1 = dict(team="t1", priority="normal")  # backlog: by team and priority (series budget)
    # D's reopen counts; B's does not (its ticket is gone: the reopen has no labels to count under)
    assert s[(P + "reopens", lab(team="t3", channel="email", priority="normal", window="1h"))] == 1
    assert (P + "reopens", lab(team="t2", channel="email", priority="normal", window="1h")) not in s
    assert s[(P + "backlog_tickets", lab(**t1, status="new"))] == 1  # C
    assert s[(P + "backlog_tickets", lab(team="t3", priority="normal", status="open"))] == 1
    # B's first life said its account had a solved ticket; its new life says nothing: withdrawn
    b = [c for c in run.signals if c.entity == "B"]
    assert b[-1].signal is None and b[-1].account_id == "acc"
    assert run.entities.get("B").created == {} and set(run.entities.get("B").statuses) == {"b3", "b4"}
    assert retention_until(run.entities.get("B"), R) == T0 + 600 + R + 100 + R
    assert retention_until(run.entities.get("C"), R) is None and retention_until(run.entities.get("D"), R) is None
    assert retention_until(run.entities.get("A"), 0) is None  # retention off: kept for good


def test_gauges_do_not_depend_on_when_states_are_deleted():
    run = EngineRunner(SupportFamily(cfg())).feed(scenario())
    later = T0 + 600 + R + 100 + R + 2 * H + 120  # past the end of every ended life + the horizon
    before = samples(run, later)
    assert before[(P + "tickets_tracked", lab())] == 2  # C and D (open)
    assert before.get((P + "incomplete_tickets", lab()), 0) == 0
    assert len(run.states.data) == 5  # nothing deleted yet: no event moved the watermark
    n_signals = len(run.signals)
    # an event at `later` moves the watermark: the ended lives are deleted (same partition)
    run.process(created("f1", later, "F"))
    assert sorted(run.states.data) == ["C", "D", "F"]
    assert run.engine.evicted_entities == 3
    # the numbers moved by F's creation only
    expected = dict(before)
    t1 = dict(team="t1", channel="email", priority="normal")
    expected[(P + "tickets_tracked", lab())] += 1
    expected[(P + "backlog_tickets", lab(team="t1", priority="normal", status="new"))] += 1
    for w in ("5m", "1h"):  # ticket volumes keep the channel
        expected[(P + "tickets_created", lab(**t1, window=w))] = 1
    assert_same(samples(run, later), expected)
    # deleting A (solved, with an account) withdrew its signal from customer health
    assert [(c.entity, c.signal) for c in run.signals[n_signals:] if c.signal is None] == [("A", None)]


def test_a_straggler_after_the_state_was_deleted_is_too_late_and_leaves_nothing():
    run = EngineRunner(SupportFamily(cfg())).feed(
        [created("a1", T0, "A"), solved("a2", T0 + 60, "A"), created("z1", T0 + 60 + R + 3 * H, "Z")]
    )
    assert run.entities.get("A") is None  # deleted: the cutoff passed the end of its life
    evicted = run.engine.evicted_entities
    run.process(reply("a3", T0 + 120, "A", role="customer"))  # a straggler of the ended life
    assert run.too_late == 1
    # it made an incomplete life that ended before the cutoff already: deleted in the same step
    assert run.entities.get("A") is None and run.engine.evicted_entities == evicted + 1


def test_retention_shorter_than_the_windows_is_refused():
    with pytest.raises(ValueError, match="ticket_retention_seconds"):
        cfg(retention=H)
    assert cfg(retention=0).ticket_retention_seconds == 0
    assert SupportConfig().ticket_retention_seconds == 30 * 86400


def test_any_arrival_order_gives_the_same_lives():
    events = scenario()
    expected = samples(EngineRunner(SupportFamily(cfg())).feed(events), NOW)
    rnd = random.Random(11)
    for _ in range(20):
        # shuffle only within each ticket's life: the rule reads arrival order at a life's edge
        order = events[:]
        rnd.shuffle(order)
        order.sort(key=lambda e: (e.data["ticket_id"], e.ts > T0 + 600 + R))
        got = samples(EngineRunner(SupportFamily(cfg())).feed(order), NOW)
        assert_same(state_derived(got), state_derived(expected))  # some arrive too late now


def ref_params_with_retention(c, calendars=None):
    return support_params(c, calendars)


def test_hand_worked_scenario_equals_the_reference():
    c = cfg()
    log = [dict(id=e.id, type=e.type, time=e.ts, data=e.data) for e in scenario()]
    for now in (NOW, NOW + R, NOW + 2 * R + 3 * H):
        got = samples(EngineRunner(SupportFamily(c)).feed(scenario()), now)
        assert_same(got, ref.compute(log, now, ref_params_with_retention(c)))


@given(event_logs())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_engine_with_retention_matches_reference_in_time_order(case):
    log, delivered, now = case
    base = prop_cfg()
    c = SupportConfig(calendars=base.calendars, sla_targets=base.sla_targets, volume_windows=(300, 3600),
                      windows=(3600,), grace_seconds=3600, ticket_retention_seconds=R)  # fmt: skip
    # Lives are split by arrival at their edge: deliver in time order (duplicates included), as
    # the reference reads them; out-of-order arrival within a life is covered above.
    ordered = sorted(delivered, key=lambda e: (e["time"], e["id"]))
    run = EngineRunner(SupportFamily(c)).feed([Ev(e["id"], e["type"], e["time"], e["data"]) for e in ordered])
    now = max([now] + [e["time"] for e in log])
    assert_same(state_derived(samples(run, now)), ref.compute(ordered, now, ref_params_with_retention(c, {"t1": PARIS_REF})))
