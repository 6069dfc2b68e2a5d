"""Support (ticket) metrics: per-ticket state, its contributions, and the derived index.

Engine pattern (every family copies it):

* ``TicketState`` is the single source of truth per ticket (kept by the caller in a Faust table
  keyed by ticket id, as ``state.to_dict()``). It records *facts* keyed by event id (timestamps by
  event time, author roles, statuses with their event times), never running aggregates, so any
  arrival order of the same events gives the same state, and a duplicate delivery (same id) is a
  no-op.
* ``contributions(state, cfg)`` derives from a state everything it adds to the aggregates: a list of
  ``(metric, labels, ts, value)`` tuples (``ts`` is the event time bucketed in windows, or None for
  current-state gauges).
* ``SupportIndex`` holds the aggregates. On every state change the caller calls
  ``index.update(contributions(old), contributions(new))``; on partition assignment it rebuilds by
  adding every state's contributions. Aggregates can never drift from the states.

Definitions of every metric: docs/metrics.md (Support section). Durations are clamped at 0 (a
reply timestamped before its ticket's creation by clock skew counts as 0 s).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

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

PREFIX = "stream_app_support_"
BASE_LABELS = ("team", "channel", "priority")
RESOLVED = frozenset({"solved", "closed"})
WAITING = frozenset({"new", "open", "on_hold"})  # requester wait: pending is excluded
SLA_KINDS = ("first_reply", "resolution")

Contribution = tuple[str, tuple[str, ...], float | None, Any]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SlaTarget:
    """Targets in seconds for one priority; None = no target of that kind."""

    first_reply_seconds: float | None = None
    resolution_seconds: float | None = None


def default_sla_targets() -> dict[str, SlaTarget]:
    return {
        "urgent": SlaTarget(1800, 4 * 3600),
        "high": SlaTarget(3600, 8 * 3600),
        "normal": SlaTarget(4 * 3600, 24 * 3600),
        "low": SlaTarget(24 * 3600, 72 * 3600),
    }


def _parse_hhmm(v: str | time) -> time:
    if isinstance(v, time):
        return v
    h, m = v.split(":")
    return time(int(h), int(m))


@dataclass(frozen=True)
class BusinessCalendar:
    """Opening hours of a team: the same open/close local time on each business weekday
    (0 = Monday), in an IANA timezone, minus holidays. ``close`` may be "24:00"."""

    timezone: str = "UTC"
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    open: str = "09:00"
    close: str = "17:00"
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        tz = ZoneInfo(self.timezone)  # raises on an unknown zone
        o = _parse_hhmm(self.open)
        close_24 = self.close == "24:00"
        c = time(0, 0) if close_24 else _parse_hhmm(self.close)
        if not close_24 and c <= o:
            raise ValueError("close must be after open (overnight hours are not supported)")
        object.__setattr__(self, "weekdays", frozenset(self.weekdays))
        # accept ISO strings so a calendar can come straight from JSON settings
        hol = frozenset(date.fromisoformat(h) if isinstance(h, str) else h for h in self.holidays)
        object.__setattr__(self, "holidays", hol)
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_o", o)
        object.__setattr__(self, "_c", c)
        object.__setattr__(self, "_c24", close_24)

    def business_seconds(self, start: float, end: float) -> float:
        """Seconds of [start, end) (epoch seconds) inside opening hours. DST-aware: each day's
        open and close are local wall-clock times converted with the zone's rules."""
        if end <= start:
            return 0.0
        tz = self._tz  # type: ignore[attr-defined]
        d = datetime.fromtimestamp(start, tz).date()
        last = datetime.fromtimestamp(end, tz).date()
        total = 0.0
        one = timedelta(days=1)
        while d <= last:
            if d.weekday() in self.weekdays and d not in self.holidays:
                o = datetime.combine(d, self._o, tzinfo=tz).timestamp()  # type: ignore[attr-defined]
                if self._c24:  # type: ignore[attr-defined]
                    c = datetime.combine(d + one, time(0, 0), tzinfo=tz).timestamp()
                else:
                    c = datetime.combine(d, self._c, tzinfo=tz).timestamp()  # type: ignore[attr-defined]
                lo = o if o > start else start
                hi = c if c < end else end
                if hi > lo:
                    total += hi - lo
            d += one
        return total


