"""The accounts one worker holds and their scores, cached until they can change; rendered as
distributions (never account ids in labels), kept as running aggregates so a scrape re-scores
only the accounts that changed or crossed an edge since the previous one."""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from stream_app.engine.index import reuse_unchanged

from .config import BANDS, DIGITS, PREFIX, SOURCES, HealthConfig
from .score import HealthScore, evaluate, valid_until
from .state import HealthState, apply_signal, message_account

_SCALE = 10**DIGITS  # scores have DIGITS decimals: their sums are kept exactly, as integers


class _Distribution:
    """Counts per score bucket (upper-inclusive edges, then +Inf) and the exact sum."""

    __slots__ = ("edges", "counts", "n", "total")

    def __init__(self, edges: tuple[float, ...]) -> None:
        self.edges = edges
        self.counts = [0] * (len(edges) + 1)
        self.n = 0
        self.total = 0  # sum of round(v * _SCALE)

    def add(self, v: float, k: int) -> None:
        self.counts[bisect_left(self.edges, v)] += k
        self.n += k
        self.total += k * round(v * _SCALE)

    def buckets(self) -> tuple[list[tuple[str, float]], float]:
        out, acc = [], 0
        for e, c in zip(self.edges, self.counts):
            acc += c
            out.append((floatToGoString(e), acc))
        out.append(("+Inf", self.n))
        return out, self.total / _SCALE


# --------------------------------------------------------------------------- index


