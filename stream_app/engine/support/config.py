"""Support configuration: SLA targets, team business calendars, windows and histogram edges."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo
from stream_app.vocabulary import DEFAULT_SLA_TARGETS
from stream_app.engine.labels import LabelGuard
from stream_app.engine.windows import DEFAULT_BUCKET_SECONDS, check_windows


PREFIX = "stream_app_support_"
BASE_LABELS = ("team", "channel", "priority")
RESOLVED = frozenset({"solved", "closed"})
WAITING = frozenset({"new", "open", "on_hold"})  # requester wait: pending is excluded
ON_HOLD = frozenset({"on_hold"})  # on-hold time: waiting on someone else than the requester
PENDING = frozenset({"pending"})  # agent wait time: waiting on the requester
SLA_KINDS = ("first_reply", "resolution")
DEFAULT_TICKET_RETENTION_SECONDS = 30 * 86400  # >= the health stage's 30-day look at solved tickets

Contribution = tuple[str, tuple[str, ...], float | None, Any]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SlaTarget:
    """Targets in seconds for one priority; None = no target of that kind."""

    first_reply_seconds: float | None = None
    resolution_seconds: float | None = None


def default_sla_targets() -> dict[str, SlaTarget]:
    return {priority: SlaTarget(*targets) for priority, targets in DEFAULT_SLA_TARGETS.items()}


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
# Support depth: few edges, the series budget. Touches: 1 = one-touch, 2 = two-touch, above = multi.
DEFAULT_TOUCH_EDGES = (0, 1, 2)
DEFAULT_REASSIGNMENT_EDGES = (0, 1, 2, 3)
DEFAULT_STATUS_TIME_EDGES = (0, 3600, 14400, 86400, 259200, 604800)  # on-hold / pending time; 0: never
# Backlog age: a ticket not solved/closed is counted in every threshold its age (now - created,
# by the read time) is above.
DEFAULT_BACKLOG_AGE_SECONDS = (86400, 259200, 604800)


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
    touch_edges: tuple[float, ...] = DEFAULT_TOUCH_EDGES
    reassignment_edges: tuple[float, ...] = DEFAULT_REASSIGNMENT_EDGES
    status_time_edges: tuple[float, ...] = DEFAULT_STATUS_TIME_EDGES
    backlog_age_seconds: tuple[int, ...] = DEFAULT_BACKLOG_AGE_SECONDS
    # A solved/closed (or incomplete) ticket's life ends this long after its newest event: a later
    # event starts a new life, and its state is deleted once the watermark cutoff passes that
    # time. 0 = tickets are kept for good. At least max window + grace (see docs/metrics.md).
    ticket_retention_seconds: int = DEFAULT_TICKET_RETENTION_SECONDS

    def __post_init__(self) -> None:
        self.volume_windows = check_windows(self.volume_windows, self.bucket_seconds)
        self.windows = check_windows(self.windows, self.bucket_seconds)
        if not 0 < self.at_risk_fraction <= 1:
            raise ValueError("at_risk_fraction must be in (0, 1]")
        if self.grace_seconds < 0:
            raise ValueError("grace_seconds must be >= 0")
        r = self.ticket_retention_seconds
        if r < 0 or (r and r < self.horizon):
            raise ValueError(
                f"ticket_retention_seconds ({r}) must be 0 (keep) or at least the longest window "
                f"plus grace ({self.horizon})"
            )

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
