"""Synthetic customer-success traffic: coherent ticket, activity, subscription and survey lifecycles.

Functional core: everything here is pure and deterministic. A seeded ``random.Random`` drives a
small discrete-event simulation (one Python generator per lifecycle, merged through a heap in
event-time order), so the same seed and arguments always give the same bytes. No wall clock is
read except by ``generate_live`` through the clock the caller passes.

Emission order is the order of the returned list/iterator. Faults (duplicates, out-of-order,
late and invalid events) are applied afterwards by a streaming injector with its own RNG, so the
clean stream of a seed is the same with or without faults.

See docs/generator.md.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import time as _time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any, Generator

import orjson

from ..vocabulary import CHANNELS, CLIENTS, PRIORITIES

FAMILIES: tuple[str, ...] = ("ticket", "activity", "subscription", "survey")
#: data field that is the subject (= Kafka key) of each family.
SUBJECT_FIELDS: dict[str, str] = {
    "ticket": "ticket_id",
    "activity": "user_id",
    "subscription": "account_id",
    "survey": "response_id",
}
SOURCES: dict[str, str] = {
    "ticket": "generator/helpdesk",
    "activity": "generator/webapp",
    "subscription": "generator/billing",
    "survey": "generator/surveys",
}

TEAMS = ("technical", "billing", "onboarding", "enterprise")
FEATURES = (
    "dashboard.view",
    "report.export",
    "search",
    "integration.sync",
    "automation.run",
    "invite.sent",
    "billing.view",
    "comment.add",
    "file.upload",
    "api.call",
)
PLANS = ("starter", "growth", "business", "enterprise")
#: Monthly list price in minor units per currency; yearly = 10 x monthly (two months free).
PRICES: dict[str, dict[str, int]] = {
    "USD": {"starter": 2900, "growth": 9900, "business": 29900, "enterprise": 99900},
    "EUR": {"starter": 2700, "growth": 8900, "business": 27900, "enterprise": 92900},
    "GBP": {"starter": 2300, "growth": 7900, "business": 23900, "enterprise": 79900},
}

#: Kinds of invalid events and the EventRejected reasons decode_event may give for each.
INVALID_KINDS: dict[str, frozenset[str]] = {
    "malformed_json": frozenset({"malformed_json"}),
    "not_utf8": frozenset({"not_utf8"}),
    "unknown_type": frozenset({"unknown_type"}),
    "unsupported_version": frozenset({"unsupported_version"}),
    "wrong_field_type": frozenset({"invalid"}),
    "missing_field": frozenset({"invalid"}),
    "naive_timestamp": frozenset({"invalid"}),
    "subject_mismatch": frozenset({"subject_mismatch"}),
    "negative_amount": frozenset({"invalid"}),  # subscription events with an amount only
    "score_out_of_scale": frozenset({"invalid"}),  # survey events only
}
_UNIVERSAL_KINDS = tuple(k for k in INVALID_KINDS if k not in ("negative_amount", "score_out_of_scale"))


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One message of the log: where it goes, its exact bytes, and what was done to it."""

    family: str  # 'ticket' | 'activity' | 'subscription' | 'survey' (selects the topic)
    key: str  # Kafka key = envelope subject
    value: bytes  # wire JSON (or deliberately bad bytes when is_invalid)
    time: float  # true event time, epoch seconds (the JSON 'time', millisecond precision)
    emit_time: float  # position in the emission timeline; > time for late/out-of-order events
    type: str  # event type ('ticket.created', ...) as written in the value
    id: str  # envelope id (duplicates share it with their original)
    is_duplicate: bool = False
    is_out_of_order: bool = False
    is_late: bool = False
    is_invalid: bool = False
    invalid_kind: str | None = None  # a key of INVALID_KINDS when is_invalid

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode()


