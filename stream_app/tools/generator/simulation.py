"""The discrete-event simulation: one Python generator per lifecycle, merged through a heap in
event-time order, started at the target rate; a seeded ``random.Random`` drives every choice."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

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


class Simulation:
    """Discrete-event simulation producing clean events in event-time order.

    Rate control: candidate start slots arrive as a Poisson process at ``rate``; a slot starts a
    new lifecycle only while fewer than ``rate * elapsed`` events have been emitted. So a fresh
    world reaches the target at once, and once many lifecycles are in flight their follow-up
    events take the place of new starts.
    """

    def __init__(self, seed: int, start: float, rate: float, profile: Profile) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rng = random.Random(seed)
        self.profile = profile
        self.rate = rate
        self.origin = start
        self.now = start
        self.count = 0
        self.heap: list[tuple[float, int, Proc, str, dict[str, Any]]] = []
        self.seq = 0
        self.next_slot = start + self.rng.expovariate(rate)
        kinds, weights = zip(*profile.mix, strict=True)
        self.kinds: tuple[str, ...] = kinds
        self.kinds_cw = cum(weights)
        unknown = set(kinds) - set(STARTERS)
        if unknown:
            raise ValueError(f"unknown lifecycle kinds in mix: {sorted(unknown)}")
        self.agents = {team: [f"agent_{team}_{i}" for i in range(1, 7)] for team in TEAMS}
        self.accounts: list[Account] = []
        self.users: list[tuple[str, Account]] = []
        for _ in range(profile.initial_accounts):
            n_users = min(60, int(self.rng.paretovariate(1.2)))
            acc = Account(self.new_id("acc"), enterprise=n_users >= 15)
            self.accounts.append(acc)
            for _ in range(n_users):
                self.add_user(acc, self.new_id("usr"))

    # -- what lifecycles use

    def new_id(self, prefix: str) -> str:
        """An opaque id with 64 random bits from the seed (``tkt_…``, ``usr_…``)."""
        return f"{prefix}_{self.rng.getrandbits(64):016x}"

    def add_user(self, acc: Account, user_id: str) -> None:
        acc.users.append(user_id)
        self.users.append((user_id, acc))

    def spawn(self, proc: Proc) -> None:
        """Start a lifecycle; its first event may lie in the future."""
        self._push(proc, next(proc, None))

    def delay(self, median: float, sigma: float = 0.8, *, paced: bool = True) -> float:
        """A log-normal human delay (s) around ``median``, scaled by the profile's pace."""
        d = self.rng.lognormvariate(math.log(median), sigma)
        return d * self.profile.pace if paced else d

    def pick_user(self) -> tuple[str, Account]:
        return self.rng.choice(self.users)

    # -- the event loop

    def _push(self, proc: Proc, item: tuple[float, str, dict[str, Any]] | None) -> None:
        if item is None:
            return
        t, typ, data = item
        self.seq += 1
        heapq.heappush(self.heap, (max(t, self.now), self.seq, proc, typ, data))

    def events(self, until: float = math.inf) -> Iterator[GeneratedEvent]:
        """Clean events with event time < ``until``, in event-time order (endless if inf)."""
        rng, heap = self.rng, self.heap
        while True:
            head = heap[0][0] if heap else math.inf
            if self.next_slot <= head:
                t = self.next_slot
                if t >= until:
                    return
                self.next_slot = t + rng.expovariate(self.rate)
                if self.count < self.rate * (t - self.origin):
                    self.now = t
                    kind = wchoice(rng, self.kinds, self.kinds_cw)
                    self.spawn(STARTERS[kind](self, t))
                continue
            if head >= until:
                return
            _, _, proc, typ, data = heapq.heappop(heap)
            # millisecond precision, as on the wire; rounding is monotonic so order holds
            t = round(head, 3)
            self.now = head
            self.count += 1
            yield envelope(t, typ, data, self.new_id("evt"))
            self._push(proc, next(proc, None))
