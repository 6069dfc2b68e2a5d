"""Product usage metrics (activity events): per-user state, its contributions, the derived index.

Same engine pattern as :mod:`stream_app.core.support` (state -> contributions -> index, the index
moved by the difference of old and new contributions, rebuilt from states after a rebalance).

What differs: a user sends an event every few minutes (heartbeats), so the state cannot keep one
fact per event id like a ticket does. Every fact is a *join* over the user's events (min, max,
set union), so the same events in any order, or an event applied twice, give the same state.
Pruning is relative to the user's newest event time ``M`` (itself a max): facts older than
``M - keep`` are dropped, and a fact that old can never come back through a later event, so
pruning commutes with the joins. (Exception, documented: a session whose own events span more
than the session retention is cut in two.)

Distinct counts are exact without sketches: each user contributes *one* point at its last
activity time, so the sum of a rolling counter over a window is the number of distinct users
whose last activity is in the window, which (read at now >= every event time) is the number of
distinct users active in it. The same trick per (user, feature) and per (user, client).

Definitions of every metric: docs/metrics.md (Product usage section).
"""

from __future__ import annotations

import base64
import hashlib
import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from stream_app.core.index import ContributionIndex
from stream_app.core.labels import LabelGuard
from stream_app.core.windows import (
    DEFAULT_BUCKET_SECONDS,
    RollingCounter,
    RollingHistogram,
    check_windows,
    window_label,
)

PREFIX = "stream_app_usage_"
DAY = 86400
#: Fixed windows of the per-user facts handed to the customer-health work (account_signal).
SIGNAL_SESSION_SECONDS = 7 * DAY
SIGNAL_FEATURE_SECONDS = 30 * DAY
DEFAULT_SESSION_EDGES = (60, 300, 600, 1800, 3600, 7200, 14400, 28800)

SIGNED_UP = "activity.signed_up"
LOGIN = "activity.login"
LOGOUT = "activity.logout"
FEATURE_USED = "activity.feature_used"
ACTIVITY_TYPES = frozenset({SIGNED_UP, LOGIN, LOGOUT, "activity.heartbeat", FEATURE_USED})

# one letter per client in the session code; "x" marks a session closed by a logout
_CLIENT_CODE = {"web": "w", "desktop": "d", "ios": "i", "android": "a", "api": "p"}
_CODE_CLIENT = {v: k for k, v in _CLIENT_CODE.items()}  # "o" (unknown value) -> None -> other
_ENDED = "x"

Contribution = tuple[str, tuple[str, ...], float | None, Any]


# --------------------------------------------------------------------------- configuration


@dataclass
class UsageConfig:
    """Everything the usage metrics need. ``labels`` is stateful (feature cap): one per worker.

    The state limits (how long sessions, features and per-client facts are kept behind a user's
    newest event) are derived from the windows, so ``apply`` must get the same config.
    """

    bucket_seconds: int = DEFAULT_BUCKET_SECONDS
    active_windows: tuple[int, ...] = (DAY, 7 * DAY, 30 * DAY)  # DAU/WAU/MAU, per client, signups
    session_windows: tuple[int, ...] = (3600, DAY, 7 * DAY)  # sessions started, durations
    feature_windows: tuple[int, ...] = (3600, DAY, 7 * DAY)  # users per feature, user-feature pairs
    known_seconds: int = 90 * DAY  # "known users" window, and how long a quiet user's state lives
    grace_seconds: int = 3600
    idle_timeout_seconds: float = 1800.0
    adoption_seconds: float = 7 * DAY
    max_features_per_user: int = 32
    recent_ids: int = 2  # ids of the user's newest events kept to recognise redeliveries
    labels: LabelGuard = field(default_factory=LabelGuard)
    session_edges: tuple[float, ...] = DEFAULT_SESSION_EDGES

    def __post_init__(self) -> None:
        g = self.bucket_seconds
        self.active_windows = check_windows(self.active_windows, g)
        self.session_windows = check_windows(self.session_windows, g)
        self.feature_windows = check_windows(self.feature_windows, g)
        (self.known_seconds,) = check_windows((self.known_seconds,), g)
        if self.grace_seconds < 0:
            raise ValueError("grace_seconds must be >= 0")
        if self.idle_timeout_seconds <= 0:
            raise ValueError("idle_timeout_seconds must be > 0")
        if self.adoption_seconds < 0:
            raise ValueError("adoption_seconds must be >= 0")
        if self.max_features_per_user < 1 or self.recent_ids < 1:
            raise ValueError("max_features_per_user and recent_ids must be >= 1")
        for name in ("client", "feature"):
            if name not in self.labels.rules:
                raise ValueError(f"label guard has no rule for {name!r}")

    @property
    def max_window(self) -> int:
        return max(self.active_windows + self.session_windows + self.feature_windows + (self.known_seconds,))

    @property
    def horizon(self) -> int:
        """max window + grace: what WatermarkTracker needs (the known-users window, 90 d by
        default). Each store of the index evicts on its own, shorter horizon."""
        return self.max_window + self.grace_seconds

    # how long facts are kept behind the user's newest event time
    @property
    def session_keep(self) -> int:
        return max(max(self.session_windows), SIGNAL_SESSION_SECONDS) + self.grace_seconds

    @property
    def feature_keep(self) -> int:
        return max(max(self.feature_windows), SIGNAL_FEATURE_SECONDS) + self.grace_seconds

    @property
    def client_keep(self) -> int:
        return max(self.active_windows) + self.grace_seconds


