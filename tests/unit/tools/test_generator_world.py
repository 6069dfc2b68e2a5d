"""The SaaS world (Profile.saas(), what the demo runs, `stream-app generate --profile saas`) is
believable: properties of one simulated day at the demo's default rate, checked against bounds stated in
docs/generator.md ("The SaaS world"). The numbers come from the generated events, the bounds
from what a B2B SaaS support organisation looks like, not from the generator's parameters."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

import orjson
import pytest

from stream_app.tools.generator import DEMO_RATE, Profile, iter_generate
from stream_app.tools.generator.simulation import Simulation
from stream_app.vocabulary import DEFAULT_SLA_TARGETS

START = 1_750_000_000.0
DAY = 86400.0
OPEN = frozenset({"new", "open", "pending", "on_hold"})  # the backlog's statuses

# --- the bounds (docs/generator.md) ---------------------------------------------------------
RATE_TOLERANCE = 0.10  # live events/s within 10 % of the rate asked for
STICKINESS = (0.20, 0.50)  # DAU / MAU
TICKETS_PER_DAU = (0.01, 0.08)  # tickets created per day per daily active user
SESSIONS_PER_DAU = (1.2, 4.0)
BACKLOG_DRIFT = 0.30  # every hourly backlog within 30 % of the day's mean, no trend
WAITING_AT_MOST = 5.5 * DAY  # longest stay in pending or on hold
FIRST_REPLY_AT_RISK = (0.02, 0.20)  # share of tickets whose first reply took > 80 % of target
FIRST_REPLY_BREACHED = (0.01, 0.10)  # share whose first reply took longer than the target
RESOLUTION_BREACHED = (0.002, 0.10)  # share not solved within the resolution target


@dataclass
class Ticket:
    created: float
    priority: str
    status: str = "new"
    first_reply: float | None = None
    solved: float | None = None
    waiting_since: float | None = None  # entered pending / on hold


@dataclass
class Day:
    """What one day of generated events shows, computed from the events alone."""

    end: float
    history: int = 0
    live: int = 0
    last_active: dict[str, float] = field(default_factory=dict)
    logins: list[float] = field(default_factory=list)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    backlog_by_hour: list[int] = field(default_factory=list)
    longest_wait: float = 0.0

    def active(self, window: float) -> int:
        return sum(1 for t in self.last_active.values() if t >= self.end - window)


def observe(rate: float, seconds: float, seed: int = 3) -> Day:
    day = Day(end=START + seconds)
    next_hour = START + 3600
    for ev in iter_generate(seed, START, seconds, rate, profile=Profile.saas()):
        while ev.time >= next_hour:
            day.backlog_by_hour.append(sum(t.status in OPEN for t in day.tickets.values()))
            next_hour += 3600
        if ev.time < START:
            day.history += 1
        else:
            day.live += 1
        if ev.family == "activity":
            user = ev.key
            day.last_active[user] = ev.time
            if ev.type == "activity.login":
                day.logins.append(ev.time)
        elif ev.family == "ticket":
            _ticket_event(day, ev, orjson.loads(ev.value)["data"])
    return day


def _ticket_event(day: Day, ev, data: dict) -> None:
    if ev.type == "ticket.created":
        day.tickets[ev.key] = Ticket(ev.time, data["priority"])
        return
    t = day.tickets[ev.key]
    status = {"ticket.solved": "solved", "ticket.reopened": "open", "ticket.closed": "closed"}.get(ev.type)
    if ev.type == "ticket.status_changed":
        status = data["status"]
    elif ev.type == "ticket.replied" and data["author_role"] == "agent" and data["public"]:
        t.first_reply = t.first_reply or ev.time
    if ev.type == "ticket.solved":
        t.solved = t.solved or ev.time
    if status is None:
        return
    if t.waiting_since is not None and status not in ("pending", "on_hold"):
        day.longest_wait = max(day.longest_wait, ev.time - t.waiting_since)
        t.waiting_since = None
    elif status in ("pending", "on_hold") and t.waiting_since is None:
        t.waiting_since = ev.time
    t.status = status


@pytest.fixture(scope="module")
def day() -> Day:
    return observe(DEMO_RATE, DAY)


def test_the_event_rate_is_the_one_asked_for(day):
    assert day.live / DAY == pytest.approx(DEMO_RATE, rel=RATE_TOLERANCE)
    assert day.history > 0, "the warm start puts the recent past in place"


def test_stickiness_is_well_under_100_percent(day):
    dau, mau = day.active(DAY), day.active(30 * DAY)
    assert STICKINESS[0] <= dau / mau <= STICKINESS[1], (dau, mau)


def test_tickets_and_sessions_per_daily_active_user(day):
    dau = day.active(DAY)
    created = sum(1 for t in day.tickets.values() if t.created >= START)
    sessions = sum(1 for t in day.logins if t >= START)
    assert TICKETS_PER_DAU[0] <= created / dau <= TICKETS_PER_DAU[1], (created, dau)
    assert SESSIONS_PER_DAU[0] <= sessions / dau <= SESSIONS_PER_DAU[1], (sessions, dau)


def test_the_backlog_levels_off(day):
    hourly = day.backlog_by_hour
    assert len(hourly) >= 23
    mean = statistics.fmean(hourly)
    assert mean > 0
    assert all(abs(b - mean) <= BACKLOG_DRIFT * mean for b in hourly), hourly
    first, last = statistics.fmean(hourly[:6]), statistics.fmean(hourly[-6:])
    assert last <= first * (1 + BACKLOG_DRIFT), hourly


def test_pending_and_on_hold_tickets_resolve(day):
    still = [t.waiting_since for t in day.tickets.values() if t.waiting_since is not None]
    assert day.longest_wait <= WAITING_AT_MOST
    assert all(day.end - since <= WAITING_AT_MOST for since in still)
    assert not [t for t in day.tickets.values() if t.status == "new" and day.end - t.created > DAY]


def test_a_share_of_tickets_reaches_sla_risk_and_breach(day):
    # Every ticket with its whole life in the log (the warm start's began up to 6 days back),
    # created at least 6 hours before the end.
    live = [t for t in day.tickets.values() if START - 5 * DAY <= t.created < day.end - DAY / 4]
    n = len(live)
    assert n > 300

    def share(pred) -> float:
        return sum(1 for t in live if pred(t)) / n

    def first_reply(t: Ticket) -> float:
        return (t.first_reply or day.end) - t.created

    def target(t: Ticket, which: int) -> float:
        return DEFAULT_SLA_TARGETS[t.priority][which] or math.inf

    at_risk = share(lambda t: first_reply(t) > 0.8 * target(t, 0))
    breached = share(lambda t: first_reply(t) > target(t, 0))
    resolution = share(lambda t: (t.solved or day.end) - t.created > target(t, 1))
    assert FIRST_REPLY_AT_RISK[0] <= at_risk <= FIRST_REPLY_AT_RISK[1], at_risk
    assert FIRST_REPLY_BREACHED[0] <= breached <= FIRST_REPLY_BREACHED[1], breached
    assert RESOLUTION_BREACHED[0] <= resolution <= RESOLUTION_BREACHED[1], resolution


def test_the_world_scales_with_the_rate():
    small, large = (Simulation(1, START, rate, Profile.saas()) for rate in (5.0, 40.0))
    assert len(large.users) / len(small.users) == pytest.approx(8, rel=0.05)
    assert len(large.agents["billing"]) > len(small.agents["billing"])
    # A few hours at another rate: the rate still follows, the mix of families does not change.
    quarter = observe(5.0, 6 * 3600, seed=11)
    assert quarter.live / (6 * 3600) == pytest.approx(5.0, rel=RATE_TOLERANCE)


def test_the_dense_world_is_what_it_was():
    """Profile() (the tests' and benchmarks' world) is not sized and has no warm start."""
    events = list(iter_generate(2, START, 600, 50.0))
    assert events[0].time >= START
    assert Counter(e.family for e in events)["ticket"] / len(events) > 0.15