DEFAULT_RESPONSE_EDGES = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
DEFAULT_RESOLUTION_EDGES = (900, 3600, 14400, 28800, 86400, 172800, 259200, 604800)
DEFAULT_HANDLE_TIME_EDGES = (60, 300, 600, 1800, 3600, 7200, 14400)


@dataclass
class SupportConfig:
    """Everything the support metrics need. ``labels`` is the only stateful member (capped
    labels remember the values they admitted): use one config per worker."""

    bucket_seconds: int = DEFAULT_BUCKET_SECONDS
    volume_windows: tuple[int, ...] = (300, 3600, 86400)  # created / solved / reopened
    windows: tuple[int, ...] = (3600, 86400)  # durations, FCR, SLA breaches
    grace_seconds: int = 3600
    sla_targets: Mapping[str, SlaTarget] = field(default_factory=default_sla_targets)
    at_risk_fraction: float = 0.8
    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict)  # team -> hours; "*" = default
    labels: LabelGuard = field(default_factory=LabelGuard)
    response_edges: tuple[float, ...] = DEFAULT_RESPONSE_EDGES
    resolution_edges: tuple[float, ...] = DEFAULT_RESOLUTION_EDGES
    handle_time_edges: tuple[float, ...] = DEFAULT_HANDLE_TIME_EDGES

    def __post_init__(self) -> None:
        self.volume_windows = check_windows(self.volume_windows, self.bucket_seconds)
        self.windows = check_windows(self.windows, self.bucket_seconds)
        if not 0 < self.at_risk_fraction <= 1:
            raise ValueError("at_risk_fraction must be in (0, 1]")
        if self.grace_seconds < 0:
            raise ValueError("grace_seconds must be >= 0")

    @property
    def max_window(self) -> int:
        return max(self.volume_windows + self.windows)

    @property
    def horizon(self) -> int:
        """max window + grace: what WatermarkTracker needs."""
        return self.max_window + self.grace_seconds

    def _edges_with_targets(self, base: Iterable[float], attr: str) -> tuple[float, ...]:
        # SLA targets as bucket edges make bucket{le=target}/count the SLA compliance ratio
        targets = {getattr(t, attr) for t in self.sla_targets.values()} - {None}
        return tuple(sorted({float(e) for e in base} | {float(t) for t in targets}))

    @property
    def first_response_edges(self) -> tuple[float, ...]:
        return self._edges_with_targets(self.response_edges, "first_reply_seconds")

    @property
    def full_resolution_edges(self) -> tuple[float, ...]:
        return self._edges_with_targets(self.resolution_edges, "resolution_seconds")

    def calendar_for(self, team: str | None) -> BusinessCalendar | None:
        cal = self.calendars.get(team) if team is not None else None
        return cal if cal is not None else self.calendars.get("*")


# --------------------------------------------------------------------------- state


def _field(data: Any, name: str, default: Any = None) -> Any:
    """Read a field from a pydantic model, a dict or any object; unwrap enums to their value."""
    v = data.get(name, default) if isinstance(data, Mapping) else getattr(data, name, default)
    return getattr(v, "value", v) if v is not None and not isinstance(v, (str, bool, int, float)) else v


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


_ROLE = {"agent": "a", "customer": "c", "bot": "b"}


