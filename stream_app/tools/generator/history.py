"""The warm start of the sized world: the log begins with the recent past already in place, so
a fresh worker shows a company that has been running, not one born a second ago.

- every user's last activity within ``history_seconds`` (one ``feature_used`` outside a
  session, at a time drawn from how often the user comes back): the active-user windows
  (DAU/WAU/MAU) start full, stickiness is the world's, not 100 %;
- the accounts that already pay: a subscription started months ago, with its renewals, plan
  changes and churn of the last weeks;
- tickets, trials, new accounts and surveys of the past days come from the simulation's own
  history phases (simulation.py), so the backlog and the SLA clocks are in their steady state.

Backdated events are emitted first, in event-time order (their ``time`` lies before the log's
start, ``emit_time`` equals it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .activity import last_activity
from .subscriptions import existing_subscription

if TYPE_CHECKING:
    from .simulation import Simulation

DAY = 86400.0
#: Share of accounts that already pay when the log starts (large accounts more often).
PAYING = 0.35
PAYING_ENTERPRISE = 0.8


def warm_start(sim: Simulation) -> None:
    r = sim.rng
    start, span = sim.start, sim.profile.history_seconds
    now, sim.now = sim.now, -math.inf  # backdated lifecycles go on the heap at their own times
    try:
        for index, members in enumerate(sim.by_class):
            per_day = sim.class_sessions_per_day(index)
            for user in members:
                gap = r.expovariate(per_day) * DAY if per_day > 0 else math.inf
                if gap < span:
                    sim.spawn(last_activity(sim, start - gap, user))
        for acc in sim.accounts:
            if r.random() < (PAYING_ENTERPRISE if acc.enterprise else PAYING):
                sim.spawn(existing_subscription(sim, acc, start))
    finally:
        sim.now = now
