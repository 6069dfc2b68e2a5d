"""support.account_signal: the per-ticket facts handed to the customer-health work."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from stream_app.engine.support import SlaTarget, SupportConfig, TicketState, account_signal, apply
from tests.support.events import Ev, arrival_orders

T0 = datetime(2024, 1, 1, 8, 0, tzinfo=timezone.utc).timestamp()
H = 3600
CFG = SupportConfig(sla_targets={"urgent": SlaTarget(1800, 4 * H), "high": SlaTarget(H, None),
                                 "low": SlaTarget(None, 72 * H)})


def ev(eid, etype, ts, **data):
    return Ev(eid, etype, float(ts), {"ticket_id": "T", **data})


def created(eid="c", ts=T0, priority="urgent", account="acc"):
    return ev(eid, "ticket.created", ts, account_id=account, requester_id="r", channel="email",
              priority=priority, team="t1")


def reply(eid, ts, role="agent", public=True):
    return ev(eid, "ticket.replied", ts, author_role=role, public=public, author_id=None, time_spent_seconds=None)


def state_of(*events):
    st = None
    for e in events:
        st, _ = apply(st, e)
    return st


def test_none_without_created_or_account():
    assert account_signal(state_of(reply("r", T0)), CFG) is None  # created unknown yet
    assert account_signal(state_of(created(account=None)), CFG) is None


def test_reply_in_time_and_late_reply():
    s = account_signal(state_of(created(), reply("r", T0 + 1800)), CFG)  # exactly the 1800 s target
    assert s == {"account_id": "acc", "open": True, "first_reply_breached": False,
                 "first_reply_stopped_ts": T0 + 1800, "first_reply_due_ts": T0 + 1800, "priority": "urgent",
                 "created_ts": T0, "reopens": 0, "last_reopen_ts": None, "ts": T0 + 1800}
    late = account_signal(state_of(created(), reply("r", T0 + 1801)), CFG)
    assert late["first_reply_breached"] and late["first_reply_stopped_ts"] == T0 + 1801


def test_bot_and_internal_replies_do_not_stop_the_clock():
    s = account_signal(state_of(created(), reply("b", T0 + 60, role="bot"), reply("n", T0 + 120, public=False)), CFG)
    assert s["first_reply_stopped_ts"] is None and not s["first_reply_breached"]  # max ts T0+120 < due
    assert s["first_reply_due_ts"] == T0 + 1800


def test_running_clock_judged_by_the_tickets_own_newest_event_time():
    # customer writes again 1 h later, still no agent reply: 3600 > 1800 -> breached by event time
    s = account_signal(state_of(created(), reply("c2", T0 + H, role="customer")), CFG)
    assert s["first_reply_breached"] and s["first_reply_stopped_ts"] is None and s["ts"] == T0 + H
    # pure: the wall clock does not matter
    assert account_signal(state_of(created()), CFG, now=T0 + 10 * H)["first_reply_breached"] is False


def test_solve_stops_the_clock_reopens_and_open_flag():
    evs = [
        created(priority="high"),  # target 1 h
        ev("s1", "ticket.solved", T0 + 600, agent_id=None, time_spent_seconds=None),
        ev("o1", "ticket.reopened", T0 + 2 * H),
        ev("s2", "ticket.status_changed", T0 + 3 * H, status="closed", previous_status="open"),
        ev("o2", "ticket.status_changed", T0 + 4 * H, status="pending", previous_status="closed"),
    ]
    s = account_signal(state_of(*evs), CFG)
    assert s["first_reply_stopped_ts"] == T0 + 600 and not s["first_reply_breached"]
    assert s["reopens"] == 2 and s["last_reopen_ts"] == T0 + 4 * H and s["open"] is True  # pending
    solved = account_signal(state_of(*evs[:4]), CFG)
    assert solved["open"] is False and solved["reopens"] == 1 and solved["last_reopen_ts"] == T0 + 2 * H


def test_priority_without_first_reply_target():
    s = account_signal(state_of(created(priority="low"), reply("c", T0 + 100 * H, role="customer")), CFG)
    assert s["first_reply_breached"] is False and s["first_reply_due_ts"] is None
    s = account_signal(state_of(created(priority="normal")), CFG)  # no target configured at all
    assert s["first_reply_due_ts"] is None and s["priority"] == "normal"


def test_any_order_same_signal_and_json_safe():
    evs = [created(), reply("c1", T0 + 100, role="customer"), reply("a1", T0 + 2000),
           ev("s1", "ticket.solved", T0 + 3000, agent_id=None, time_spent_seconds=None),
           ev("o1", "ticket.reopened", T0 + 4000)]
    expected = account_signal(state_of(*evs), CFG)
    assert expected["first_reply_breached"] and expected["reopens"] == 1
    for shuffled in arrival_orders(evs, seed=3, runs=10, redelivered=2):
        st = TicketState.from_dict(json.loads(json.dumps(state_of(*shuffled).to_dict())))
        assert account_signal(st, CFG) == expected
    assert json.loads(json.dumps(expected)) == expected