@dataclass(slots=True)
class TicketState:
    """Facts about one ticket, each keyed by the id of the event that stated it.

    created:  id -> [ts, channel, priority, team, account_id]  (the earliest by (ts, id) wins)
    replies:  id -> [ts, role 'a'|'c'|'b', public, time_spent_seconds|None]
    statuses: id -> [ts, status, time_spent_seconds|None]  (status_changed, solved, reopened = open,
              closed)
    assigns:  id -> [ts, team]
    """

    ticket_id: str
    created: dict[str, list] = field(default_factory=dict)
    replies: dict[str, list] = field(default_factory=dict)
    statuses: dict[str, list] = field(default_factory=dict)
    assigns: dict[str, list] = field(default_factory=dict)

    def has_event(self, event_id: str) -> bool:
        return (
            event_id in self.statuses
            or event_id in self.replies
            or event_id in self.created
            or event_id in self.assigns
        )

    def max_ts(self) -> float | None:
        """Latest event time recorded (to seed a partition watermark after a rebuild)."""
        best = None
        for d in (self.created, self.replies, self.statuses, self.assigns):
            for f in d.values():
                if best is None or f[0] > best:
                    best = f[0]
        return best

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"v": 1, "t": self.ticket_id}
        for k, d in (("c", self.created), ("r", self.replies), ("s", self.statuses), ("a", self.assigns)):
            if d:
                out[k] = d
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> TicketState:
        if d.get("v") != 1:
            raise ValueError(f"unsupported ticket state version {d.get('v')!r}")
        return cls(
            ticket_id=d["t"],
            created={k: list(v) for k, v in d.get("c", {}).items()},
            replies={k: list(v) for k, v in d.get("r", {}).items()},
            statuses={k: list(v) for k, v in d.get("s", {}).items()},
            assigns={k: list(v) for k, v in d.get("a", {}).items()},
        )


def _with(state: TicketState, attr: str, key: str, fact: list) -> TicketState:
    """Copy-on-write: a new state sharing every dict except the one that changes."""
    d = dict(getattr(state, attr))
    d[key] = fact
    new = TicketState(state.ticket_id, state.created, state.replies, state.statuses, state.assigns)
    setattr(new, attr, d)
    return new


def apply(state: TicketState | None, event: Any) -> tuple[TicketState, bool]:
    """Record the facts of a ticket event. Pure: never mutates ``state``.

    ``event`` needs ``.id``, ``.type``, ``.ts`` (epoch seconds of the event time) and ``.data``
    (model or dict) as produced by ``stream_app.events.decode_event``.
    Returns ``(new_state, True)``, or ``(state, False)`` for a duplicate (event id already
    recorded): report those as duplicates and skip the index update.
    """
    etype = event.type
    data = event.data
    eid = str(event.id)
    ts = float(event.ts)
    if state is None:
        tid = _field(data, "ticket_id") or getattr(event, "subject", None)
        if not tid:
            raise ValueError("ticket event without ticket_id")
        state = TicketState(str(tid))
    elif state.has_event(eid):
        return state, False

    if etype == "ticket.created":
        fact = [
            ts,
            _field(data, "channel"),
            _field(data, "priority"),
            _field(data, "team"),
            _field(data, "account_id"),
        ]
        return _with(state, "created", eid, fact), True
    if etype == "ticket.replied":
        role = _ROLE.get(_field(data, "author_role"), "b")
        public = bool(_field(data, "public", True))
        fact = [ts, role, public, _num(_field(data, "time_spent_seconds"))]
        return _with(state, "replies", eid, fact), True
    if etype == "ticket.status_changed":
        return _with(state, "statuses", eid, [ts, _field(data, "status"), None]), True
    if etype == "ticket.solved":
        return _with(state, "statuses", eid, [ts, "solved", _num(_field(data, "time_spent_seconds"))]), True
    if etype == "ticket.reopened":
        return _with(state, "statuses", eid, [ts, "open", None]), True
    if etype == "ticket.closed":
        return _with(state, "statuses", eid, [ts, "closed", None]), True
    if etype == "ticket.assigned":
        return _with(state, "assigns", eid, [ts, _field(data, "team")]), True
    raise ValueError(f"not a ticket event type: {etype!r}")


class TicketFacts(NamedTuple):
    """What the metrics need, derived from a state (``derive``)."""

    created_ts: float
    channel: str
    priority: str
    team: str  # current team: the latest of created / assigned by event time
    account_id: str | None
    status: str  # current status: the transition with the latest event time ("new" if none)
    solves: list[float]  # event times of unresolved -> resolved transitions
    reopens: list[float]  # event times of resolved -> unresolved transitions
    transitions: list[tuple[float, str]]  # all status facts ordered by (ts, event id)
    agent_public: list[float]  # agent public reply times, ordered
    messages: list[tuple[float, str]]  # customer messages ('c') and agent public replies ('a'), ordered
    time_spent: float | None  # sum of time_spent_seconds over replies and solves; None if never given


