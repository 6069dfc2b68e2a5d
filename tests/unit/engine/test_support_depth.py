"""Support depth (docs/metrics.md, Support, Depth): backlog age, reassignments, agent touches,
on-hold and agent-wait time. Hand-worked through the real engine step; the property tests of
test_support.py compare them with the batch reference over any arrival order."""

from __future__ import annotations

from stream_app.engine.support import SupportConfig, SupportFamily, TicketState
from tests.reference import support_reference as ref
from tests.support.engine import EngineRunner
from tests.support.references import support_params
from tests.support.samples import assert_same, lab, samples, state_derived

from .test_support import T0, created, ev, reply, solved, status

P = "stream_app_support_"
D = 86400


def assigned(eid, ts, ticket, team, agent):
    return ev(eid, "ticket.assigned", ts, ticket, team=team, agent_id=agent)


NOW = T0 + 15000


def scenario():
    """Old unsolved tickets first, in time order (so none is too late), then the day's solved ones."""
    return [
        # backlog: ages at NOW are 2 d + 15000 s, 8 d + 15000 s, exactly 1 d, 4 d + 15000 s
        created("e1", T0 - 8 * D, "E", team="t2", priority="urgent"),
        created("g1", T0 - 4 * D, "G", team="t1", priority="normal"),
        status("g2", T0 - 4 * D + 100, "G", "on_hold"),  # still in the backlog, whatever its status
        created("d1", T0 - 2 * D, "D", team="t2", priority="urgent"),
        created("f1", NOW - D, "F", team="t2", priority="urgent"),
        # A (t1 normal): an agent takes it, pending 600..4200, on hold 5000..12200, handed to another
        # agent of the team (a reassignment), two public replies before its solve, one after
        created("a1", T0, "A", team="t1", priority="normal"),
        assigned("a2", T0 + 60, "A", "t1", "g1"),  # first agent within the team: not a reassignment
        reply("a3", T0 + 600, "A"),
        status("a4", T0 + 600, "A", "pending"),
        reply("a5", T0 + 4200, "A", role="customer"),
        status("a6", T0 + 4200, "A", "open"),
        status("a7", T0 + 5000, "A", "on_hold"),
        status("a8", T0 + 12200, "A", "open"),
        assigned("a9", T0 + 12300, "A", "t1", "g2"),  # agent g1 -> g2: reassignment
        reply("a10", T0 + 12400, "A", public=False),  # internal note: not a touch
        reply("a11", T0 + 13000, "A"),
        solved("a12", T0 + 14000, "A"),
        reply("a13", T0 + 14500, "A"),  # after the last solve: not counted
        # B: created for t2 (high), taken by g3, then moved to team t1 (a reassignment): its series
        # are t1's; one public reply
        created("b1", T0 + 1000, "B", team="t2", priority="high"),
        assigned("b2", T0 + 1100, "B", "t2", "g3"),
        assigned("b3", T0 + 2000, "B", "t1", "g1"),
        reply("b4", T0 + 3000, "B"),
        solved("b5", T0 + 3500, "B"),
        # C (t1 normal): solved without a reply, reopened, three public replies, solved again
        created("c1", T0 + 100, "C", team="t1", priority="normal"),
        solved("c2", T0 + 200, "C"),
        ev("c3", "ticket.reopened", T0 + 300, "C"),
        reply("c4", T0 + 400, "C"),
        reply("c5", T0 + 450, "C"),
        reply("c6", T0 + 480, "C"),
        solved("c7", T0 + 500, "C"),
    ]


def cfg() -> SupportConfig:
    return SupportConfig()  # windows 1h / 24h, backlog ages 1d / 3d / 7d


def hist(s, metric, team, priority, window="24h"):
    """(count, sum, {le: cumulative count}) of a gauge histogram sample set."""
    base = dict(team=team, priority=priority, window=window)
    buckets = {dict(k[1])["le"]: v for k, v in s.items()
               if k[0] == P + metric + "_bucket" and k[1] >= lab(**base) and len(k[1]) == 4}  # fmt: skip
    return s.get((P + metric + "_gcount", lab(**base)), 0), s.get((P + metric + "_gsum", lab(**base)), 0), buckets


