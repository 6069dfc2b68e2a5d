"""The usage aggregates derived from user states, and their exposition.

Sessions without a logout are judged at the read time (open, or over once idle longer than the
timeout) incrementally as that time moves on (:class:`stream_app.engine.clocks.Clocks`).
"""

from __future__ import annotations

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from stream_app.engine.clocks import Clocks, after
from stream_app.engine.expiry import count_retained
from stream_app.engine.index import ContributionIndex
from stream_app.engine.windows import RollingCounter, RollingHistogram, window_label

from .config import DAY, LIFECYCLE_PERIODS, LIFECYCLE_STATUSES, POWER_DAYS, Contribution, PREFIX
from .state import UserState, contributions, week_of


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


class _SessionClocks(Clocks):
    """Sessions without a logout ``((client,), (first, last))``: open (stage 0) until
    ``now > last + idle timeout``, then over (stage 1), observed at ``last`` with duration
    ``last - first``."""

    __slots__ = ("idle", "open", "ended")

    def __init__(self, idle: float, edges: tuple[float, ...], windows: tuple[int, ...], g: int) -> None:
        super().__init__()
        self.idle = idle
        self.open: dict[tuple, int] = {}
        self.ended = RollingHistogram(edges, windows, g)

    def stages(self, key) -> tuple[float, ...]:
        return (after(key[1][1] + self.idle),)

    def effect(self, key, stage: int, n: int) -> None:
        labels = key[0]
        if stage == 0:
            v = self.open.get(labels, 0) + n
            if v:
                self.open[labels] = v
            else:
                self.open.pop(labels, None)
            return
        first, last = key[1]
        sign = 1 if n > 0 else -1
        for _ in range(abs(n)):
            self.ended.observe(labels, last, last - first, sign)

    def reset_effects(self) -> None:
        self.open = {}
        self.ended.reset()


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
        # sessions not known to be over: (labels, (first, last)) -> sessions
        self._clocks = _SessionClocks(cfg.idle_timeout_seconds, cfg.session_edges, cfg.session_windows, g)
        # each store evicts on its own horizon (its longest window + grace): the family cutoff
        # follows the 90 d known-users window, session buckets need only 7 d
        self._offsets = [
            (s, cfg.horizon - (max(s.windows) + cfg.grace_seconds))
            for s in (*self._counters.values(), self._duration, self._clocks.ended)
        ]
        self._seen_open: set[tuple] = set()
        # ("lifecycle", (kind, index, status)) / ("power", (n, first day, last day, k)) -> users
        self._calendar: dict[tuple, int] = {}
        self._tracked: dict[tuple, int] = {}  # (retention bucket,) -> users
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
            self._clocks.add((labels, value), k)
            self._seen_open.add(labels)
            return 0
        if name == "tracked":
            n = self._tracked.get(labels, 0) + k * value
            if n:
                self._tracked[labels] = n
            else:
                self._tracked.pop(labels, None)
            return 0
        if name in ("lifecycle", "power"):
            key = (name, labels)
            n = self._calendar.get(key, 0) + k * value
            if n:
                self._calendar[key] = n
            else:
                self._calendar.pop(key, None)
            return 0
        raise ValueError(f"unknown usage contribution {name!r}")

    def _contributions(self, state: UserState) -> list[Contribution]:
        return contributions(state, self.cfg)

    def _evict(self, cutoff_ts: float) -> int:
        """Drop window buckets given the family cutoff (``WatermarkTracker.cutoff()`` with
        ``cfg.horizon``); stores with shorter windows drop proportionally more recent buckets."""
        return sum(store.evict(cutoff_ts + off) for store, off in self._offsets)

    # -- exposition -------------------------------------------------------
    def _running_clocks(self) -> list:
        return [self._clocks]

    def _valid_until(self, now: float) -> float:
        # lifecycle and power users move to the next UTC day at midnight
        return min(self._duration.next_edge(now), self._clocks.next_change(), (now // DAY + 1) * DAY)

    def _collect(self, now: float) -> list[Metric]:
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
        clocks = self._clocks
        clocks.advance(now)
        h = self._duration
        done = h.windows_at(now)
        idle = clocks.ended.windows_at(now)
        ws = cfg.session_windows
        fam = GaugeHistogramMetricFamily(
            PREFIX + "session_duration_seconds",
            "Duration (last event - first event) of sessions that ended in the window, by end time; a "
            "session ends at a logout or once idle longer than the timeout.",
            labels=("client", "window"),
        )
        wmax = max(ws)
        for labels in sorted(done[wmax].keys() | idle[wmax].keys()):
            for w in ws:
                a, b = done[w].get(labels), idle[w].get(labels)
                cell = a if b is None else b if a is None else [x + y for x, y in zip(a, b)]
                buckets, s, _ = h.cumulative(cell)
                fam.add_metric(list(labels) + [window_label(w)], buckets, s)
        out.append(fam)
        fam = GaugeMetricFamily(
            PREFIX + "open_sessions",
            "Sessions open now: no logout and last event within the idle timeout.",
            labels=("client",),
        )
        for labels in sorted(self._seen_open):
            fam.add_metric(list(labels), clocks.open.get(labels, 0))
        out.append(fam)

        day = int(now // DAY)
        periods = {"current_day": ("day", day), "previous_day": ("day", day - 1),
                   "current_week": ("week", week_of(day)), "previous_week": ("week", week_of(day) - 1)}
        cal = self._calendar
        fam = GaugeMetricFamily(
            PREFIX + "lifecycle_users",
            "Users by lifecycle status in the UTC day / ISO week: new (first activity in it), current "
            "(active in it and the one before), resurrected (active in it, not the one before, not new), "
            "dormant (active the one before, not in it).", labels=("period", "status"),
        )
        for period in LIFECYCLE_PERIODS:
            kind, idx = periods[period]
            for status in LIFECYCLE_STATUSES:
                fam.add_metric([period, status], cal.get(("lifecycle", (kind, idx, status)), 0))
        out.append(fam)
        fam = GaugeMetricFamily(
            PREFIX + "power_users",
            "Power-user curve: users by the number of UTC days they were active among the last 7 / 28 "
            "days (today included).", labels=("window", "days"),
        )
        curve = {(n, k): 0 for n in POWER_DAYS for k in range(1, n + 1)}
        for (name, key), users in cal.items():
            if name == "power" and key[1] <= day <= key[2]:
                curve[(key[0], key[3])] += users
        for (n, k), users in curve.items():
            fam.add_metric([f"{n}d", str(k)], users)
        out.append(fam)

        cfg = self.cfg
        out.append(GaugeMetricFamily(PREFIX + "users_tracked", "Users retained by this worker (until their newest "
                                     "event leaves the known-users window + grace).",
                                     value=count_retained(self._tracked, now, cfg.horizon, cfg.bucket_seconds)))
        dropped = CounterMetricFamily(
            PREFIX + "window_dropped_contributions",
            "Window contributions refused because their bucket was already evicted (too late).",
        )
        dropped.add_metric([], self.dropped)
        out.append(dropped)
        return out