def derive(state: TicketState) -> TicketFacts | None:
    """Facts of a ticket, or None while its ticket.created event is unknown."""
    if not state.created:
        return None
    cid = min(state.created, key=lambda k: (state.created[k][0], k))
    c_ts, channel, priority, team, account = state.created[cid]
    team_ts, team_id = c_ts, ""  # created ranks before an assignment with the same ts
    for aid, (a_ts, a_team) in state.assigns.items():
        if (a_ts, aid) > (team_ts, team_id):
            team_ts, team_id, team = a_ts, aid, a_team
    transitions = [(f[0], f[1]) for _, f in sorted(state.statuses.items(), key=lambda kv: (kv[1][0], kv[0]))]
    solves: list[float] = []
    reopens: list[float] = []
    prev = False  # initial status "new" is unresolved
    for t, st in transitions:
        res = st in RESOLVED
        if res and not prev:
            solves.append(t)
        elif prev and not res:
            reopens.append(t)
        prev = res
    status = transitions[-1][1] if transitions else "new"
    agent_public: list[float] = []
    messages: list[tuple[float, str]] = []
    spent = None
    for _, (r_ts, role, public, ts_spent) in sorted(state.replies.items(), key=lambda kv: (kv[1][0], kv[0])):
        if role == "a" and public:
            agent_public.append(r_ts)
            messages.append((r_ts, "a"))
        elif role == "c":
            messages.append((r_ts, "c"))
        if ts_spent is not None:
            spent = (spent or 0.0) + ts_spent
    for f in state.statuses.values():
        if f[2] is not None:
            spent = (spent or 0.0) + f[2]
    return TicketFacts(
        c_ts, channel, priority, team, account, status, solves, reopens, transitions,
        agent_public, messages, spent,
    )


def requester_wait(created_ts: float, transitions: list[tuple[float, str]], until: float) -> float:
    """Seconds in new/open/on_hold between creation and ``until`` (status starts as new)."""
    total = 0.0
    cur_t, cur_s = created_ts, "new"
    for t, st in transitions:
        if t > until:
            break
        lo, hi = max(cur_t, created_ts), min(t, until)
        if cur_s in WAITING and hi > lo:
            total += hi - lo
        cur_t, cur_s = t, st
    lo = max(cur_t, created_ts)
    if cur_s in WAITING and until > lo:
        total += until - lo
    return total


def contributions(state: TicketState, cfg: SupportConfig) -> list[Contribution]:
    """Everything one ticket adds to the support aggregates (see docs/metrics.md)."""
    out: list[Contribution] = [("tracked", (), None, 1)]
    f = derive(state)
    if f is None:
        out.append(("incomplete", (), None, 1))
        return out
    C = f.created_ts
    lab = cfg.labels.labels(BASE_LABELS, (f.team, f.channel, f.priority))
    out.append(("created", lab, C, 1))
    for t in f.solves:
        out.append(("solved", lab, t, 1))
    for t in f.reopens:
        out.append(("reopened", lab, t, 1))
    resolved_now = f.status in RESOLVED
    if not resolved_now:
        out.append(("backlog", lab + (cfg.labels.value("status", f.status),), None, 1))
        out.append(("open_created", lab, None, C))

    first_reply = f.agent_public[0] if f.agent_public else None
    if first_reply is not None:
        out.append(("first_response", lab, first_reply, max(0.0, first_reply - C)))
        cal = cfg.calendar_for(f.team)
        if cal is not None:
            out.append(("first_response_business", lab, first_reply, cal.business_seconds(C, first_reply)))

    waiting_since = None  # earliest customer message not yet answered
    for t, who in f.messages:
        if who == "c":
            if waiting_since is None:
                waiting_since = t
        elif waiting_since is not None:
            out.append(("response", lab, t, max(0.0, t - waiting_since)))
            waiting_since = None

    first_solve = f.solves[0] if f.solves else None
    if first_solve is not None:
        out.append(("first_resolution", lab, first_solve, max(0.0, first_solve - C)))
        out.append(("fcr_solved", lab, first_solve, 1))
        touches = sum(1 for t in f.agent_public if t <= first_solve)
        if touches <= 1 and not f.reopens:
            out.append(("fcr_resolved", lab, first_solve, 1))
    last_solve = f.solves[-1] if (resolved_now and f.solves) else None
    if last_solve is not None:
        out.append(("full_resolution", lab, last_solve, max(0.0, last_solve - C)))
        out.append(("requester_wait", lab, last_solve, requester_wait(C, f.transitions, last_solve)))
        if f.time_spent is not None:
            out.append(("handle_time", lab, last_solve, f.time_spent))

    target = cfg.sla_targets.get(f.priority)
    if target is not None:
        # first reply clock stops at the first agent public reply, or at the first solve
        stops = [t for t in (first_reply, first_solve) if t is not None]
        _sla(out, lab + ("first_reply",), C, target.first_reply_seconds, min(stops) if stops else None)
        _sla(out, lab + ("resolution",), C, target.resolution_seconds, last_solve)
    return out