_DEFAULT_CFG: UsageConfig | None = None


def _default_cfg() -> UsageConfig:
    global _DEFAULT_CFG
    if _DEFAULT_CFG is None:
        _DEFAULT_CFG = UsageConfig()
    return _DEFAULT_CFG


# --------------------------------------------------------------------------- state


def _field(data: Any, name: str, default: Any = None) -> Any:
    v = data.get(name, default) if isinstance(data, Mapping) else getattr(data, name, default)
    return getattr(v, "value", v) if v is not None and not isinstance(v, (str, bool, int, float)) else v


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
    """

    account: list | None = None
    signup: int | None = None
    first_active: int | None = None
    last_active: int | None = None
    sessions: dict[str, list] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)
    clients: dict[str, int] = field(default_factory=dict)
    recent: list[list] = field(default_factory=list)

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
        dict(state.sessions), dict(state.features), dict(state.clients), state.recent,
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


# --------------------------------------------------------------------------- contributions


def session_client(code: str) -> str | None:
    """Client of a session for its labels: the first by name of its logins' clients (None when
    no login was seen or the value is unknown -> label 'other')."""
    names = [_CODE_CLIENT[c] for c in code if c in _CODE_CLIENT]
    return min(names) if names else None


def contributions(state: UserState, cfg: UsageConfig) -> list[Contribution]:
    """Everything one user adds to the usage aggregates (see docs/metrics.md)."""
    out: list[Contribution] = [("tracked", (), None, 1)]
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

    per = {}
    for name, t in state.features.items():
        out.append(("feature_pairs", (), t, 1))
        lab = (guard.value("feature", name),)
        if per.get(lab, float("-inf")) < t:
            per[lab] = t
    for lab, t in per.items():
        out.append(("feature_users", lab, t, 1))
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


# --------------------------------------------------------------------------- index

_COUNTERS = {
    # contribution -> (metric suffix, help, label names without window)
    "active": ("active_users", "Distinct users with a qualifying activity (login, heartbeat, feature_used, "
               "logout) in the window. Exact: each user counts once, at its last activity.", ()),
    "client_active": ("client_active_users", "Distinct users with activity in a session logged in from "
                      "this client, in the window (a user on two clients counts in both).", ("client",)),
    "known": ("known_users", "Distinct users with any event (signup or activity) in the window: the base "
              "of the active user rate.", ()),
    "signed_up": ("signups", "Users whose signup time is in the window (adoption denominator).", ()),
    "adopted": ("adopted_signups", "Users who signed up in the window and were active within the adoption "
                "period of their signup (adoption numerator).", ()),
    "session_started": ("sessions_started", "Sessions whose first event is in the window.", ("client",)),
    "feature_users": ("feature_users", "Distinct users who used the feature in the window ('other': distinct "
                      "users of any feature outside the label cap).", ("feature",)),
    "feature_pairs": ("user_feature_pairs", "Distinct (user, feature) pairs used in the window: features "
                      "used per active user = this / active_users.", ()),
}
_UNLABELLED = ("active", "known", "signed_up", "adopted", "feature_pairs")  # always published, zeros too


class UsageIndex(ContributionIndex):
    """Usage aggregates derived from user states. Not thread-safe (use the event loop)."""

    def _reset(self) -> None:
        cfg = self.cfg
        g = cfg.bucket_seconds
        windows = {
            "active": cfg.active_windows,
            "client_active": cfg.active_windows,
            "known": (cfg.known_seconds,),
            "signed_up": cfg.active_windows,
            "adopted": cfg.active_windows,
            "session_started": cfg.session_windows,
            "feature_users": cfg.feature_windows,
            "feature_pairs": cfg.feature_windows,
        }
        self._counters = {k: RollingCounter(w, g) for k, w in windows.items()}
        self._duration = RollingHistogram(cfg.session_edges, cfg.session_windows, g)
        # each store evicts on its own horizon (its longest window + grace): the family cutoff
        # follows the 90 d known-users window, session buckets need only 7 d
        self._offsets = [
            (s, cfg.horizon - (max(s.windows) + cfg.grace_seconds))
            for s in (*self._counters.values(), self._duration)
        ]
        self._clocks: dict[tuple, int] = {}  # (labels, (first, last)) -> sessions not known to be over
        self._seen_open: set[tuple] = set()
        self._tracked = 0
        self.dropped = 0

    # -- updates ----------------------------------------------------------
    def _apply(self, c: Contribution, k: int) -> int:
        name, labels, ts, value = c
        store = self._counters.get(name)
        if store is not None:
            return 0 if store.add(labels, ts, k * value) or k < 0 else k
        if name == "session_duration":
            sign = 1 if k > 0 else -1
            ok = True
            for _ in range(abs(k)):
                ok = self._duration.observe(labels, ts, value, sign)
            return 0 if ok or k < 0 else k
        if name == "session_clock":
            key = (labels, value)
            n = self._clocks.get(key, 0) + k
            if n:
                self._clocks[key] = n
            else:
                self._clocks.pop(key, None)
            self._seen_open.add(labels)
            return 0
        if name == "tracked":
            self._tracked += k * value
            return 0
        raise ValueError(f"unknown usage contribution {name!r}")

    def _contributions(self, state: UserState) -> list[Contribution]:
        return contributions(state, self.cfg)

    def evict(self, cutoff_ts: float | None) -> int:
        """Drop window buckets given the family cutoff (``WatermarkTracker.cutoff()`` with
        ``cfg.horizon``); stores with shorter windows drop proportionally more recent buckets."""
        if cutoff_ts is None:
            return 0
        return sum(store.evict(cutoff_ts + off) for store, off in self._offsets)

    # -- exposition -------------------------------------------------------
    def collect(self, now: float) -> list[Metric]:
        """Prometheus metric families read at wall-clock ``now`` (epoch seconds)."""
        cfg = self.cfg
        out: list[Metric] = []
        for key, (suffix, doc, labelnames) in _COUNTERS.items():
            store = self._counters[key]
            views = store.windows_at(now)
            fam = GaugeMetricFamily(PREFIX + suffix, doc, labels=labelnames + ("window",))
            keys = [()] if key in _UNLABELLED else sorted(views[max(store.windows)])
            for labels in keys:
                for w in store.windows:
                    fam.add_metric(list(labels) + [window_label(w)], views[w].get(labels, 0))
            out.append(fam)

        # sessions without a logout: over once idle longer than the timeout at now, then observed
        # at their last event; otherwise open now
        h = self._duration
        g = cfg.bucket_seconds
        p = int(now // g)
        nb = {w: w // g for w in cfg.session_windows}
        oldest = p - max(nb.values())
        views = {w: {lab: list(cell) for lab, cell in v.items()} for w, v in h.windows_at(now).items()}
        open_now: dict[tuple, int] = {}
        idle = cfg.idle_timeout_seconds
        for (labels, (first, last)), n in self._clocks.items():
            if now - last > idle:
                b = int(last // g)
                if b <= oldest:
                    continue
                dur = last - first
                slot = bisect_left(h.edges, dur)
                for w, k in nb.items():
                    if b > p - k:
                        cell = views[w].get(labels)
                        if cell is None:
                            cell = views[w][labels] = [0] * (len(h.edges) + 1) + [0.0, 0]
                        cell[slot] += n
                        cell[-2] += n * dur
                        cell[-1] += n
            else:
                open_now[labels] = open_now.get(labels, 0) + n
        fam = GaugeHistogramMetricFamily(
            PREFIX + "session_duration_seconds",
            "Duration (last event - first event) of sessions that ended in the window, by end time; a "
            "session ends at a logout or once idle longer than the timeout.",
            labels=("client", "window"),
        )
        for labels in sorted(views[max(cfg.session_windows)]):
            for w in cfg.session_windows:
                buckets, s, _ = h.cumulative(views[w].get(labels))
                fam.add_metric(list(labels) + [window_label(w)], buckets, s)
        out.append(fam)
        fam = GaugeMetricFamily(
            PREFIX + "open_sessions",
            "Sessions open now: no logout and last event within the idle timeout.",
            labels=("client",),
        )
        for labels in sorted(self._seen_open):
            fam.add_metric(list(labels), open_now.get(labels, 0))
        out.append(fam)

        out.append(GaugeMetricFamily(PREFIX + "users_tracked", "User states held by this worker.",
                                     value=self._tracked))
        dropped = CounterMetricFamily(
            PREFIX + "window_dropped_contributions",
            "Window contributions refused because their bucket was already evicted (too late).",
        )
        dropped.add_metric([], self.dropped)
        out.append(dropped)
        return out
