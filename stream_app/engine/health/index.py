"""The accounts one worker holds and their scores, cached until they can change; rendered as
distributions (never account ids in labels)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from .config import BANDS, PREFIX, SOURCES, HealthConfig
from .score import HealthScore, evaluate, valid_until
from .state import HealthState, apply_signal, message_account

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

    def remove(self, account_id: str) -> None:
        self.states.pop(account_id, None)
        self._cache.pop(account_id, None)

    def rebuild(self, states: Iterable[HealthState]) -> float | None:
        """Replace the held states (partition assignment). Returns the newest ts among them."""
        self.states = {}
        self._cache = {}
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
        """Distribution of the accounts' scores at wall-clock ``now`` (never account ids)."""
        bands = dict.fromkeys(BANDS, 0)
        totals: list[float] = []
        comps: dict[str, list[float]] = {c: [] for c in SOURCES}
        score = self.score
        for acc in self.states:
            sc = score(acc, now)
            for c, v in sc.components.items():  # type: ignore[union-attr]
                if v is not None:
                    comps[c].append(v)
            if sc.total is not None:
                totals.append(sc.total)
                bands[sc.band] += 1  # type: ignore[index]
        out: list[Metric] = []
        fam = GaugeMetricFamily(
            PREFIX + "accounts",
            "Accounts by health band at scrape time (at_risk < 0.4 <= neutral < 0.7 <= healthy by "
            "default); accounts without any component are not in a band.",
            labels=["band"],
        )
        for b in BANDS:
            fam.add_metric([b], bands[b])
        out.append(fam)
        out.append(GaugeMetricFamily(
            PREFIX + "accounts_scored", "Accounts with a health score (at least one component).", value=len(totals)))
        out.append(GaugeMetricFamily(
            PREFIX + "accounts_tracked", "Account health states held by this worker.", value=len(self.states)))
        fam = GaugeHistogramMetricFamily(
            PREFIX + "score", "Distribution of the accounts' health scores (0..1) at scrape time.")
        b, s = self._buckets(totals)
        fam.add_metric([], b, s)
        out.append(fam)
        fam = GaugeHistogramMetricFamily(
            PREFIX + "component_score",
            "Distribution of each health component (0..1) over the accounts that have it.",
            labels=["component"],
        )
        for c in SOURCES:
            b, s = self._buckets(comps[c])
            fam.add_metric([c], b, s)
        out.append(fam)
        return out

    def _buckets(self, values: list[float]) -> tuple[list[tuple[str, float]], float]:
        edges = self.cfg.score_edges
        counts = [0] * len(edges)
        for v in values:
            for i, e in enumerate(edges):
                if v <= e:
                    counts[i] += 1
                    break
        out, acc = [], 0
        for e, c in zip(edges, counts):
            acc += c
            out.append((floatToGoString(e), acc))
        out.append(("+Inf", len(values)))
        return out, float(sum(values))

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