def _sla(out: list, lab: tuple, start: float, target: float | None, stop: float | None) -> None:
    if target is None:
        return
    if stop is None:
        # clock still running: breach / at-risk depend on the wall clock, decided at collect(now)
        out.append(("sla_clock", lab, None, (start, float(target))))
    elif stop - start > target:
        out.append(("sla_breach", lab, start + target, 1))  # counted when the target passed


def account_signal(state: TicketState, cfg: SupportConfig, now: float | None = None) -> dict | None:
    """What the customer-health work needs from one ticket, or None while the ticket has no
    ticket.created or no account_id.

    A pure function of the state (``now`` is accepted for a uniform signature and ignored), so
    the signal only changes when the ticket does: ``first_reply_breached`` is judged by event
    time (the clock stopped after its target, or it still runs and the ticket's newest event is
    past the target). A clock that is still running is judged by the health score at its own
    ``now`` from ``created_ts`` + ``first_reply_due_ts`` (``first_reply_stopped_ts`` is None).
    """
    f = derive(state)
    if f is None or not f.account_id:
        return None
    first_reply = f.agent_public[0] if f.agent_public else None
    first_solve = f.solves[0] if f.solves else None
    stops = [t for t in (first_reply, first_solve) if t is not None]  # same clock as the SLA metric
    stopped = min(stops) if stops else None
    target = cfg.sla_targets.get(f.priority)
    secs = target.first_reply_seconds if target is not None else None
    mx = state.max_ts()
    if secs is None:
        breached = False
    elif stopped is not None:
        breached = stopped - f.created_ts > secs
    else:
        breached = mx is not None and mx - f.created_ts > secs
    return {
        "account_id": f.account_id,
        "open": f.status not in RESOLVED,
        "first_reply_breached": breached,
        "first_reply_stopped_ts": stopped,  # first agent public reply or first solve; None = running
        "first_reply_due_ts": None if secs is None else f.created_ts + secs,
        "priority": f.priority,
        "created_ts": f.created_ts,
        "reopens": len(f.reopens),
        "last_reopen_ts": f.reopens[-1] if f.reopens else None,
        "ts": mx,
    }


# --------------------------------------------------------------------------- index

_VOLUME = {
    "created": ("tickets_created", "Tickets created in the window (by creation event time)."),
    "solved": ("tickets_solved", "Solves in the window: unresolved -> solved/closed transitions, by event time."),
    "reopened": ("reopens", "Reopens in the window: solved/closed -> unresolved transitions, by event time."),
}
_FCR = {
    "fcr_resolved": (
        "first_contact_resolved_tickets",
        "Tickets first solved in the window with at most one agent public reply before that solve "
        "and never reopened (FCR numerator).",
    ),
    "fcr_solved": ("first_solved_tickets", "Tickets first solved in the window (FCR denominator)."),
}
_HIST = {
    "first_response": (
        "first_response_seconds",
        "Creation -> first public agent reply (bot replies and internal notes excluded), by reply time.",
    ),
    "first_response_business": (
        "first_response_business_seconds",
        "First response time counted in the team's business hours (teams with a calendar only).",
    ),
    "response": (
        "response_seconds",
        "Customer message -> next public agent reply, every exchange, by reply time.",
    ),
    "first_resolution": ("first_resolution_seconds", "Creation -> first solve, by solve time."),
    "full_resolution": (
        "full_resolution_seconds",
        "Creation -> last solve, tickets currently solved/closed, by last solve time.",
    ),
    "requester_wait": (
        "requester_wait_seconds",
        "Time in new/open/on_hold (pending excluded) until the last solve, tickets currently solved/closed.",
    ),
    "handle_time": (
        "handle_time_seconds",
        "Agent working time per ticket (sum of time_spent_seconds), tickets currently solved/closed "
        "that reported any, by last solve time.",
    ),
}


