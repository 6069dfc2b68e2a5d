"""A user's facts (UserState), how an activity event adds to them, and what they contribute to the
aggregates and to customer health."""

from __future__ import annotations

import base64
import bisect
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from stream_app.engine.fields import field as _field

from stream_app.engine.expiry import retention_bucket
from .config import (
    ACTIVE_DAYS_KEPT,
    ACTIVITY_TYPES,
    DAY,
    Contribution,
    FEATURE_USED,
    LOGIN,
    POWER_DAYS,
    LOGOUT,
    SIGNAL_FEATURE_SECONDS,
    SIGNAL_SESSION_SECONDS,
    SIGNED_UP,
    UsageConfig,
    _CLIENT_CODE,
    _CODE_CLIENT,
    _ENDED,
    _default_cfg,
)


# --------------------------------------------------------------------------- state


def short_hash(s: str) -> str:
    """8-character digest of an id: session keys and recent event ids stay small whatever the
    id length (48 bits: a collision within one user's few keys is negligible)."""
    return base64.urlsafe_b64encode(hashlib.blake2b(s.encode(), digest_size=6).digest()).decode()


@dataclass(slots=True)
class UserState:
    """Facts about one user, each a join over its events (see module docstring). Times are
    whole epoch seconds (event times floored).

    account:  [ts, account_id] of the latest event naming an account (ties: larger id)
    signup:   earliest signed_up time
    first_active / last_active: earliest / newest qualifying activity time (login, heartbeat,
              feature_used, logout)
    sessions: short_hash(session_id) -> [first ts, last ts, code]; code = sorted client letters
              of the session's logins (w web, d desktop, i ios, a android, p api, o unknown value;
              empty while no login was seen) + "x" once a logout was seen
    features: feature -> last use time (at most max_features_per_user, the most recent)
    clients:  client letter -> last event time of a session logged in from that client
    recent:   [[ts, short_hash(event id)], ...] of the user's newest events, newest first
    days:     UTC days (epoch day numbers, sorted) with qualifying activity, the last
              ACTIVE_DAYS_KEPT days up to the newest event's day (lifecycle, power users)
    """

    account: list | None = None
    signup: int | None = None
    first_active: int | None = None
    last_active: int | None = None
    sessions: dict[str, list] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)
    clients: dict[str, int] = field(default_factory=dict)
    recent: list[list] = field(default_factory=list)
    days: list[int] = field(default_factory=list)

    def has_event(self, event_id: str) -> bool:
        """True if ``event_id`` is one of the user's newest events (a redelivery). Older events
        are not remembered; applying one again changes nothing (facts are joins)."""
        h = short_hash(str(event_id))
        return any(r[1] == h for r in self.recent)

    def max_ts(self) -> int | None:
        """Newest event time of the user (any type)."""
        return self.recent[0][0] if self.recent else None

    @property
    def account_id(self) -> str | None:
        return self.account[1] if self.account else None

    def to_dict(self) -> dict:
        """Compact JSON form: every time is stored as whole seconds back from the newest event
        time ``m`` (small integers instead of 13-digit epochs), a session as [start, length,
        code]."""
        m = self.max_ts()
        if m is None:
            return {"v": 1}
        out: dict[str, Any] = {"v": 1, "m": m}
        if self.account is not None:
            out["a"] = [m - self.account[0], self.account[1]]
        if self.signup is not None:
            out["su"] = m - self.signup
        if self.first_active is not None:
            out["fa"] = m - self.first_active
            out["la"] = m - self.last_active
        if self.sessions:
            out["s"] = {k: [m - f, la - f, c] for k, (f, la, c) in self.sessions.items()}  # start, length
        if self.features:
            out["f"] = {k: m - t for k, t in self.features.items()}
        if self.clients:
            out["c"] = {k: m - t for k, t in self.clients.items()}
        out["r"] = [[m - t, h] for t, h in self.recent]
        if self.days:
            out["d"] = [m // DAY - d for d in self.days]
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> UserState:
        if d.get("v") != 1:
            raise ValueError(f"unsupported user state version {d.get('v')!r}")
        m = d.get("m")
        if m is None:
            return cls()
        a, su, fa, la = d.get("a"), d.get("su"), d.get("fa"), d.get("la")
        return cls(
            account=[m - a[0], a[1]] if a is not None else None,
            signup=m - su if su is not None else None,
            first_active=m - fa if fa is not None else None,
            last_active=m - la if la is not None else None,
            sessions={k: [m - f, m - f + n, c] for k, (f, n, c) in d.get("s", {}).items()},
            features={k: m - t for k, t in d.get("f", {}).items()},
            clients={k: m - t for k, t in d.get("c", {}).items()},
            recent=[[m - t, h] for t, h in d.get("r", [])],
            days=sorted(m // DAY - x for x in d.get("d", [])),
        )


def _read(event: Any) -> tuple[str, str, int, Any]:
    """(type, id, event time floored to whole seconds, data). Usage metrics have no use for
    sub-second times, and whole seconds keep the state small; the floor never changes the
    (integer-aligned) bucket of an event."""
    if isinstance(event, Mapping):
        ts = event.get("ts", event.get("time"))
        return event["type"], str(event["id"]), math.floor(float(ts)), event.get("data", {})
    return event.type, str(event.id), math.floor(float(event.ts)), event.data


def _client_code(raw: Any) -> str:
    return _CLIENT_CODE.get(str(raw) if raw is not None else "web", "o")


def apply(state: UserState | None, event: Any, cfg: UsageConfig | None = None) -> tuple[UserState, bool]:
    """Record the facts of an activity event. Pure: never mutates ``state``.

    Returns ``(new_state, True)``, or ``(state, False)`` when nothing changed: a redelivery, or an
    event that adds no fact (an out-of-order heartbeat inside its session's known span that is not
    among the user's newest events). The shell counts those as duplicates and skips the index.
    ``cfg`` sets the state limits (pass the worker's config; defaults otherwise).
    """
    cfg = cfg or _default_cfg()
    etype, eid, ts, data = _read(event)
    if etype not in ACTIVITY_TYPES:
        raise ValueError(f"not an activity event type: {etype!r}")
    if state is None:
        state = UserState()
    h = short_hash(eid)
    if any(r[1] == h for r in state.recent):
        return state, False
    new = UserState(
        state.account, state.signup, state.first_active, state.last_active,
        dict(state.sessions), dict(state.features), dict(state.clients), state.recent, state.days,
    )
    recent = state.recent + [[ts, h]]
    recent.sort(key=lambda r: (r[0], r[1]), reverse=True)
    new.recent = recent[: cfg.recent_ids]

    acc = _field(data, "account_id")
    if acc:
        acc = str(acc)
        if new.account is None or (ts, acc) > (new.account[0], new.account[1]):
            new.account = [ts, acc]
    if etype == SIGNED_UP:
        new.signup = ts if new.signup is None else min(new.signup, ts)
    else:
        new.first_active = ts if new.first_active is None else min(new.first_active, ts)
        new.last_active = ts if new.last_active is None else max(new.last_active, ts)
        if ts // DAY not in new.days:
            new.days = sorted([*new.days, ts // DAY])
        sid = _field(data, "session_id")
        if sid:
            _touch_session(new, short_hash(str(sid)), ts, etype, data)
        if etype == FEATURE_USED:
            name = str(_field(data, "feature"))
            old = new.features.get(name)
            if old is None or ts > old:
                new.features[name] = ts
    _prune(new, cfg)
    if new == state:
        return state, False
    return new, True


def _touch_session(new: UserState, key: str, ts: int, etype: str, data: Any) -> None:
    rec = new.sessions.get(key)
    if rec is None:
        first, last, code = ts, ts, ""
    else:
        first, last, code = min(rec[0], ts), max(rec[1], ts), rec[2]
    clients = set(code.replace(_ENDED, ""))
    ended = _ENDED in code
    if etype == LOGIN:
        clients.add(_client_code(_field(data, "client")))
    elif etype == LOGOUT:
        ended = True
    code = "".join(sorted(clients)) + (_ENDED if ended else "")
    new.sessions[key] = [first, last, code]
    for c in clients:  # the session's activity counts for every client it was logged in from
        if new.clients.get(c, float("-inf")) < last:
            new.clients[c] = last


def _prune(new: UserState, cfg: UsageConfig) -> None:
    m = new.recent[0][0]
    th = m - cfg.session_keep
    if any(s[1] < th for s in new.sessions.values()):
        new.sessions = {k: s for k, s in new.sessions.items() if s[1] >= th}
    th = m - cfg.feature_keep
    feats = new.features
    if any(t < th for t in feats.values()):
        feats = new.features = {f: t for f, t in feats.items() if t >= th}
    if len(feats) > cfg.max_features_per_user:  # keep the most recent (ties: larger name)
        keep = sorted(feats.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[: cfg.max_features_per_user]
        new.features = dict(keep)
    th = m - cfg.client_keep
    if any(t < th for t in new.clients.values()):
        new.clients = {c: t for c, t in new.clients.items() if t >= th}
    th = m // DAY - ACTIVE_DAYS_KEPT + 1
    if new.days and new.days[0] < th:
        new.days = [d for d in new.days if d >= th]


# --------------------------------------------------------------------------- contributions


def session_client(code: str) -> str | None:
    """Client of a session for its labels: the first by name of its logins' clients (None when
    no login was seen or the value is unknown -> label 'other')."""
    names = [_CODE_CLIENT[c] for c in code if c in _CODE_CLIENT]
    return min(names) if names else None


def contributions(state: UserState, cfg: UsageConfig) -> list[Contribution]:
    """Everything one user adds to the usage aggregates (see docs/metrics.md)."""
    # retained-entity gauge: the user counts until its retention time (stream_app.engine.expiry)
    out: list[Contribution] = [("tracked", (retention_bucket(retention_until(state, cfg), cfg.bucket_seconds),), None, 1)]
    m = state.max_ts()
    if m is None:
        return out
    guard = cfg.labels
    out.append(("known", (), m, 1))
    la = state.last_active
    if la is not None:
        out.append(("active", (), la, 1))
    per: dict[tuple, float] = {}
    for code, t in state.clients.items():
        lab = (guard.value("client", _CODE_CLIENT.get(code)),)
        if per.get(lab, float("-inf")) < t:
            per[lab] = t
    for lab, t in per.items():
        out.append(("client_active", lab, t, 1))
    if state.signup is not None:
        out.append(("signed_up", (), state.signup, 1))
        if state.first_active is not None and state.first_active <= state.signup + cfg.adoption_seconds:
            out.append(("adopted", (), state.signup, 1))

    idle = cfg.idle_timeout_seconds
    for first, last, code in state.sessions.values():
        lab = (guard.value("client", session_client(code)),)
        out.append(("session_started", lab, first, 1))
        # ended by a logout, or idle: a later event of the user came more than the timeout after
        # the session's last one (so at any now >= that event, now - last > timeout)
        if _ENDED in code or m - last > idle:
            out.append(("session_duration", lab, last, last - first))
        else:
            out.append(("session_clock", lab, None, (first, last)))  # judged at collect(now)

    out += _lifecycle(state, m)

    per = {}
    for name, t in state.features.items():
        out.append(("feature_pairs", (), t, 1))
        lab = (guard.value("feature", name),)
        if per.get(lab, float("-inf")) < t:
            per[lab] = t
    for lab, t in per.items():
        out.append(("feature_users", lab, t, 1))
    return out


def week_of(day: int) -> int:
    """ISO week (Monday start) of an epoch day number (1970-01-01, day 0, was a Thursday)."""
    return (day + 3) // 7


def _status(active: bool, active_before: bool, first: bool) -> str | None:
    if active:
        return "new" if first else "current" if active_before else "resurrected"
    return "dormant" if active_before else None


def _lifecycle(state: UserState, m: int) -> list[Contribution]:
    """Lifecycle status of the user per day and week, and its active-day counts, for the days a
    read at ``now >= m`` can ask about: today is the newest event's day ``A`` or later, so the
    periods around ``A`` (a later period has nothing but "dormant" right after the last active
    one) and power-curve days ``A .. A + 27`` (afterwards the user counts no active day)."""
    if not state.days or state.first_active is None:
        return []
    out: list[Contribution] = []
    days = set(state.days)
    a = m // DAY
    first = state.first_active // DAY
    for d in (a - 1, a, a + 1):
        st = _status(d in days, d - 1 in days, d == first)
        if st:
            out.append(("lifecycle", ("day", d, st), None, 1))
    weeks = {week_of(d) for d in days}
    wa = week_of(a)
    for w in (wa - 1, wa, wa + 1):
        st = _status(w in weeks, w - 1 in weeks, w == week_of(first))
        if st:
            out.append(("lifecycle", ("week", w, st), None, 1))
    # k(t) = active days in (t - n, t] for the days t = a .. a + n - 1 (days are all <= a), as
    # runs of equal k: (n, first day, last day, k), so a user adds a few items, not 35
    for n in POWER_DAYS:
        run = None
        for t in range(a, a + n):
            k = len(state.days) - bisect.bisect_right(state.days, t - n)
            if run is not None and run[3] == k:
                run[2] = t
                continue
            if run is not None and run[3]:
                out.append(("power", tuple(run), None, 1))
            run = [n, t, t, k]
        if run is not None and run[3]:
            out.append(("power", tuple(run), None, 1))
    return out


def retention_until(state: UserState, cfg: UsageConfig) -> float | None:
    """A user affects metrics until its newest event leaves the longest window (known users):
    once ``cutoff = high watermark - horizon`` passes its newest event time it may be deleted."""
    return state.max_ts()


def account_signal(state: UserState | None, now: float) -> dict | None:
    """Per-user facts for the customer-health work, or None when the user's account is unknown.

    ``{"account_id", "last_active_ts" (None if never active), "sessions_7d" (sessions started in
    (now - 7 d, now]), "features_30d" (distinct features used in (now - 30 d, now], at most
    max_features_per_user)}``. Plain time comparisons, no buckets.
    """
    if state is None or state.account is None:
        return None
    lo7, lo30 = now - SIGNAL_SESSION_SECONDS, now - SIGNAL_FEATURE_SECONDS
    return {
        "account_id": state.account[1],
        "last_active_ts": state.last_active,
        "sessions_7d": sum(1 for s in state.sessions.values() if lo7 < s[0] <= now),
        "features_30d": sum(1 for t in state.features.values() if lo30 < t <= now),
    }
