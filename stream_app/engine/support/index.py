"""The support aggregates derived from ticket states, and their exposition.

Series budget (docs/metrics.md, Support): ticket volumes keep the full ``team, channel,
priority`` labels; every other support metric is kept per ``team, priority`` (the channel of a
ticket is summed away when its contribution is applied), which is what the boards and rules
read. Running SLA clocks are judged incrementally as the read time moves on
(:class:`stream_app.engine.clocks.Clocks`), so a scrape costs what changed since the last one.
"""

from __future__ import annotations

import heapq

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from stream_app.engine.clocks import Clocks, after
from stream_app.engine.index import ContributionIndex
from stream_app.engine.expiry import count_retained
from stream_app.engine.windows import RollingCounter, RollingHistogram, window_label

from .config import BASE_LABELS, Contribution, PREFIX
from .state import TicketState, contributions


# --------------------------------------------------------------------------- index

#: labels of the ticket volumes (the contributions' own labels)
VOLUME_LABELS = BASE_LABELS
#: labels of every other support metric: the channel is summed away
LABELS = ("team", "priority")

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
    # support depth: per ticket currently solved/closed, up to its last solve, by last solve time
    "touches": (
        "agent_touches",
        "Agent public replies up to the last solve, tickets currently solved/closed, by last solve time "
        "(le=1 minus le=0: one-touch; le=2 minus le=1: two-touch; above 2: multi-touch).",
    ),
    "reassignments": (
        "reassignments",
        "Reassignments (to another team, or from one agent to another) up to the last solve, tickets "
        "currently solved/closed, by last solve time.",
    ),
    "on_hold": (
        "on_hold_seconds",
        "Time in on_hold until the last solve, tickets currently solved/closed, by last solve time.",
    ),
    "agent_wait": (
        "agent_wait_seconds",
        "Time in pending (waiting on the requester) until the last solve, tickets currently solved/closed, "
        "by last solve time.",
    ),
}


class _SlaClocks(Clocks):
    """Running SLA clocks ``((team, priority, target), (start, seconds))``: stage 1 (at risk)
    from ``start + fraction x seconds``, stage 2 (breached) once ``now > start + seconds``, then
    also a breach counted in the windows at the deadline."""

    __slots__ = ("frac", "at_risk", "breached", "late")

    def __init__(self, frac: float, windows: tuple[int, ...], g: int) -> None:
        super().__init__()
        self.frac = frac
        self.at_risk: dict[tuple, int] = {}
        self.breached: dict[tuple, int] = {}
        self.late = RollingCounter(windows, g)  # breaches of running clocks, at their deadline

    def stages(self, key) -> tuple[float, ...]:
        start, target = key[1]
        return (start + self.frac * target, after(start + target))

    def effect(self, key, stage: int, n: int) -> None:
        if stage == 0:
            return
        labels = key[0]
        d = self.at_risk if stage == 1 else self.breached
        v = d.get(labels, 0) + n
        if v:
            d[labels] = v
        else:
            d.pop(labels, None)
        if stage == 2:
            start, target = key[1]
            self.late.add(labels, start + target, n)

    def reset_effects(self) -> None:
        self.at_risk = {}
        self.breached = {}
        self.late.reset()


class _BacklogAge(Clocks):
    """Unsolved tickets' ages ``((team, priority), created)``: stage i once ``now - created``
    is above the i-th threshold; a ticket in stage i counts in the first i thresholds."""

    __slots__ = ("thresholds", "older")

    def __init__(self, thresholds: tuple[int, ...]) -> None:
        super().__init__()
        self.thresholds = thresholds
        self.older: dict[tuple, int] = {}  # (team, priority, threshold index) -> tickets

    def stages(self, key) -> tuple[float, ...]:
        return tuple(after(key[1] + th) for th in self.thresholds)

    def effect(self, key, stage: int, n: int) -> None:
        older = self.older
        for i in range(stage):
            k = key[0] + (i,)
            v = older.get(k, 0) + n
            if v:
                older[k] = v
            else:
                older.pop(k, None)

    def reset_effects(self) -> None:
        self.older = {}