class SupportIndex(ContributionIndex):
    """Support aggregates derived from ticket states. Not thread-safe (use the event loop)."""

    def _reset(self) -> None:
        cfg = self.cfg
        g = cfg.bucket_seconds
        self._volume = {k: RollingCounter(cfg.volume_windows, g) for k in _VOLUME}
        self._fcr = {k: RollingCounter(cfg.windows, g) for k in _FCR}
        self._breaches = RollingCounter(cfg.windows, g)
        edges = {
            "first_response": cfg.first_response_edges,
            "first_response_business": cfg.first_response_edges,
            "response": cfg.first_response_edges,
            "first_resolution": cfg.full_resolution_edges,
            "full_resolution": cfg.full_resolution_edges,
            "requester_wait": cfg.full_resolution_edges,
            "handle_time": tuple(cfg.handle_time_edges),
        }
        self._hist = {k: RollingHistogram(edges[k], cfg.windows, g) for k in _HIST}
        self._counters = {**self._volume, **self._fcr, "sla_breach": self._breaches}
        self._gauges: dict[str, dict] = {"tracked": {}, "incomplete": {}, "backlog": {}}
        self._open_created: dict[tuple, dict[float, int]] = {}
        self._sla_clocks: dict[tuple, int] = {}  # (labels, (start, target)) -> tickets
        self._seen_backlog: set[tuple] = set()  # so an emptied backlog series reads 0, not absent
        self._seen_sla: set[tuple] = set()
        self.dropped = 0  # contributions refused because their bucket was already evicted

    # -- updates ----------------------------------------------------------
    def _apply(self, c: Contribution, k: int) -> int:
        """Add (k > 0) or retract (k < 0) a contribution k times; returns adds dropped."""
        name, labels, ts, value = c
        store = self._counters.get(name)
        if store is not None:
            return 0 if store.add(labels, ts, k * value) or k < 0 else k
        hist = self._hist.get(name)
        if hist is not None:
            sign = 1 if k > 0 else -1
            ok = True
            for _ in range(abs(k)):
                ok = hist.observe(labels, ts, value, sign)
            return 0 if ok or k < 0 else k
        if name == "open_created":
            d = self._open_created.setdefault(labels, {})
            n = d.get(value, 0) + k
            if n:
                d[value] = n
            else:
                d.pop(value, None)
                if not d:
                    del self._open_created[labels]
            return 0
        if name == "sla_clock":
            key = (labels, value)
            n = self._sla_clocks.get(key, 0) + k
            if n:
                self._sla_clocks[key] = n
            else:
                self._sla_clocks.pop(key, None)
            return 0
        g = self._gauges[name]
        n = g.get(labels, 0) + k * value
        if n:
            g[labels] = n
        else:
            g.pop(labels, None)
        if name == "backlog":
            self._seen_backlog.add(labels)
        return 0

    def _contributions(self, state: TicketState) -> list[Contribution]:
        return contributions(state, self.cfg)

    def evict(self, cutoff_ts: float | None) -> int:
        """Drop window buckets before ``cutoff_ts`` (``WatermarkTracker.cutoff()``)."""
        if cutoff_ts is None:
            return 0
        n = 0
        for store in (*self._counters.values(), *self._hist.values()):
            n += store.evict(cutoff_ts)
        return n

    # -- exposition -------------------------------------------------------
    def collect(self, now: float) -> list[Metric]:
        """Prometheus metric families read at wall-clock ``now`` (epoch seconds)."""
        cfg = self.cfg
        out: list[Metric] = []
        wl = ("window",)
        out += self._counter_group(self._volume, _VOLUME, now, cfg.volume_windows, BASE_LABELS + wl)
        out += self._counter_group(self._fcr, _FCR, now, cfg.windows, BASE_LABELS + wl)

        for key, (suffix, doc) in _HIST.items():
            h = self._hist[key]
            fam = GaugeHistogramMetricFamily(PREFIX + suffix, doc, labels=BASE_LABELS + wl)
            per_w = h.windows_at(now)
            for labels in list(per_w[max(cfg.windows)]):
                for w in cfg.windows:
                    buckets, s, _ = h.cumulative(per_w[w].get(labels))
                    fam.add_metric(list(labels) + [window_label(w)], buckets, s)
            out.append(fam)

        # SLA: stopped clocks were counted at their deadline; running clocks are judged at now
        p = int(now // cfg.bucket_seconds)
        nb = {w: w // cfg.bucket_seconds for w in cfg.windows}
        breach_w = {w: dict(v) for w, v in self._breaches.windows_at(now).items()}
        at_risk: dict[tuple, int] = {}
        breached_now: dict[tuple, int] = {}
        frac = cfg.at_risk_fraction
        for (labels, (start, target)), n in self._sla_clocks.items():
            elapsed = now - start
            if elapsed > target:
                breached_now[labels] = breached_now.get(labels, 0) + n
                db = int((start + target) // cfg.bucket_seconds)
                for w, k in nb.items():
                    if db > p - k:
                        breach_w[w][labels] = breach_w[w].get(labels, 0) + n
            elif elapsed >= frac * target:
                at_risk[labels] = at_risk.get(labels, 0) + n
            self._seen_sla.add(labels)
        sla_labels = BASE_LABELS + ("target",)
        fam = GaugeMetricFamily(
            PREFIX + "sla_breaches",
            "SLA breaches in the window, counted when the target elapsed (first reply or resolution).",
            labels=sla_labels + wl,
        )
        for labels in list(breach_w[max(cfg.windows)]):
            for w in cfg.windows:
                fam.add_metric(list(labels) + [window_label(w)], breach_w[w].get(labels, 0))
        out.append(fam)
        for name, data, doc in (
            ("sla_at_risk_tickets", at_risk,
             "Tickets whose running SLA clock passed the at-risk fraction of the target, not yet breached."),
            ("sla_breached_tickets", breached_now,
             "Tickets whose running SLA clock (unanswered / unresolved) is past the target now."),
        ):
            fam = GaugeMetricFamily(PREFIX + name, doc, labels=sla_labels)
            for labels in sorted(self._seen_sla):
                fam.add_metric(list(labels), data.get(labels, 0))
            out.append(fam)

        fam = GaugeMetricFamily(
            PREFIX + "backlog_tickets",
            "Tickets not solved/closed now, by current status.",
            labels=BASE_LABELS + ("status",),
        )
        backlog = self._gauges["backlog"]
        for labels in sorted(self._seen_backlog):
            fam.add_metric(list(labels), backlog.get(labels, 0))
        out.append(fam)

        fam = GaugeMetricFamily(
            PREFIX + "oldest_unsolved_ticket_created_timestamp_seconds",
            "Creation time of the oldest ticket not solved/closed (aggregate with min).",
            labels=BASE_LABELS,
        )
        for labels, d in self._open_created.items():
            fam.add_metric(list(labels), min(d))
        out.append(fam)

        for name, key, doc in (
            ("tickets_tracked", "tracked", "Ticket states held by this worker."),
            ("incomplete_tickets", "incomplete",
             "Tickets with events but no ticket.created yet: excluded from every other support metric."),
        ):
            out.append(GaugeMetricFamily(PREFIX + name, doc, value=self._gauges[key].get((), 0)))
        dropped = CounterMetricFamily(
            PREFIX + "window_dropped_contributions",
            "Window contributions refused because their bucket was already evicted (too late).",
        )
        dropped.add_metric([], self.dropped)
        out.append(dropped)
        return out

    def _counter_group(self, stores, meta, now, windows, labelnames) -> list[Metric]:
        # members of a group share labelsets (zeros included) so their ratios always exist
        views = {k: stores[k].windows_at(now) for k in stores}
        keys: set = set()
        for v in views.values():
            keys.update(v[max(windows)])
        keys_sorted = sorted(keys)
        fams = []
        for k, (suffix, doc) in meta.items():
            fam = GaugeMetricFamily(PREFIX + suffix, doc, labels=labelnames)
            for labels in keys_sorted:
                for w in windows:
                    fam.add_metric(list(labels) + [window_label(w)], views[k][w].get(labels, 0))
            fams.append(fam)
        return fams
