"""The discrete-event simulation: one Python generator per lifecycle, merged through a heap in
event-time order; a seeded ``random.Random`` drives every choice.

Two ways to start lifecycles. The dense world (``Profile()``) gates a Poisson stream of start
slots at the target rate: a slot starts a lifecycle only while fewer than ``rate * elapsed``
events were emitted, so the rate holds from the first second. The sized world
(``Profile.users_per_rate > 0``) has ``rate * users_per_rate`` users, and each kind of lifecycle
starts as a Poisson process at its rate per user per day: the event rate follows from the world,
and ratios such as tickets per active user hold at any rate. A warm start (``history_seconds``)
puts the recent past in place first, as backdated events (generator/history.py).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .activity import api_call, session, signup
from .message import GeneratedEvent, envelope
from .subscriptions import new_account, purchase
from .surveys import nps
from .tickets import ticket
from .world import TEAMS, Account, Profile, Proc, cum, wchoice

#: Lifecycle kinds a Profile's mix may name, and the function that starts each at a time.
STARTERS: dict[str, Callable[[Simulation, float], Proc]] = {
    "session": session,
    "ticket": ticket,
    "nps": nps,
    "api_call": api_call,
    "signup": signup,
    "new_account": new_account,
    "purchase": purchase,
}
#: In the warm start, users' past sessions are summed up by their last activity (history.py):
#: these kinds start live only.
LIVE_ONLY = frozenset({"session", "api_call"})
#: Sessions begin this long before the log's start (as traces, ``trace_before``), so the ones
#: under way at the start are there: the longest session lasts 4 h.
SESSION_PREROLL = 4 * 3600.0
DAY = 86400.0
User = tuple[str, Account]


class Phase(NamedTuple):
    """Lifecycle starts until ``until``: a Poisson stream at ``rate``, kinds drawn by weight."""

    until: float
    rate: float
    kinds: tuple[str, ...]
    kinds_cw: list[float]


class Simulation:
    """Clean events in event-time order; see the module docstring for how lifecycles start."""

    def __init__(self, seed: int, start: float, rate: float, profile: Profile) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rng = random.Random(seed)
        self.profile = profile
        self.rate = rate
        self.start = start
        self.sized = profile.users_per_rate > 0
        self.origin = start - profile.history_seconds if self.sized else start
        self.now = self.origin
        self.count = 0
        self.heap: list[tuple[float, int, Proc, str, dict[str, Any]]] = []
        self.seq = 0
        kinds, weights = zip(*profile.mix, strict=True)
        unknown = set(kinds) - set(STARTERS)
        if unknown:
            raise ValueError(f"unknown lifecycle kinds in mix: {sorted(unknown)}")
        self.accounts: list[Account] = []
        self.users: list[User] = []
        # Users by activity class (sized world): sessions, API calls and tickets come mostly
        # from those who come back often.
        self.class_shares_cw = cum(share for share, _ in profile.activity_classes)
        self.class_pick_cw = cum(share * rel for share, rel in profile.activity_classes)
        self.by_class: list[list[User]] = [[] for _ in profile.activity_classes]
        self.user_class: dict[str, int] = {}
        if not self.sized:
            self.phases = [Phase(math.inf, rate, kinds, cum(weights))]
            self.next_slot = start + self.rng.expovariate(rate)
            self.agents = {team: [f"agent_{team}_{i}" for i in range(1, 7)] for team in TEAMS}
            for _ in range(profile.initial_accounts):
                self._new_world_account()
            return
        target_users = max(1, round(rate * profile.users_per_rate))
        while len(self.users) < target_users:
            self._new_world_account()
        per_day = {k: w * len(self.users) / DAY for k, w in profile.mix}  # starts per second
        self.phases = self._sized_phases(per_day)
        self.agents = self._sized_agents(per_day.get("ticket", 0.0) * DAY)
        self.next_slot = self.origin
        self._draw_next_slot()
        if profile.history_seconds > 0:
            from .history import warm_start

            warm_start(self)

    # -- the world

    def _new_world_account(self) -> None:
        n_users = min(60, int(self.rng.paretovariate(1.2)))
        acc = Account(self.new_id("acc"), enterprise=n_users >= 15)
        self.accounts.append(acc)
        for _ in range(n_users):
            self.add_user(acc, self.new_id("usr"))

    def _sized_phases(self, per_second: dict[str, float]) -> list[Phase]:
        """The warm start's history by age (subscriptions, accounts and surveys over the whole
        history, tickets over its last days, sessions over its last hours), then live."""
        history = self.profile.history_seconds
        ticket_from = self.start - min(self.profile.ticket_history_seconds, history)
        sessions_from = self.start - min(SESSION_PREROLL, history)

        def running_at(t: float) -> tuple[str, ...]:
            def runs(kind: str) -> bool:
                if t >= self.start:
                    return True
                if kind == "ticket":
                    return t >= ticket_from
                if kind == "session":
                    return t >= sessions_from
                return kind not in LIVE_ONLY
            return tuple(k for k in per_second if per_second[k] > 0 and runs(k))

        edges = sorted({self.origin, ticket_from, sessions_from, self.start})
        phases = []
        for begin, until in zip(edges, [*edges[1:], math.inf]):
            kinds = running_at(begin)
            phases.append(Phase(until, sum(per_second[k] for k in kinds), kinds, cum(per_second[k] for k in kinds)))
        return [p for p in phases if p.until > self.origin]

    def _sized_agents(self, tickets_per_day: float) -> dict[str, list[str]]:
        per_agent = self.profile.tickets_per_agent_day or 25.0
        n = max(2, math.ceil(tickets_per_day / len(TEAMS) / per_agent))
        return {team: [f"agent_{team}_{i}" for i in range(1, n + 1)] for team in TEAMS}

    def class_sessions_per_day(self, index: int) -> float:
        """Expected sessions per day of one user of activity class ``index``."""
        classes = self.profile.activity_classes
        mean_rel = sum(share * rel for share, rel in classes)
        return dict(self.profile.mix).get("session", 0.0) * classes[index][1] / mean_rel

    # -- what lifecycles use

    def new_id(self, prefix: str) -> str:
        """An opaque id with 64 random bits from the seed (``tkt_…``, ``usr_…``)."""
        return f"{prefix}_{self.rng.getrandbits(64):016x}"

    def add_user(self, acc: Account, user_id: str) -> None:
        acc.users.append(user_id)
        self.users.append((user_id, acc))
        if self.by_class:
            index = _index(self.rng, self.class_shares_cw)
            self.by_class[index].append((user_id, acc))
            self.user_class[user_id] = index

    def spawn(self, proc: Proc) -> None:
        """Start a lifecycle; its first event may lie in the future."""
        self._push(proc, next(proc, None))

    def delay(self, median: float, sigma: float = 0.8, *, paced: bool = True) -> float:
        """A log-normal human delay (s) around ``median``, scaled by the profile's pace."""
        d = self.rng.lognormvariate(math.log(median), sigma)
        return d * self.profile.pace if paced else d

    def pick_user(self) -> User:
        """Any user (surveys are sent to everyone)."""
        return self.rng.choice(self.users)

    def pick_active_user(self) -> User:
        """A user weighted by how often they use the product (any user in the dense world)."""
        if not self.by_class:
            return self.rng.choice(self.users)
        while True:
            members = self.by_class[_index(self.rng, self.class_pick_cw)]
            if members:
                return self.rng.choice(members)

    # -- the event loop

    def _push(self, proc: Proc, item: tuple[float, str, dict[str, Any]] | None) -> None:
        if item is None:
            return
        t, typ, data = item
        self.seq += 1
        heapq.heappush(self.heap, (max(t, self.now), self.seq, proc, typ, data))

    def _draw_next_slot(self) -> None:
        """The next start slot of the sized world (the phase's rate may change on the way)."""
        t = self.next_slot
        while True:
            phase = self.phases[0]
            t = t + self.rng.expovariate(phase.rate) if phase.rate > 0 else math.inf
            if t < phase.until or len(self.phases) == 1:
                self.next_slot = t
                return
            t = phase.until  # memoryless: start over at the boundary with the next phase's rate
            self.phases.pop(0)

    def events(self, until: float = math.inf) -> Iterator[GeneratedEvent]:
        """Clean events with event time < ``until``, in event-time order (endless if inf).
        A warm start's backdated events come first (event time before the log's start)."""
        rng, heap = self.rng, self.heap
        while True:
            head = heap[0][0] if heap else math.inf
            if self.next_slot <= head:
                t = self.next_slot
                if t >= until:
                    return
                phase = self.phases[0]
                if self.sized:
                    self.now = t
                    self._draw_next_slot()
                    kind = wchoice(rng, phase.kinds, phase.kinds_cw)
                    proc = STARTERS[kind](self, t)
                    # Sessions under way when the log starts: no ramp-up of the event rate.
                    self.spawn(trace_before(proc, self.start) if kind == "session" and t < self.start else proc)
                    continue
                self.next_slot = t + rng.expovariate(self.rate)
                if self.count < self.rate * (t - self.origin):
                    self.now = t
                    kind = wchoice(rng, phase.kinds, phase.kinds_cw)
                    self.spawn(STARTERS[kind](self, t))
                continue
            if head >= until:
                return
            _, _, proc, typ, data = heapq.heappop(heap)
            # millisecond precision, as on the wire; rounding is monotonic so order holds
            t = round(head, 3)
            self.now = max(self.now, head)
            self.count += 1
            yield envelope(t, typ, data, self.new_id("evt"))
            self._push(proc, next(proc, None))


def trace_before(proc: Proc, start: float) -> Proc:
    """A lifecycle begun before the log's start, as the log shows it: its first event, its last
    one before ``start`` (so the gap to what follows is short), then everything from ``start``."""
    first = next(proc, None)
    if first is None:
        return
    yield first
    last = None
    for item in proc:
        if item[0] < start:
            last = item
            continue
        if last is not None:
            yield last
        yield item
        yield from proc
        return
    if last is not None:
        yield last  # over before the start: its end (a logout or the last heartbeat)


def _index(rng: random.Random, cw: list[float]) -> int:
    return wchoice(rng, tuple(range(len(cw))), cw)