def age_label(seconds: int) -> str:
    """The ``older_than`` label: whole days as ``1d``, ``3d``; else as a window label."""
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else window_label(seconds)


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
            "touches": tuple(cfg.touch_edges),
            "reassignments": tuple(cfg.reassignment_edges),
            "on_hold": tuple(cfg.status_time_edges),
            "agent_wait": tuple(cfg.status_time_edges),
        }
        self._hist = {k: RollingHistogram(edges[k], cfg.windows, g) for k in _HIST}
        self._counters = {**self._volume, **self._fcr, "sla_breach": self._breaches}
        self._gauges: dict[str, dict] = {"tracked": {}, "incomplete": {}, "backlog": {}}
        self._open_created: dict[tuple, dict[float, int]] = {}  # labels -> {created ts: tickets}
        self._open_heap: dict[tuple, list[float]] = {}  # labels -> heap of those ts (lazy)
        self._sla = _SlaClocks(cfg.at_risk_fraction, cfg.windows, g)
        self._age = _BacklogAge(tuple(cfg.backlog_age_seconds))
        self._seen_backlog: set[tuple] = set()  # so an emptied backlog series reads 0, not absent
        self._seen_sla: set[tuple] = set()
        self._seen_backlog_age: set[tuple] = set()  # (team, priority) with an unsolved ticket once
        self._narrow: dict[tuple, tuple] = {}  # (team, channel, priority, ...) -> (team, priority, ...)
        self.dropped = 0  # contributions refused because their bucket was already evicted

    # -- updates ----------------------------------------------------------
    def _apply(self, c: Contribution, k: int) -> int:
        """Add (k > 0) or retract (k < 0) a contribution k times; returns adds dropped."""
        name, labels, ts, value = c
        if name in _VOLUME:
            return 0 if self._volume[name].add(labels, ts, k * value) or k < 0 else k
        if labels:
            narrow = self._narrow.get(labels)
            if narrow is None:
                narrow = self._narrow[labels] = (labels[0],) + labels[2:]
            labels = narrow
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
            self._open(labels, value, k)
            self._age.add((labels, value), k)
            if k > 0:
                self._seen_backlog_age.add(labels)
            return 0
        if name == "sla_clock":
            self._sla.add((labels, value), k)
            if k > 0:
                self._seen_sla.add(labels)
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

    def _open(self, labels: tuple, created: float, k: int) -> None:
        d = self._open_created.setdefault(labels, {})
        before = d.get(created, 0)
        n = before + k
        if n:
            d[created] = n
        else:
            d.pop(created, None)
        if not d:
            del self._open_created[labels]
            self._open_heap.pop(labels, None)
            return
        h = self._open_heap.setdefault(labels, [])
        if before == 0:
            heapq.heappush(h, created)
        if len(h) > 2 * len(d) + 16:  # lazily deleted entries: compact
            h[:] = list(d)
            heapq.heapify(h)

    def _oldest(self, labels: tuple) -> float:
        d, h = self._open_created[labels], self._open_heap[labels]
        while h[0] not in d:
            heapq.heappop(h)
        return h[0]

    def _contributions(self, state: TicketState) -> list[Contribution]:
        return contributions(state, self.cfg)

    def _evict(self, cutoff_ts: float) -> int:
        n = 0
        for store in (*self._counters.values(), *self._hist.values(), self._sla.late):
            n += store.evict(cutoff_ts)
        return n

    # -- exposition -------------------------------------------------------
    def _running_clocks(self) -> list:
        return [self._sla, self._age]

    def _valid_until(self, now: float) -> float:
        return min(self._breaches.next_edge(now), self._sla.next_change(), self._age.next_change())

    def _collect(self, now: float) -> list[Metric]:
        """Prometheus metric families read at wall-clock ``now`` (epoch seconds)."""
        cfg = self.cfg
        out: list[Metric] = []
        wl = ("window",)
        out += self._counter_group(self._volume, _VOLUME, now, cfg.volume_windows, VOLUME_LABELS + wl)
        out += self._counter_group(self._fcr, _FCR, now, cfg.windows, LABELS + wl)

        for key, (suffix, doc) in _HIST.items():
            h = self._hist[key]
            fam = GaugeHistogramMetricFamily(PREFIX + suffix, doc, labels=LABELS + wl)
            per_w = h.windows_at(now)
            for labels in sorted(per_w[max(cfg.windows)]):
                for w in cfg.windows:
                    buckets, s, _ = h.cumulative(per_w[w].get(labels))
                    fam.add_metric(list(labels) + [window_label(w)], buckets, s)
            out.append(fam)

        # SLA: stopped clocks were counted at their deadline; running clocks are judged at now
        sla = self._sla
        sla.advance(now)
        stopped = self._breaches.windows_at(now)
        late = sla.late.windows_at(now)
        sla_labels = LABELS + ("target",)
        fam = GaugeMetricFamily(
            PREFIX + "sla_breaches",
            "SLA breaches in the window, counted when the target elapsed (first reply or resolution).",
            labels=sla_labels + wl,
        )
        wmax = max(cfg.windows)
        for labels in sorted(stopped[wmax].keys() | late[wmax].keys()):
            for w in cfg.windows:
                fam.add_metric(list(labels) + [window_label(w)], stopped[w].get(labels, 0) + late[w].get(labels, 0))
        out.append(fam)
        for name, data, doc in (
            ("sla_at_risk_tickets", sla.at_risk,
             "Tickets whose running SLA clock passed the at-risk fraction of the target, not yet breached."),
            ("sla_breached_tickets", sla.breached,
             "Tickets whose running SLA clock (unanswered / unresolved) is past the target now."),
        ):
            fam = GaugeMetricFamily(PREFIX + name, doc, labels=sla_labels)
            for labels in sorted(self._seen_sla):
                fam.add_metric(list(labels), data.get(labels, 0))
            out.append(fam)

        fam = GaugeMetricFamily(
            PREFIX + "backlog_tickets",
            "Tickets not solved/closed now, by current status.",
            labels=LABELS + ("status",),
        )
        backlog = self._gauges["backlog"]
        for labels in sorted(self._seen_backlog):
            fam.add_metric(list(labels), backlog.get(labels, 0))
        out.append(fam)

        age = self._age
        age.advance(now)
        fam = GaugeMetricFamily(
            PREFIX + "backlog_age_tickets",
            "Tickets not solved/closed now whose age (read time - creation) is above older_than "
            "(cumulative: a ticket older than 7d also counts in 1d and 3d).",
            labels=LABELS + ("older_than",),
        )
        ages = [age_label(th) for th in age.thresholds]
        for labels in sorted(self._seen_backlog_age):
            for i, name in enumerate(ages):
                fam.add_metric([*labels, name], age.older.get(labels + (i,), 0))
        out.append(fam)

        fam = GaugeMetricFamily(
            PREFIX + "oldest_unsolved_ticket_created_timestamp_seconds",
            "Creation time of the oldest ticket not solved/closed (aggregate with min).",
            labels=LABELS,
        )
        for labels in sorted(self._open_created):
            fam.add_metric(list(labels), self._oldest(labels))
        out.append(fam)

        cfg = self.cfg
        for name, key, doc in (
            ("tickets_tracked", "tracked", "Tickets retained: open ones, and solved/closed/incomplete ones "
             "until their retention passes."),
            ("incomplete_tickets", "incomplete",
             "Tickets with events but no ticket.created yet: excluded from every other support metric."),
        ):
            n = count_retained(self._gauges[key], now, cfg.horizon, cfg.bucket_seconds)
            out.append(GaugeMetricFamily(PREFIX + name, doc, value=n))
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