def test_hand_worked_depth():
    run = EngineRunner(SupportFamily(cfg())).feed(scenario())
    assert run.too_late == 0
    s = samples(run.engine.index, NOW, zeros=True)

    # backlog age: D and E above 1 d, E above 3 d and 7 d; F is exactly 1 d old: not above
    def age(team, priority, older_than, at=s):
        return at.get((P + "backlog_age_tickets", lab(team=team, priority=priority, older_than=older_than)), 0)

    assert (age("t2", "urgent", "1d"), age("t2", "urgent", "3d"), age("t2", "urgent", "7d")) == (2, 1, 1)
    assert (age("t1", "normal", "1d"), age("t1", "normal", "3d"), age("t1", "normal", "7d")) == (1, 1, 0)
    later = samples(run.engine.index, NOW + 1)  # F passes 1 d one second later, by the read time alone
    assert age("t2", "urgent", "1d", later) == 3
    # the 0 series of a labelset seen in the backlog is published, not left out
    assert s[(P + "backlog_age_tickets", lab(team="t1", priority="normal", older_than="7d"))] == 0

    # 24 h, t1 normal: A (2 touches, 1 reassignment, on hold 7200 s, pending 3600 s) and
    # C (3 touches: the first solve without a reply does not matter, the last solve counts)
    n, total, le = hist(s, "agent_touches", "t1", "normal")
    assert (n, total) == (2, 5)
    assert le == {"0.0": 0, "1.0": 0, "2.0": 1, "+Inf": 2}  # no zero- or one-touch, one two-touch, one multi
    n, total, le = hist(s, "reassignments", "t1", "normal")
    assert (n, total, le["0.0"], le["1.0"], le["+Inf"]) == (2, 1, 1, 2, 2)
    n, total, le = hist(s, "on_hold_seconds", "t1", "normal")
    assert (n, total, le["0.0"], le["3600.0"], le["14400.0"]) == (2, 7200, 1, 1, 2)  # C never on hold
    n, total, le = hist(s, "agent_wait_seconds", "t1", "normal")
    assert (n, total, le["0.0"], le["3600.0"]) == (2, 3600, 1, 2)  # pending exactly 3600 s: le=3600
    # B moved to t1: its series are t1 high; one touch (one-touch), one reassignment (team change)
    assert hist(s, "agent_touches", "t1", "high")[:2] == (1, 1)
    assert hist(s, "agent_touches", "t1", "high")[2]["1.0"] == 1
    assert hist(s, "reassignments", "t1", "high")[:2] == (1, 1)
    assert hist(s, "on_hold_seconds", "t1", "high")[:2] == (1, 0)
    assert not any(k[1] >= lab(team="t2", priority="high") for k in s if k[0].startswith(P + "agent_touches"))
    assert hist(s, "agent_touches", "t1", "urgent")[:2] == (0, 0)
    # 1 h window read at T0+15000: A's last solve (T0+14000) only
    assert hist(s, "agent_touches", "t1", "normal", "1h")[:2] == (1, 2)

    # a reopen of A takes it out of the solved-ticket distributions and back into the backlog
    run.process(ev("a14", "ticket.reopened", T0 + 14800, "A"))
    s2 = samples(run.engine.index, NOW, zeros=True)
    assert hist(s2, "agent_touches", "t1", "normal")[:2] == (1, 3)
    assert hist(s2, "on_hold_seconds", "t1", "normal")[:2] == (1, 0)
    assert s2[(P + "backlog_tickets", lab(team="t1", priority="normal", status="open"))] == 1


def test_depth_equals_the_reference():
    c = cfg()
    log = [dict(id=e.id, type=e.type, time=e.ts, data=e.data) for e in scenario()]
    run = EngineRunner(SupportFamily(c)).feed(scenario())
    for now in (NOW, NOW + 1, NOW + 3 * D):
        assert_same(state_derived(samples(run.engine.index, now)), ref.compute(log, now, support_params(c)))


def test_assignments_stored_before_agents_were_kept_still_read():
    # states checkpointed by an earlier version hold [ts, team]: no agent, a team change counts
    stored = {"v": 1, "t": "X", "c": {"x1": [T0, "email", "normal", "t1", "acc"]},
              "a": {"x2": [T0 + 10, "t2"], "x3": [T0 + 20, "t2"]}, "s": {"x4": [T0 + 30, "solved", None]}}  # fmt: skip
    state = TicketState.from_dict(stored)
    facts = [c for c in SupportFamily(cfg()).contributions(state) if c[0] == "reassignments"]
    assert facts == [("reassignments", ("t2", "email", "normal"), T0 + 30, 1.0)]
