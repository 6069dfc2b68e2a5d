"""Ticket lifecycles: created, assigned (then maybe reassigned to another team or agent), replies
and customer waits, on hold and pending, solved, reopened, closed; a solve may start a CSAT or CES
survey."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...vocabulary import PRIORITIES
from .surveys import ces, csat
from .world import (
    DRAW_CHANNELS,
    DRAW_CHANNELS_CW,
    DRAW_PRIORITIES_CW,
    DRAW_TEAMS_STD,
    DRAW_TEAMS_STD_CW,
    FIRST_REPLY_MEDIAN,
    TEAMS,
    Account,
    Proc,
    wchoice,
)

if TYPE_CHECKING:
    from .simulation import Simulation


def ticket(sim: Simulation, t: float) -> Proc:
    r = sim.rng
    requester, acc = sim.pick_active_user()
    tid = sim.new_id("tkt")
    channel = wchoice(r, DRAW_CHANNELS, DRAW_CHANNELS_CW)
    priority = wchoice(r, PRIORITIES, DRAW_PRIORITIES_CW)
    if acc.enterprise and r.random() < 0.7:
        team = "enterprise"
    else:
        team = wchoice(r, DRAW_TEAMS_STD, DRAW_TEAMS_STD_CW)
    created = t
    yield t, "ticket.created", {
        "ticket_id": tid,
        "account_id": acc.id,
        "requester_id": requester,
        "channel": channel,
        "priority": priority,
        "team": team,
    }
    if channel in ("chat", "web") and r.random() < 0.5:
        t += r.uniform(1.0, 20.0)
        yield t, "ticket.replied", _reply(tid, "bot", None, public=True)
    if r.random() < sim.profile.never_picked_up:
        return  # never picked up during this log: stays in the backlog as new
    first_reply = created + sim.delay(FIRST_REPLY_MEDIAN[priority], sim.profile.first_reply_sigma)
    t = max(t + 1.0, created + (first_reply - created) * r.uniform(0.05, 0.6))
    agent = r.choice(sim.agents[team])
    yield t, "ticket.assigned", {"ticket_id": tid, "team": team, "agent_id": agent}
    t += r.uniform(0.2, 2.0)
    yield t, "ticket.status_changed", _status(tid, "open", "new")
    status = "open"
    t = max(t + 1.0, first_reply)
    agent_time = 0.0
    exchanges = 0
    solved_once = False
    while True:
        # agent turn
        if r.random() < 0.15:
            spent = round(r.uniform(30.0, 300.0), 1)
            agent_time += spent
            yield t, "ticket.replied", _reply(tid, "agent", agent, public=False, spent=spent)
            t += r.uniform(10.0, 120.0)
        spent = round(r.uniform(60.0, 900.0), 1)
        agent_time += spent
        yield t, "ticket.replied", _reply(tid, "agent", agent, public=True, spent=spent)
        exchanges += 1
        t += r.uniform(0.5, 5.0)
        u = r.random()
        p_solve = 0.45 if exchanges == 1 else 0.6
        if u < p_solve:
            yield t, "ticket.solved", {
                "ticket_id": tid,
                "agent_id": agent,
                "time_spent_seconds": round(agent_time, 1),
            }
            if not solved_once:
                solved_once = True
                _after_solve(sim, t, tid, acc, requester, first_reply - created, exchanges)
            if r.random() < 0.10:
                t += sim.delay(6 * 3600.0, 1.0)
                yield t, "ticket.reopened", {"ticket_id": tid}
                t += r.uniform(0.2, 2.0)
                yield t, "ticket.replied", _reply(tid, "customer", requester, public=True)
                t += sim.delay(1800.0)
                continue
            t += sim.profile.close_after_seconds * r.uniform(1.0, 1.2)
            yield t, "ticket.closed", {"ticket_id": tid}
            return
        if u < p_solve + 0.05:
            yield t, "ticket.status_changed", _status(tid, "on_hold", status)
            if sim.profile.escalated and r.random() < sim.profile.escalated:
                t += min(5 * 86400.0, sim.delay(86400.0))  # waits on engineering: a day, at most five
            else:
                t += sim.delay(3 * 3600.0)  # waits on a colleague
            yield t, "ticket.status_changed", _status(tid, "open", "on_hold")
            status = "open"
            t += r.uniform(60.0, 900.0)
            continue
        # waiting on the customer
        yield t, "ticket.status_changed", _status(tid, "pending", status)
        status = "pending"
        if r.random() < 0.05:  # the customer never answers
            if not sim.profile.pending_auto_solve_seconds:
                return  # stays pending
            # Helpdesks solve a pending ticket after days without an answer.
            t += sim.profile.pending_auto_solve_seconds * r.uniform(1.0, 1.1)
            yield t, "ticket.solved", {"ticket_id": tid, "agent_id": agent, "time_spent_seconds": round(agent_time, 1)}
            t += sim.profile.close_after_seconds * r.uniform(1.0, 1.2)
            yield t, "ticket.closed", {"ticket_id": tid}
            return
        t += sim.delay(2700.0, 1.0)
        yield t, "ticket.replied", _reply(tid, "customer", requester, public=True)
        t += r.uniform(0.2, 2.0)
        yield t, "ticket.status_changed", _status(tid, "open", "pending")
        status = "open"
        u = r.random()
        if u < 0.06:  # escalated to another team
            t += sim.delay(600.0)
            team = r.choice([x for x in TEAMS if x != team])
            agent = r.choice(sim.agents[team])
            yield t, "ticket.assigned", {"ticket_id": tid, "team": team, "agent_id": agent}
        elif u < 0.10 and len(sim.agents[team]) > 1:  # handed to a colleague (shift end, expertise)
            t += sim.delay(600.0)
            agent = r.choice([x for x in sim.agents[team] if x != agent])
            yield t, "ticket.assigned", {"ticket_id": tid, "team": team, "agent_id": agent}
        t += sim.delay(FIRST_REPLY_MEDIAN[priority] * 0.6)


def _reply(
    tid: str, role: str, author: str | None, *, public: bool, spent: float | None = None
) -> dict[str, Any]:
    return {
        "ticket_id": tid,
        "author_role": role,
        "public": public,
        "author_id": author,
        "time_spent_seconds": spent,
    }


def _status(tid: str, status: str, previous: str | None) -> dict[str, Any]:
    return {"ticket_id": tid, "status": status, "previous_status": previous}


def _after_solve(
    sim: Simulation, t: float, tid: str, acc: Account, requester: str, first_reply: float, exchanges: int
) -> None:
    r = sim.rng
    # slow first replies and long threads make unhappier customers
    quality = 1.0 - min(1.0, first_reply / (8 * 3600.0 * sim.profile.pace)) * 0.5
    quality -= 0.1 * max(0, exchanges - 2)
    if r.random() < 0.35:
        sim.spawn(csat(sim, t, tid, acc, requester, quality))
    if r.random() < 0.10:
        sim.spawn(ces(sim, t, tid, acc, requester, quality))