class HealthIndex:
    """The accounts this worker holds (the caller also stores each state in its table) and their
    scores at ``now``. Not thread-safe (use the event loop).

    Scores depend on the wall clock, so they are computed at read time. Each account's score is
    kept with the instant it stays valid until (:func:`valid_until`: its nearest window edge or
    SLA due time), so a scrape re-evaluates only the accounts that changed or crossed an edge
    since, and still equals a fresh evaluation at any ``now`` (tests/unit/engine/test_health.py).
    """

    def __init__(self, cfg: HealthConfig | None = None):
        self.cfg = cfg or HealthConfig()
        self.states: dict[str, HealthState] = {}
        # account -> (evaluated at, valid until, score); facts are recomputed when asked for
        self._cache: dict[str, tuple[float, float, HealthScore]] = {}
        self.version = 0  # bumped by every change of the held states
        self._read: tuple | None = None  # (version, at, until, families) of the last collect
        self._clear_counts()

    # -- the running aggregates behind collect() -----------------------------
    def _clear_counts(self) -> None:
        edges = self.cfg.score_edges
        self._pos: float | None = None  # read time the aggregates are at
        self._counted: dict[str, tuple[float, HealthScore]] = {}  # account -> (valid until, score)
        self._expiry: list[tuple[float, str]] = []  # (valid until, account) of counted scores
        self._dirty: set[str] = set()  # changed (or valid only at their read time): re-score
        self._bands = dict.fromkeys(BANDS, 0)
        self._totals = _Distribution(edges)
        self._comps = {c: _Distribution(edges) for c in SOURCES}

    def _count(self, sc: HealthScore, k: int) -> None:
        for c, v in sc.components.items():
            if v is not None:
                self._comps[c].add(v, k)
        if sc.total is not None:
            self._totals.add(sc.total, k)
            self._bands[sc.band] += k  # type: ignore[index]

    def _recount(self, acc: str, now: float) -> None:
        old = self._counted.pop(acc, None)
        if old is not None:
            self._count(old[1], -1)
        if acc not in self.states:
            return
        sc = self.score(acc, now)
        until = self._cache[acc][1]
        self._counted[acc] = (until, sc)  # type: ignore[assignment]
        self._count(sc, 1)  # type: ignore[arg-type]
        if until > now:
            if until < math.inf:
                heapq.heappush(self._expiry, (until, acc))
        else:
            self._dirty.add(acc)  # an edge right at now: judge it again at the next read

    def _advance(self, now: float) -> None:
        if self._pos is None or now < self._pos:
            self._clear_counts()
            due = list(self.states)
        else:
            due = list(self._dirty)
            heap = self._expiry
            while heap and heap[0][0] <= now:
                until, acc = heapq.heappop(heap)
                c = self._counted.get(acc)
                if c is not None and c[0] == until:
                    due.append(acc)
        self._dirty = set()
        for acc in due:
            self._recount(acc, now)
        self._pos = now

    def warm_steps(self, now: float, chunk: int = 2000) -> Iterator[None]:
        """Score and count every account at ``now`` in chunks (yielding in between), then read
        once: after a rebuild, so the first scrape re-scores only what changed since ``now``.
        Nothing may change or read the index meanwhile."""
        self._clear_counts()
        for i, acc in enumerate(list(self.states), 1):
            self._recount(acc, now)
            if chunk and i % chunk == 0:
                yield
        self._pos = now
        self.collect(now)

    def _valid_until(self, now: float) -> float:
        if self._dirty:
            return now  # not valid beyond this very instant
        return self._expiry[0][0] if self._expiry else math.inf

    def __len__(self) -> int:
        return len(self.states)

    def get(self, account_id: str) -> HealthState | None:
        return self.states.get(account_id)

    def apply(self, message: Mapping, account_id: str | None = None) -> tuple[HealthState | None, bool]:
        """apply_signal on the held state of the message's account; returns the state to store
        (when changed) in the table."""
        acc = account_id or message_account(message)
        if not acc:
            raise ValueError("health signal without an account id")
        old = self.states.get(acc)
        new, changed = apply_signal(old, message, self.cfg, account_id=acc)
        if changed:
            self.put(new)
        return new, changed

    def put(self, state: HealthState) -> None:
        self.states[state.account_id] = state
        self._cache.pop(state.account_id, None)
        self._dirty.add(state.account_id)
        self.version += 1

    def remove(self, account_id: str) -> None:
        self.states.pop(account_id, None)
        self._cache.pop(account_id, None)
        self._dirty.add(account_id)
        self.version += 1

    def rebuild(self, states: Iterable[HealthState]) -> float | None:
        """Replace the held states (partition assignment). Returns the newest ts among them."""
        self.states = {}
        self._cache = {}
        self._clear_counts()
        self.version += 1
        high = None
        for s in states:
            self.states[s.account_id] = s
            if s.hw is not None and (high is None or s.hw > high):
                high = s.hw
        return high

    def evaluate(self, account_id: str, now: float) -> tuple[HealthScore, dict] | None:
        """Score and facts at ``now`` (always computed; refreshes the cached score)."""
        s = self.states.get(account_id)
        if s is None:
            return None
        sc, facts = evaluate(s, now, self.cfg)
        self._cache[account_id] = (now, valid_until(s, now, self.cfg), sc)
        return sc, facts

    def score(self, account_id: str, now: float) -> HealthScore | None:
        c = self._cache.get(account_id)
        if c is not None and c[0] <= now < c[1]:
            return c[2]
        r = self.evaluate(account_id, now)
        return None if r is None else r[0]

    def collect(self, now: float) -> list[Metric]:
        """Distribution of the accounts' scores at wall-clock ``now`` (never account ids): the
        same family objects as the previous read while no state changed and no counted score
        crossed its validity (treat them as read-only)."""
        r = self._read
        # Same states and the same instant read the same values, even when a score's edge is
        # right at ``now`` (validity ends at ``now``: judged again at the next later read).
        if r is not None and r[0] == self.version and (r[1] == now or r[1] <= now < r[2]):
            return r[3]
        self._advance(now)
        families = self._families()
        if r is not None:
            families = reuse_unchanged(r[3], families)
        self._read = (self.version, now, self._valid_until(now), families)
        return families

    def _families(self) -> list[Metric]:
        out: list[Metric] = []
        fam = GaugeMetricFamily(
            PREFIX + "accounts",
            "Accounts by health band at scrape time (at_risk < 0.4 <= neutral < 0.7 <= healthy by "
            "default); accounts without any component are not in a band.",
            labels=["band"],
        )
        for b in BANDS:
            fam.add_metric([b], self._bands[b])
        out.append(fam)
        out.append(GaugeMetricFamily(
            PREFIX + "accounts_scored", "Accounts with a health score (at least one component).",
            value=self._totals.n))
        out.append(GaugeMetricFamily(
            PREFIX + "accounts_tracked", "Account health states held by this worker.", value=len(self.states)))
        fam = GaugeHistogramMetricFamily(
            PREFIX + "score", "Distribution of the accounts' health scores (0..1) at scrape time.")
        b, s = self._totals.buckets()
        fam.add_metric([], b, s)
        out.append(fam)
        fam = GaugeHistogramMetricFamily(
            PREFIX + "component_score",
            "Distribution of each health component (0..1) over the accounts that have it.",
            labels=["component"],
        )
        for c in SOURCES:
            b, s = self._comps[c].buckets()
            fam.add_metric([c], b, s)
        out.append(fam)
        return out

    def lowest(self, now: float, limit: int = 20) -> list[dict]:
        """The ``limit`` lowest-scoring accounts at ``now`` (unscored ones left out), lowest first,
        ties by account id: ``{"account_id", "total", "band", "components", "facts"}``. For an
        HTTP answer (ids are fine there, never in labels)."""
        ranked = []
        for acc in self.states:
            sc = self.score(acc, now)
            if sc is not None and sc.total is not None:
                ranked.append((sc.total, acc))
        ranked.sort()
        rows = [(acc, *self.evaluate(acc, now)) for _, acc in ranked[: max(0, int(limit))]]  # type: ignore[misc]
        return [
            {"account_id": acc, "total": sc.total, "band": sc.band, "components": dict(sc.components),
             "facts": dict(facts)}
            for acc, sc, facts in rows
        ]