@dataclass(frozen=True, slots=True)
class Faults:
    """Fractions (of clean events) to corrupt, and how far to displace them. All default to 0."""

    duplicate: float = 0.0  # exact same bytes re-emitted up to duplicate_within s later
    out_of_order: float = 0.0  # emitted after a later event of the same key (<= out_of_order_within s apart)
    late: float = 0.0  # emitted late_by seconds after its event time
    invalid: float = 0.0  # an extra invalid message derived from the event (the event itself stays)
    late_by: float = 600.0
    duplicate_within: float = 60.0
    out_of_order_within: float = 30.0

    def __post_init__(self) -> None:
        for name in ("duplicate", "out_of_order", "late", "invalid"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"fault fraction {name} must be within 0..1")
        if self.duplicate + self.late > 1.0:
            raise ValueError("duplicate + late must not exceed 1")
        for name in ("late_by", "duplicate_within", "out_of_order_within"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")

    @property
    def any(self) -> bool:
        return bool(self.duplicate or self.out_of_order or self.late or self.invalid)

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Parse ``"duplicate=0.01,invalid=0.005,late_by=900"`` (empty string = no faults)."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, float] = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in known:
                raise ValueError(f"bad fault spec {part!r}; known: {', '.join(sorted(known))}")
            kwargs[name] = float(value)
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Profile:
    """Timing and mix knobs. Defaults are realistic; ``Profile.fast()`` compresses slow lifecycles."""

    initial_accounts: int = 150  # accounts (with users) that exist before the log starts
    pace: float = 1.0  # multiplies human delays in tickets and surveys (0.1 = ten times faster)
    trial_seconds: float = 14 * 86400.0
    month_seconds: float = 30 * 86400.0  # billing month; a year is 12 of them
    close_after_seconds: float = 3 * 86400.0  # solved -> closed when not reopened
    # weights of lifecycles started when traffic is below the target rate
    mix: tuple[tuple[str, float], ...] = (
        ("session", 0.36),
        ("ticket", 0.34),
        ("nps", 0.05),
        ("api_call", 0.12),
        ("signup", 0.05),
        ("new_account", 0.045),
        ("purchase", 0.035),
    )

    @classmethod
    def fast(cls) -> Profile:
        """Minutes instead of days, so trials convert and subscriptions renew within a demo."""
        return cls(pace=0.1, trial_seconds=600.0, month_seconds=1200.0, close_after_seconds=900.0)

    @classmethod
    def named(cls, name: str) -> Profile:
        if name == "realistic":
            return cls()
        if name == "fast":
            return cls.fast()
        raise ValueError(f"unknown profile {name!r} (realistic|fast)")


# --------------------------------------------------------------------------- helpers


def rfc3339(ts: float) -> str:
    """Epoch seconds -> '2025-06-15T12:00:00.123Z' (millisecond precision, UTC)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def _wchoice(rng: random.Random, items: tuple[Any, ...], cum: list[float]) -> Any:
    # what rng.choices(k=1) does, without its per-call overhead (hot path)
    return items[bisect.bisect(cum, rng.random() * cum[-1], 0, len(cum) - 1)]


def _cum(weights: Iterable[float]) -> list[float]:
    out, s = [], 0.0
    for w in weights:
        s += w
        out.append(s)
    return out


# Draw tables (value, weight); the order is part of a seed's output, the values are the contract's.
_CHANNELS = ("email", "chat", "web", "phone", "api", "social")
_CHANNELS_CW = _cum((0.40, 0.25, 0.15, 0.10, 0.05, 0.05))
_PRIORITIES_CW = _cum((0.20, 0.55, 0.20, 0.05))
_TEAMS_STD = ("technical", "billing", "onboarding")
_TEAMS_STD_CW = _cum((0.5, 0.3, 0.2))
#: median first agent reply delay (s) per priority, before pace
_FIRST_REPLY_MEDIAN = {"urgent": 240.0, "high": 720.0, "normal": 2400.0, "low": 7200.0}
_CLIENTS = ("web", "desktop", "ios", "android", "api")
_CLIENTS_CW = _cum((0.60, 0.15, 0.10, 0.10, 0.05))
assert set(_CHANNELS) == set(CHANNELS) and set(_CLIENTS) == set(CLIENTS)
_FEATURES_CW = _cum((0.25, 0.08, 0.15, 0.06, 0.08, 0.04, 0.03, 0.15, 0.08, 0.08))
_CURRENCIES = ("USD", "EUR", "GBP")
_CURRENCIES_CW = _cum((0.80, 0.12, 0.08))
_PLANS_CW = _cum((0.40, 0.35, 0.18, 0.07))
_NPS_CW = _cum((2, 1, 1, 2, 2, 4, 6, 12, 18, 26, 26))  # scores 0..10: ~45% promoters
_SCORES_0_10 = tuple(range(11))

_COMMENTS = {
    "good": ("Quick and helpful, thanks!", "Great support.", "Solved my problem fast.", "Love the product."),
    "mid": ("Fine, but took a while.", "OK.", "Answer was a bit generic.", "Works, mostly."),
    "bad": ("Still broken.", "Too slow to respond.", "Had to explain it three times.", "Considering other tools."),
}


def _comment(rng: random.Random, mood: str, p: float) -> str | None:
    return rng.choice(_COMMENTS[mood]) if rng.random() < p else None


class _Account:
    __slots__ = ("id", "users", "state", "enterprise", "trial_end")

    def __init__(self, acc_id: str, enterprise: bool = False) -> None:
        self.id = acc_id
        self.users: list[str] = []
        self.state = "free"  # free | trial | paying | churned (as far as this log knows)
        self.enterprise = enterprise
        self.trial_end = 0.0


Proc = Generator[tuple[float, str, dict[str, Any]], None, None]


# --------------------------------------------------------------------------- simulation


class _Simulation:
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
        self.kinds_cw = _cum(weights)
        self.starters: dict[str, Callable[[float], Proc]] = {
            "session": self._session,
            "ticket": self._ticket,
            "nps": self._nps,
            "api_call": self._api_call,
            "signup": self._signup,
            "new_account": self._new_account,
            "purchase": self._purchase,
        }
        unknown = set(kinds) - set(self.starters)
        if unknown:
            raise ValueError(f"unknown lifecycle kinds in mix: {sorted(unknown)}")
        self.agents = {team: [f"agent_{team}_{i}" for i in range(1, 7)] for team in TEAMS}
        self.accounts: list[_Account] = []
        self.users: list[tuple[str, _Account]] = []
        for _ in range(profile.initial_accounts):
            n_users = min(60, int(self.rng.paretovariate(1.2)))
            acc = _Account(self._id("acc"), enterprise=n_users >= 15)
            self.accounts.append(acc)
            for _ in range(n_users):
                self._add_user(acc, self._id("usr"))

    # -- plumbing

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{self.rng.getrandbits(64):016x}"

    def _add_user(self, acc: _Account, user_id: str) -> None:
        acc.users.append(user_id)
        self.users.append((user_id, acc))

    def _push(self, proc: Proc, item: tuple[float, str, dict[str, Any]] | None) -> None:
        if item is None:
            return
        t, typ, data = item
        self.seq += 1
        heapq.heappush(self.heap, (max(t, self.now), self.seq, proc, typ, data))

    def spawn(self, proc: Proc) -> None:
        """Start a lifecycle; its first event may lie in the future."""
        self._push(proc, next(proc, None))

    def _envelope(self, t: float, typ: str, data: dict[str, Any]) -> GeneratedEvent:
        family = typ.split(".", 1)[0]
        subject = data[SUBJECT_FIELDS[family]]
        ev_id = self._id("evt")
        doc = {
            "specversion": "1.0",
            "id": ev_id,
            "source": SOURCES[family],
            "type": typ,
            "time": rfc3339(t),
            "subject": subject,
            "schemaversion": 1,
            "data": data,
        }
        return GeneratedEvent(family, subject, orjson.dumps(doc), t, t, typ, ev_id)

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
                    kind = _wchoice(rng, self.kinds, self.kinds_cw)
                    self.spawn(self.starters[kind](t))
                continue
            if head >= until:
                return
            _, _, proc, typ, data = heapq.heappop(heap)
            # millisecond precision, as on the wire; rounding is monotonic so order holds
            t = round(head, 3)
            self.now = head
            self.count += 1
            yield self._envelope(t, typ, data)
            self._push(proc, next(proc, None))

    # -- small distributions

    def _delay(self, median: float, sigma: float = 0.8, *, paced: bool = True) -> float:
        d = self.rng.lognormvariate(math.log(median), sigma)
        return d * self.profile.pace if paced else d

    def _pick_user(self) -> tuple[str, _Account]:
        return self.rng.choice(self.users)

    # -- tickets

    def _ticket(self, t: float) -> Proc:
        r = self.rng
        requester, acc = self._pick_user()
        tid = self._id("tkt")
        channel = _wchoice(r, _CHANNELS, _CHANNELS_CW)
        priority = _wchoice(r, PRIORITIES, _PRIORITIES_CW)
        if acc.enterprise and r.random() < 0.7:
            team = "enterprise"
        else:
            team = _wchoice(r, _TEAMS_STD, _TEAMS_STD_CW)
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
            yield t, "ticket.replied", self._reply(tid, "bot", None, public=True)
        if r.random() < 0.03:
            return  # never picked up during this log: stays in the backlog as new
        first_reply = created + self._delay(_FIRST_REPLY_MEDIAN[priority])
        t = max(t + 1.0, created + (first_reply - created) * r.uniform(0.05, 0.6))
        agent = r.choice(self.agents[team])
        yield t, "ticket.assigned", {"ticket_id": tid, "team": team, "agent_id": agent}
        t += r.uniform(0.2, 2.0)
        yield t, "ticket.status_changed", self._status(tid, "open", "new")
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
                yield t, "ticket.replied", self._reply(tid, "agent", agent, public=False, spent=spent)
                t += r.uniform(10.0, 120.0)
            spent = round(r.uniform(60.0, 900.0), 1)
            agent_time += spent
            yield t, "ticket.replied", self._reply(tid, "agent", agent, public=True, spent=spent)
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
                    self._after_solve(t, tid, acc, requester, first_reply - created, exchanges)
                if r.random() < 0.10:
                    t += self._delay(6 * 3600.0, 1.0)
                    yield t, "ticket.reopened", {"ticket_id": tid}
                    t += r.uniform(0.2, 2.0)
                    yield t, "ticket.replied", self._reply(tid, "customer", requester, public=True)
                    t += self._delay(1800.0)
                    continue
                t += self.profile.close_after_seconds * r.uniform(1.0, 1.2)
                yield t, "ticket.closed", {"ticket_id": tid}
                return
            if u < p_solve + 0.05:
                yield t, "ticket.status_changed", self._status(tid, "on_hold", status)
                t += self._delay(3 * 3600.0)
                yield t, "ticket.status_changed", self._status(tid, "open", "on_hold")
                status = "open"
                t += r.uniform(60.0, 900.0)
                continue
            # waiting on the customer
            yield t, "ticket.status_changed", self._status(tid, "pending", status)
            status = "pending"
            if r.random() < 0.05:
                return  # customer never answers: stays pending
            t += self._delay(2700.0, 1.0)
            yield t, "ticket.replied", self._reply(tid, "customer", requester, public=True)
            t += r.uniform(0.2, 2.0)
            yield t, "ticket.status_changed", self._status(tid, "open", "pending")
            status = "open"
            if r.random() < 0.06:
                t += self._delay(600.0)
                team = r.choice([x for x in TEAMS if x != team])
                agent = r.choice(self.agents[team])
                yield t, "ticket.assigned", {"ticket_id": tid, "team": team, "agent_id": agent}
            t += self._delay(_FIRST_REPLY_MEDIAN[priority] * 0.6)

    @staticmethod
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

    @staticmethod
    def _status(tid: str, status: str, previous: str | None) -> dict[str, Any]:
        return {"ticket_id": tid, "status": status, "previous_status": previous}

    def _after_solve(
        self, t: float, tid: str, acc: _Account, requester: str, first_reply: float, exchanges: int
    ) -> None:
        r = self.rng
        # slow first replies and long threads make unhappier customers
        quality = 1.0 - min(1.0, first_reply / (8 * 3600.0 * self.profile.pace)) * 0.5
        quality -= 0.1 * max(0, exchanges - 2)
        if r.random() < 0.35:
            self.spawn(self._csat(t, tid, acc, requester, quality))
        if r.random() < 0.10:
            self.spawn(self._ces(t, tid, acc, requester, quality))

    # -- surveys

    def _csat(self, t: float, tid: str, acc: _Account, who: str, quality: float) -> Proc:
        r = self.rng
        t += self._delay(2400.0, 1.2)
        x = quality + r.gauss(0.0, 0.25)
        score = 5 if x > 0.85 else 4 if x > 0.65 else 3 if x > 0.45 else 2 if x > 0.3 else 1
        mood = "good" if score >= 4 else "mid" if score == 3 else "bad"
        yield t, "survey.csat", {
            "response_id": self._id("rsp"),
            "score": score,
            "scale_min": 1,
            "scale_max": 5,
            "comment": _comment(r, mood, 0.25),
            "account_id": acc.id,
            "ticket_id": tid,
            "respondent_id": who,
        }

    def _ces(self, t: float, tid: str, acc: _Account, who: str, quality: float) -> Proc:
        r = self.rng
        t += self._delay(3600.0, 1.2)
        score = max(1, min(7, round(1 + 6 * quality + r.gauss(0.0, 1.0))))
        mood = "good" if score >= 5 else "mid" if score >= 4 else "bad"
        yield t, "survey.ces", {
            "response_id": self._id("rsp"),
            "score": score,
            "scale_min": 1,
            "scale_max": 7,
            "comment": _comment(r, mood, 0.15),
            "account_id": acc.id,
            "ticket_id": tid,
            "respondent_id": who,
        }

    def _nps(self, t: float) -> Proc:
        r = self.rng
        who, acc = self._pick_user()
        score = _wchoice(r, _SCORES_0_10, _NPS_CW)
        if acc.state == "churned":
            score = max(0, score - 4)
        mood = "good" if score >= 9 else "mid" if score >= 7 else "bad"
        yield t, "survey.nps", {
            "response_id": self._id("rsp"),
            "score": score,
            "comment": _comment(r, mood, 0.3),
            "account_id": acc.id,
            "ticket_id": None,
            "respondent_id": who,
        }

    # -- activity

    def _session(self, t: float, user: tuple[str, _Account] | None = None) -> Proc:
        r = self.rng
        uid, acc = user or self._pick_user()
        sid = self._id("ses")
        yield t, "activity.login", {
            "user_id": uid,
            "account_id": acc.id,
            "session_id": sid,
            "client": _wchoice(r, _CLIENTS, _CLIENTS_CW),
        }
        end = t + min(4 * 3600.0, self._delay(600.0, 1.0, paced=False))
        hb_every = r.uniform(60.0, 300.0)
        feat_mean = r.uniform(60.0, 600.0)
        next_hb = t + hb_every
        next_feat = t + r.uniform(2.0, 30.0)  # something is used right after login
        last = t
        while True:
            nxt = min(next_hb, next_feat)
            if nxt > end:
                break
            last = nxt
            if nxt == next_feat:
                yield nxt, "activity.feature_used", {
                    "user_id": uid,
                    "account_id": acc.id,
                    "session_id": sid,
                    "feature": _wchoice(r, FEATURES, _FEATURES_CW),
                }
                next_feat += r.expovariate(1.0 / feat_mean)
            else:
                yield nxt, "activity.heartbeat", {"user_id": uid, "session_id": sid}
                next_hb += hb_every
        if r.random() < 0.7:  # otherwise the session just goes idle
            yield max(last, end) + r.uniform(0.5, 10.0), "activity.logout", {"user_id": uid, "session_id": sid}

    def _api_call(self, t: float) -> Proc:
        uid, acc = self._pick_user()
        yield t, "activity.feature_used", {
            "user_id": uid,
            "account_id": acc.id,
            "session_id": None,
            "feature": "api.call",
        }

    def _signup(self, t: float, acc: _Account | None = None) -> Proc:
        r = self.rng
        if acc is None:
            acc = r.choice(self.accounts)
        uid = self._id("usr")
        yield t, "activity.signed_up", {"user_id": uid, "account_id": acc.id}
        self._add_user(acc, uid)  # only now can other lifecycles pick this user
        self.spawn(self._session(t + r.uniform(5.0, 120.0), (uid, acc)))

    # -- accounts and subscriptions

    def _new_account(self, t: float) -> Proc:
        r = self.rng
        acc = _Account(self._id("acc"))
        uid = self._id("usr")
        yield t, "activity.signed_up", {"user_id": uid, "account_id": acc.id}
        self.accounts.append(acc)
        self._add_user(acc, uid)
        self.spawn(self._session(t + r.uniform(5.0, 120.0), (uid, acc)))
        plan = _wchoice(r, PLANS[:3], _PLANS_CW[:3])
        if r.random() < 0.25:  # sales-led: pays right away
            yield from self._paying(acc, t + r.uniform(60.0, 600.0), plan)
            return
        t += r.uniform(5.0, 60.0)
        trial_end = t + self.profile.trial_seconds
        yield t, "subscription.trial_started", {
            "account_id": acc.id,
            "plan": plan,
            "trial_ends_at": rfc3339(trial_end),
        }
        acc.state = "trial"
        acc.trial_end = trial_end
        for _ in range(r.choice((0, 0, 1, 1, 2, 4))):  # teammates join during the trial
            self.spawn(self._signup(t + r.uniform(0.05, 0.9) * self.profile.trial_seconds, acc))
        if r.random() < 0.3:
            t = trial_end - r.uniform(0.0, 0.5) * self.profile.trial_seconds
            yield from self._paying(acc, t, plan)
        # else the trial lapses silently (no event): conversion rate counts it as not converted

    def _purchase(self, t: float) -> Proc:
        r = self.rng
        free = [
            a
            for a in r.sample(self.accounts, min(8, len(self.accounts)))
            if a.state in ("free", "churned") or (a.state == "trial" and a.trial_end < t)
        ]
        if not free:
            yield from self._new_account(t)
            return
        acc = free[0]
        acc.state = "paying"  # reserve it so no second purchase starts meanwhile
        plan = "enterprise" if acc.enterprise and r.random() < 0.5 else _wchoice(r, PLANS[:3], _PLANS_CW[:3])
        yield from self._paying(acc, t, plan)

    def _paying(self, acc: _Account, t: float, plan: str) -> Proc:
        r = self.rng
        sub = self._id("sub")
        currency = _wchoice(r, _CURRENCIES, _CURRENCIES_CW)
        interval = "year" if r.random() < 0.2 else "month"
        period = self.profile.month_seconds * (12 if interval == "year" else 1)

        def amount(p: str) -> int:
            return PRICES[currency][p] * (10 if interval == "year" else 1)

        price = amount(plan)
        acc.state = "paying"
        yield t, "subscription.started", self._sub_terms(acc, sub, plan, price, currency, interval)
        t += r.uniform(1.0, 10.0)
        yield t, "subscription.payment", self._payment(acc, price, currency, "succeeded")
        period_start = t
        while True:
            period_end = period_start + period
            if r.random() < 0.12:
                idx = PLANS.index(plan)
                up = r.random() < 0.65
                new_idx = min(len(PLANS) - 1, idx + 1) if up else max(0, idx - 1)
                if new_idx != idx:
                    t = period_start + r.uniform(0.1, 0.9) * period
                    old_price, plan = price, PLANS[new_idx]
                    price = amount(plan)
                    yield t, "subscription.plan_changed", self._sub_terms(acc, sub, plan, price, currency, interval)
                    if price > old_price:  # prorated upgrade charge
                        remaining = (period_end - t) / period
                        t += r.uniform(1.0, 10.0)
                        charge = int((price - old_price) * remaining)
                        yield t, "subscription.payment", self._payment(acc, charge, currency, "succeeded")
            notice = min(7 * 86400.0, period * 0.25)
            t = period_end - notice
            yield t, "subscription.renewal_due", {
                "account_id": acc.id,
                "subscription_id": sub,
                "due_at": rfc3339(period_end),
            }
            if r.random() < (0.06 if interval == "month" else 0.15):
                t += r.uniform(0.05, 0.9) * notice
                yield t, "subscription.cancelled", {
                    "account_id": acc.id,
                    "subscription_id": sub,
                    "reason": "voluntary",
                    "effective_at": rfc3339(period_end),
                }
                yield period_end, "subscription.ended", {"account_id": acc.id, "subscription_id": sub}
                acc.state = "churned"
                return
            t = period_end
            failures = 0
            while r.random() < (0.07 if failures == 0 else 0.4):
                yield t, "subscription.payment", self._payment(acc, price, currency, "failed")
                failures += 1
                t += period / 30.0  # dunning retry a "day" later
                if failures == 3:
                    yield t, "subscription.cancelled", {
                        "account_id": acc.id,
                        "subscription_id": sub,
                        "reason": "involuntary",
                        "effective_at": None,
                    }
                    yield t + r.uniform(0.5, 5.0), "subscription.ended", {
                        "account_id": acc.id,
                        "subscription_id": sub,
                    }
                    acc.state = "churned"
                    return
            yield t, "subscription.payment", self._payment(acc, price, currency, "succeeded")
            t += r.uniform(0.5, 5.0)
            yield t, "subscription.renewed", {
                "account_id": acc.id,
                "subscription_id": sub,
                "amount_minor": price,
                "currency": currency,
                "interval": interval,
            }
            period_start = period_end

    @staticmethod
    def _sub_terms(
        acc: _Account, sub: str, plan: str, price: int, currency: str, interval: str
    ) -> dict[str, Any]:
        return {
            "account_id": acc.id,
            "subscription_id": sub,
            "plan": plan,
            "amount_minor": price,
            "currency": currency,
            "interval": interval,
            "quantity": 1,
        }

    def _payment(self, acc: _Account, amount: int, currency: str, status: str) -> dict[str, Any]:
        return {
            "account_id": acc.id,
            "payment_id": self._id("pay"),
            "amount_minor": amount,
            "currency": currency,
            "status": status,
        }


# --------------------------------------------------------------------------- faults


def _corrupt(ev: GeneratedEvent, kind: str, rng: random.Random, new_id: str) -> bytes:
    """Bytes of an invalid message of ``kind`` derived from a valid event (given a fresh id)."""
    doc = orjson.loads(ev.value)
    doc["id"] = new_id
    if kind == "malformed_json":
        raw = orjson.dumps(doc)
        return raw[: rng.randint(1, len(raw) - 2)]  # a cut-off object never parses
    data = doc["data"]
    subject_field = SUBJECT_FIELDS[ev.family]
    if kind == "not_utf8":
        # orjson refuses to write invalid UTF-8, so splice the bad bytes in afterwards
        return orjson.dumps(doc).replace(b'"source":"', b'"source":"\xff\xfe', 1)
    if kind == "unknown_type":
        doc["type"] = f"{ev.family}.teleported"
    elif kind == "unsupported_version":
        doc["schemaversion"] = 2
    elif kind == "wrong_field_type":
        # a nested object fits no field of any data model
        others = [k for k in data if k != subject_field]
        if others:
            data[rng.choice(others)] = {"unexpected": [1, 2]}
        else:  # e.g. ticket.closed carries only its id
            data[subject_field] = rng.randint(1, 10**9)
    elif kind == "missing_field":
        del data[subject_field]
    elif kind == "naive_timestamp":
        doc["time"] = doc["time"].removesuffix("Z")
    elif kind == "subject_mismatch":
        doc["subject"] = f"{doc['subject']}-other"
    elif kind == "negative_amount":
        data["amount_minor"] = -1 - rng.randint(0, abs(data["amount_minor"]))
    elif kind == "score_out_of_scale":
        hi = data.get("scale_max", 10)
        lo = data.get("scale_min", 0)
        data["score"] = hi + rng.randint(1, 5) if rng.random() < 0.5 else lo - rng.randint(1, 5)
    else:  # pragma: no cover - guarded by INVALID_KINDS
        raise ValueError(kind)
    return orjson.dumps(doc)


def _invalid_kinds_for(ev: GeneratedEvent) -> tuple[str, ...]:
    kinds = _UNIVERSAL_KINDS
    if ev.family == "survey":
        return kinds + ("score_out_of_scale",) * 2
    if ev.type in (
        "subscription.started",
        "subscription.plan_changed",
        "subscription.renewed",
        "subscription.payment",
    ):
        return kinds + ("negative_amount",) * 2
    return kinds


class _FaultInjector:
    """Streaming fault injection: a heap of pending messages ordered by emission time.

    A message can be released once the clean stream has moved more than the out-of-order window
    past its emission time, because only events within that window may still be moved.
    """

    def __init__(self, faults: Faults, seed: int) -> None:
        self.f = faults
        self.rng = random.Random(f"faults:{seed}")
        self.heap: list[list[Any]] = []  # [emit_time, seq, event, alive]
        self.seq = 0
        self.window = faults.out_of_order_within if faults.out_of_order else 0.0
        self.last: dict[str, list[Any] | None] = {}  # key -> its latest in-place pending entry
        self.n = 0
        self.n_with_pred = 0

    def _push(self, emit: float, ev: GeneratedEvent) -> list[Any]:
        self.seq += 1
        entry = [emit, self.seq, ev, True]
        heapq.heappush(self.heap, entry)
        return entry

    def _release(self, before: float) -> Iterator[GeneratedEvent]:
        heap = self.heap
        while heap and heap[0][0] < before:
            entry = heapq.heappop(heap)
            if entry[3]:
                ev = entry[2]
                if self.last.get(ev.key) is entry:
                    del self.last[ev.key]
                yield ev

    def feed(self, ev: GeneratedEvent) -> Iterator[GeneratedEvent]:
        f, r, t = self.f, self.rng, ev.time
        yield from self._release(t - self.window)
        self.n += 1
        u = r.random()
        if u < f.late:
            self._push(t + f.late_by, replace(ev, emit_time=t + f.late_by, is_late=True))
            entry = None
        else:
            entry = self._push(t, ev)
            if u < f.late + f.duplicate:
                emit = t + r.uniform(0.01, f.duplicate_within)
                self._push(emit, replace(ev, emit_time=emit, is_duplicate=True))
                entry = None  # a swap could move the original behind its copy
        if f.invalid and r.random() < f.invalid:
            kind = r.choice(_invalid_kinds_for(ev))
            new_id = f"evt_{r.getrandbits(64):016x}"
            bad = _corrupt(ev, kind, r, new_id)
            typ = f"{ev.family}.teleported" if kind == "unknown_type" else ev.type
            self._push(t, replace(ev, value=bad, type=typ, id=new_id, is_invalid=True, invalid_kind=kind))
        if f.out_of_order and entry is not None:
            prev = self.last.get(ev.key)
            if prev is not None and prev[3] and prev[2].time < t and t - prev[2].time <= f.out_of_order_within:
                self.n_with_pred += 1
                # only events with a recent predecessor can be swapped: scale up to hit the fraction
                if r.random() < f.out_of_order * self.n / self.n_with_pred:
                    prev[3] = False
                    self._push(t, replace(prev[2], emit_time=t, is_out_of_order=True))
                    entry = None  # neither of the pair is swapped again
            self.last[ev.key] = entry

    def flush(self) -> Iterator[GeneratedEvent]:
        yield from self._release(math.inf)


def apply_faults(clean: Iterable[GeneratedEvent], faults: Faults | None, seed: int) -> Iterator[GeneratedEvent]:
    """Clean events in event-time order -> the emitted log with faults applied."""
    if faults is None or not faults.any:
        yield from clean
        return
    inj = _FaultInjector(faults, seed)
    for ev in clean:
        yield from inj.feed(ev)
    yield from inj.flush()


# --------------------------------------------------------------------------- entry points


def iter_generate(
    seed: int,
    start: float,
    duration_seconds: float,
    rate: float,
    *,
    faults: Faults | None = None,
    profile: Profile | None = None,
) -> Iterator[GeneratedEvent]:
    """Lazy form of :func:`generate`."""
    sim = _Simulation(seed, start, rate, profile or Profile())
    return apply_faults(sim.events(until=start + duration_seconds), faults, seed)


def generate(
    seed: int,
    start: float,
    duration_seconds: float,
    rate: float,
    *,
    faults: Faults | None = None,
    profile: Profile | None = None,
) -> list[GeneratedEvent]:
    """The log of ``duration_seconds`` of event time from ``start`` at about ``rate`` events/s.

    The world starts at ``start`` (no lifecycle is in flight before it); lifecycles still open at
    the end are cut off (unsolved tickets, running subscriptions). Late and duplicate copies whose
    emission falls after the end are still included, at the tail.
    """
    return list(iter_generate(seed, start, duration_seconds, rate, faults=faults, profile=profile))


def generate_live(
    seed: int,
    rate: float,
    *,
    clock: Callable[[], float] = _time.time,
    faults: Faults | None = None,
    profile: Profile | None = None,
) -> Iterator[GeneratedEvent]:
    """Endless log starting at ``clock()``. The caller sends each event when ``clock()`` reaches
    its ``emit_time``; then event time = now (minus the deliberate lateness of late events)."""
    sim = _Simulation(seed, clock(), rate, profile or Profile())
    return apply_faults(sim.events(), faults, seed)


def summarize(events: Iterable[GeneratedEvent]) -> dict[str, int]:
    """Counts by family and by fault flag (for progress lines and tests)."""
    out: dict[str, int] = {"total": 0, **{f: 0 for f in FAMILIES}}
    out.update(duplicate=0, out_of_order=0, late=0, invalid=0)
    for ev in events:
        out["total"] += 1
        out[ev.family] += 1
        out["duplicate"] += ev.is_duplicate
        out["out_of_order"] += ev.is_out_of_order
        out["late"] += ev.is_late
        out["invalid"] += ev.is_invalid
    return out
