"""A ticket's facts (TicketState), how an event adds to them, and what they contribute to the
aggregates and to customer health."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from stream_app.engine.fields import field as _field

from stream_app.engine.expiry import retention_bucket

from .config import BASE_LABELS, Contribution, ON_HOLD, PENDING, RESOLVED, SupportConfig, WAITING


# --------------------------------------------------------------------------- state


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
    assigns:  id -> [ts, team, agent_id|None]  (states stored before agents were kept: [ts, team])
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


def life_ends(state: TicketState) -> bool:
    """Whether the ticket's life may end: it is solved or closed now (its status fact with the
    latest event time, ties by id), or incomplete (no ticket.created)."""
    if not state.created:
        return True
    if not state.statuses:
        return False
    latest = max(state.statuses.items(), key=lambda kv: (kv[1][0], kv[0]))
    return latest[1][1] in RESOLVED


def retention_until(state: TicketState, retention_seconds: float) -> float | None:
    """When the ticket's life ends: ``retention_seconds`` after its newest event if it is solved,
    closed or incomplete; None while it is open (or when retention is off, 0). Once the
    watermark cutoff passes it the state may be deleted: an event that old is too late."""
    if not retention_seconds or not life_ends(state):
        return None
    mx = state.max_ts()
    return None if mx is None else mx + retention_seconds


def apply(state: TicketState | None, event: Any, retention_seconds: float = 0) -> tuple[TicketState, bool]:
    """Record the facts of a ticket event. Pure: never mutates ``state``.

    ``event`` needs ``.id``, ``.type``, ``.ts`` (epoch seconds of the event time) and ``.data``
    (model or dict) as produced by ``stream_app.events.decode_event``.
    Returns ``(new_state, True)``, or ``(state, False)`` for a duplicate (event id already
    recorded): report those as duplicates and skip the index update.

    With ``retention_seconds``, an event more than that after the newest event of a solved,
    closed or incomplete ticket starts a new life: the new state holds this event only (a reopen
    then makes an incomplete ticket; docs/metrics.md, Support, Retention).
    """
    etype = event.type
    data = event.data
    eid = str(event.id)
    ts = float(event.ts)
    if state is not None:
        if state.has_event(eid):
            return state, False
        until = retention_until(state, retention_seconds)
        if until is not None and ts > until:
            state = None  # the previous life ended: this event starts a new one
    if state is None:
        tid = _field(data, "ticket_id") or getattr(event, "subject", None)
        if not tid:
            raise ValueError("ticket event without ticket_id")
        state = TicketState(str(tid))

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
        agent = _field(data, "agent_id")
        return _with(state, "assigns", eid, [ts, _field(data, "team"), None if agent is None else str(agent)]), True
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
    reassignments: list[float]  # event times of assignments to another team or another agent


def derive(state: TicketState) -> TicketFacts | None:
    """Facts of a ticket, or None while its ticket.created event is unknown."""
    if not state.created:
        return None
    cid = min(state.created, key=lambda k: (state.created[k][0], k))
    c_ts, channel, priority, team, account = state.created[cid]
    # Assignments from creation on, by (ts, id); created ranks before one with the same ts. The
    # latest sets the current team; one that moves the ticket to another team, or from one agent
    # to another, is a reassignment (an agent first taking it within its team is not).
    reassignments: list[float] = []
    agent = None
    for aid, f in sorted(state.assigns.items(), key=lambda kv: (kv[1][0], kv[0])):
        if (f[0], aid) <= (c_ts, ""):
            continue
        a_agent = f[2] if len(f) > 2 else None
        if f[1] != team or (agent is not None and a_agent is not None and a_agent != agent):
            reassignments.append(f[0])
        team, agent = f[1], a_agent
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
        agent_public, messages, spent, reassignments,
    )


def requester_wait(created_ts: float, transitions: list[tuple[float, str]], until: float) -> float:
    """Seconds in new/open/on_hold between creation and ``until`` (status starts as new)."""
    return status_seconds(created_ts, transitions, until, WAITING)


def status_seconds(
    created_ts: float, transitions: list[tuple[float, str]], until: float, statuses: frozenset[str]
) -> float:
    """Seconds in one of ``statuses`` between creation and ``until`` (status starts as new)."""
    total = 0.0
    cur_t, cur_s = created_ts, "new"
    for t, st in transitions:
        if t > until:
            break
        lo, hi = max(cur_t, created_ts), min(t, until)
        if cur_s in statuses and hi > lo:
            total += hi - lo
        cur_t, cur_s = t, st
    lo = max(cur_t, created_ts)
    if cur_s in statuses and until > lo:
        total += until - lo
    return total


def contributions(state: TicketState, cfg: SupportConfig) -> list[Contribution]:
    """Everything one ticket adds to the support aggregates (see docs/metrics.md)."""
    # Retained-ticket gauges carry the bucket of the ticket's retention time (None: kept), so a
    # read at now leaves out tickets whose life ended long enough ago, deleted yet or not.
    kept = (retention_bucket(retention_until(state, cfg.ticket_retention_seconds), cfg.bucket_seconds),)
    out: list[Contribution] = [("tracked", kept, None, 1)]
    f = derive(state)
    if f is None:
        out.append(("incomplete", kept, None, 1))
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
        # support depth (docs/metrics.md, Support, Depth): per solved ticket, up to its last solve
        out.append(("touches", lab, last_solve, float(sum(1 for t in f.agent_public if t <= last_solve))))
        out.append(("reassignments", lab, last_solve, float(sum(1 for t in f.reassignments if t <= last_solve))))
        out.append(("on_hold", lab, last_solve, status_seconds(C, f.transitions, last_solve, ON_HOLD)))
        out.append(("agent_wait", lab, last_solve, status_seconds(C, f.transitions, last_solve, PENDING)))

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
