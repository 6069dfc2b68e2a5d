"""Customer health: a composite score per account from the other families' account signals.

Data flow: each family's worker, when an entity's state changes, computes that entity's
``account_signal`` and, if it changed, sends ``{"source", "entity", "ts", "signal"}`` (signal
None = the entity was deleted) to an internal topic keyed by account id. The health worker keeps
one ``HealthState`` per account (a Faust table keyed by account id) via ``apply_signal`` and
``HealthIndex`` scores the accounts it holds at wall-clock ``now``.

* ``HealthState`` keeps the latest signal per ``(source, entity)``: the newer ``ts`` wins; at equal
  ``ts`` the later message wins (a producer re-sends an entity's signal when an out-of-order event
  changed it without moving its newest time), except that a deletion is never replaced at equal
  ``ts``. A deletion is kept as a tombstone so an older signal arriving later cannot resurrect
  the entity.
* Bounded: ``hw`` is the newest ``ts`` seen for the account; an entry (tombstone or not) whose ts
  is older than ``hw - retention[source]`` is dropped, and a message that old is ignored. One
  retention per source, whatever the entry's content, keeps the state independent of arrival
  order (for messages with distinct ts per entity).
* ``score(state, now, cfg)`` derives four components in 0..1 and their weighted mean; missing
  components are left out and the weights renormalised. Formulas: docs/metrics.md (Composite).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from stream_app.core.support import default_sla_targets

PREFIX = "stream_app_health_"
DAY = 86400
SOURCES = ("usage", "support", "voice", "revenue")
BANDS = ("at_risk", "neutral", "healthy")
#: lowest voice category of each survey kind (see stream_app.core.voice.CATEGORIES)
BOTTOM_CATEGORIES = frozenset({"detractor", "dissatisfied", "difficult"})
DEFAULT_SCORE_EDGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: digits scores are rounded to, so a score that is an edge by hand arithmetic is one in floats
DIGITS = 12


def _default_weights() -> dict[str, float]:
    return {"usage": 0.35, "support": 0.25, "voice": 0.2, "revenue": 0.2}


def _default_targets() -> dict[str, float | None]:
    return {p: t.first_reply_seconds for p, t in default_sla_targets().items()}


def _default_retention() -> dict[str, float | None]:
    # >= the window each source is read over (usage known users 90 d, voice 90 d, support open
    # tickets: a ticket with no news for 90 d is forgotten); revenue: one entity, kept until deleted
    return {"usage": 90 * DAY, "support": 90 * DAY, "voice": 90 * DAY, "revenue": None}


# --------------------------------------------------------------------------- configuration


@dataclass
class HealthConfig:
    """Weights, band edges, recency windows and penalties of the health score."""

    weights: Mapping[str, float] = field(default_factory=_default_weights)
    at_risk_below: float = 0.4  # total < this: at_risk
    healthy_from: float = 0.7  # total >= this: healthy; between: neutral
    # usage
    usage_active_seconds: float = 7 * DAY  # a user is active if last active within this
    usage_known_seconds: float = 90 * DAY  # a user is known if its newest event is within this
    usage_session_cap: float = 5.0  # sessions per known user in 7 d that count as full intensity
    usage_intensity_weight: float = 0.3  # usage = (1 - w) * active share + w * intensity
    # support
    support_recent_seconds: float = 30 * DAY  # tickets considered: open, or created within this
    support_open_penalty: float = 0.1  # per open ticket
    support_breach_penalty: float = 0.2  # per considered ticket with a first-reply breach
    support_reopen_penalty: float = 0.15  # per considered ticket reopened within recent_seconds
    first_reply_targets: Mapping[str, float | None] = field(default_factory=_default_targets)
    # voice
    voice_window_seconds: float = 90 * DAY
    voice_max_responses: int = 20  # the latest N responses in the window
    voice_bottom_penalty: float = 0.2  # times the share of detractor/dissatisfied/difficult
    # revenue
    revenue_recent_seconds: float = 30 * DAY  # a contraction signal older than this is ignored
    revenue_contraction_penalty: float = 0.3
    revenue_renewal_penalty: float = 0.2  # renewal due soon (or overdue), not renewed
    revenue_cancel_penalty: float = 0.4  # cancellation scheduled
    # state and exposition
    retention_seconds: Mapping[str, float | None] = field(default_factory=_default_retention)
    score_edges: tuple[float, ...] = DEFAULT_SCORE_EDGES

    def __post_init__(self) -> None:
        if set(self.weights) - set(SOURCES):
            raise ValueError(f"weights for unknown components: {sorted(set(self.weights) - set(SOURCES))}")
        if any(w < 0 for w in self.weights.values()) or not any(w > 0 for w in self.weights.values()):
            raise ValueError("weights must be >= 0 and at least one > 0")
        if not 0 < self.at_risk_below <= self.healthy_from <= 1:
            raise ValueError("band edges need 0 < at_risk_below <= healthy_from <= 1")
        if not 0 <= self.usage_intensity_weight <= 1:
            raise ValueError("usage_intensity_weight must be in [0, 1]")
        if self.usage_session_cap <= 0 or self.voice_max_responses < 1:
            raise ValueError("usage_session_cap must be > 0 and voice_max_responses >= 1")
        edges = tuple(float(e) for e in self.score_edges)
        if list(edges) != sorted(set(edges)):
            raise ValueError("score_edges must be strictly increasing")
        self.score_edges = edges
        self.retention_seconds = {s: self.retention_seconds.get(s) for s in SOURCES}
        need = {"usage": self.usage_known_seconds, "support": self.support_recent_seconds,
                "voice": self.voice_window_seconds}
        for s, w in need.items():
            r = self.retention_seconds[s]
            if r is not None and r < w:
                raise ValueError(f"retention of {s} ({r}) shorter than its window ({w})")

    def band(self, total: float | None) -> str | None:
        if total is None:
            return None
        if total < self.at_risk_below:
            return "at_risk"
        return "neutral" if total < self.healthy_from else "healthy"


DEFAULT_CONFIG = HealthConfig()


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class HealthState:
    """Latest signal per (source, entity) of one account.

    entries: source -> entity key -> [ts, signal dict without account_id | None (tombstone)]
    hw:      newest ts of any message applied to this account (drives retention)
    """

    account_id: str
    hw: float | None = None
    entries: dict[str, dict[str, list]] = field(default_factory=dict)

    def max_ts(self) -> float | None:
        return self.hw

    def live(self, source: str) -> Iterable[tuple[str, float, dict]]:
        """(entity, ts, signal) of the entities of ``source`` that are not deleted."""
        for k, (ts, sig) in self.entries.get(source, {}).items():
            if sig is not None:
                yield k, ts, sig

    def live_count(self) -> int:
        """Entities not deleted. A state with none holds only tombstones: the caller may delete
        it (the tombstones then stop guarding against replays of older signals)."""
        return sum(1 for d in self.entries.values() for v in d.values() if v[1] is not None)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"v": 1, "a": self.account_id, "hw": self.hw}
        e = {s: d for s, d in self.entries.items() if d}
        if e:
            out["e"] = e
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> HealthState:
        if d.get("v") != 1:
            raise ValueError(f"unsupported health state version {d.get('v')!r}")
        entries = {
            s: {k: [v[0], None if v[1] is None else dict(v[1])] for k, v in es.items()}
            for s, es in d.get("e", {}).items()
        }
        return cls(d["a"], d.get("hw"), entries)


def _message_account(message: Mapping) -> str | None:
    acc = message.get("account_id")
    sig = message.get("signal")
    if not acc and isinstance(sig, Mapping):
        acc = sig.get("account_id")
    return str(acc) if acc else None


def apply_signal(
    state: HealthState | None,
    message: Mapping,
    cfg: HealthConfig | None = None,
    *,
    account_id: str | None = None,
) -> tuple[HealthState, bool]:
    """Record one signal message. Pure: never mutates ``state``.

    ``message``: ``{"source": usage|support|voice|revenue, "entity": key, "ts": entity max ts,
    "signal": dict | None, ["account_id"]}``. The account is ``account_id`` (pass the Kafka key),
    else the message's or its signal's ``account_id``; needed only when ``state`` is None.
    Returns ``(new_state, True)`` if anything changed, else ``(state, False)`` (an older or
    repeated signal, or one beyond retention). Raises ValueError for an unknown source.
    """
    cfg = cfg or DEFAULT_CONFIG
    source = message.get("source")
    if source not in SOURCES:
        raise ValueError(f"unknown health signal source {source!r}")
    entity = str(message["entity"])
    ts = float(message["ts"])
    sig = message.get("signal")
    if sig is not None:
        sig = {k: v for k, v in sig.items() if k != "account_id"}  # the state's key names it
    if state is None:
        acc = account_id or _message_account(message)
        if not acc:
            raise ValueError("health signal without an account id")
        state = HealthState(acc)
    hw = ts if state.hw is None or ts > state.hw else state.hw
    r = cfg.retention_seconds.get(source)
    if r is not None and ts < hw - r:
        return state, False  # beyond retention (then ts < hw: nothing else changes)
    entries = state.entries
    cur = entries.get(source, {}).get(entity)
    # equal ts: a different signal replaces the stored one, but never a deletion (the deletion
    # carries the entity's last ts, the same as its last signal: either order gives the deletion)
    if cur is None or ts > cur[0] or (ts == cur[0] and cur[1] is not None and sig != cur[1]):
        d = dict(entries.get(source, {}))
        d[entity] = [ts, sig]
        entries = {**entries, source: d}
    if hw != state.hw:
        entries = _prune(entries, hw, cfg)
    if hw == state.hw and entries is state.entries:
        return state, False
    return HealthState(state.account_id, hw, entries), True


def _prune(entries: dict[str, dict[str, list]], hw: float, cfg: HealthConfig) -> dict[str, dict[str, list]]:
    out = entries
    for s, d in entries.items():
        r = cfg.retention_seconds.get(s)
        if r is None:
            continue
        cutoff = hw - r
        if any(v[0] < cutoff for v in d.values()):
            if out is entries:
                out = dict(entries)
            out[s] = {k: v for k, v in d.items() if v[0] >= cutoff}
    return out


# --------------------------------------------------------------------------- score


class HealthScore(NamedTuple):
    total: float | None  # 0..1, None when no component has data
    components: dict[str, float | None]  # usage, support, voice, revenue
    band: str | None  # at_risk | neutral | healthy, None when total is None


def _r(x: float) -> float:
    return round(x, DIGITS)


def _usage(state: HealthState, now: float, cfg: HealthConfig, facts: dict) -> float | None:
    known = active = 0
    sessions = 0.0
    last = None
    for _, ts, sig in state.live("usage"):
        if ts <= now - cfg.usage_known_seconds:
            continue
        known += 1
        la = sig.get("last_active_ts")
        if la is not None:
            last = la if last is None else max(last, la)
            if la > now - cfg.usage_active_seconds:
                active += 1
                # sessions_7d is as of the user's last signal: counted only while the user is active
                sessions += float(sig.get("sessions_7d") or 0)
    facts.update(known_users=known, active_users_7d=active, sessions_7d=int(sessions), last_active_ts=last)
    if known == 0:
        return None
    share = active / known
    intensity = min(1.0, sessions / (known * cfg.usage_session_cap))
    w = cfg.usage_intensity_weight
    return _r((1 - w) * share + w * intensity)


def _support(state: HealthState, now: float, cfg: HealthConfig, facts: dict) -> float | None:
    considered = open_ = breaches = reopened = 0
    recent = now - cfg.support_recent_seconds
    for _, _, sig in state.live("support"):
        created = sig.get("created_ts")
        is_open = bool(sig.get("open"))
        if not is_open and (created is None or created <= recent):
            continue
        considered += 1
        open_ += is_open
        breached = bool(sig.get("first_reply_breached"))
        if not breached and sig.get("first_reply_stopped_ts") is None and created is not None:
            # clock still running: judged at now against the signal's due time, else cfg's target
            due = sig.get("first_reply_due_ts")
            if due is None:
                target = cfg.first_reply_targets.get(sig.get("priority"))
                due = None if target is None else created + target
            breached = due is not None and now > due
        breaches += breached
        lr = sig.get("last_reopen_ts")
        reopened += lr is not None and lr > recent
    facts.update(tickets_considered=considered, open_tickets=open_, first_reply_breaches=breaches,
                 reopened_tickets=reopened)
    if considered == 0:
        return None
    pen = (cfg.support_open_penalty * open_ + cfg.support_breach_penalty * breaches
           + cfg.support_reopen_penalty * reopened)
    return _r(max(0.0, 1.0 - pen))


def _voice(state: HealthState, now: float, cfg: HealthConfig, facts: dict) -> float | None:
    lo = now - cfg.voice_window_seconds
    rs = [(ts, k, sig) for k, ts, sig in state.live("voice") if ts > lo]
    rs.sort(key=lambda r: (r[0], r[1]), reverse=True)
    latest_nps = next((r[2].get("category") for r in rs if r[2].get("kind") == "nps"), None)
    rs = rs[: cfg.voice_max_responses]
    facts.update(responses=len(rs), latest_nps_category=latest_nps,
                 latest_response={"kind": rs[0][2].get("kind"), "category": rs[0][2].get("category"),
                                  "ts": rs[0][0]} if rs else None)
    if not rs:
        return None
    mean = sum(float(r[2]["score"]) for r in rs) / len(rs)
    bottom = sum(1 for r in rs if r[2].get("category") in BOTTOM_CATEGORIES) / len(rs)
    return _r(max(0.0, mean - cfg.voice_bottom_penalty * bottom))


def _flag(sig: Mapping, *names: str) -> bool:
    return any(bool(sig.get(n)) for n in names)


def _revenue(state: HealthState, now: float, cfg: HealthConfig, facts: dict) -> float | None:
    best = None
    for k, ts, sig in state.live("revenue"):  # one entity (the account); several: the newest
        if best is None or (ts, k) > (best[0], best[1]):
            best = (ts, k, sig)
    if best is None:
        facts.update(mrr=None, churned=None)
        return None
    ts, _, sig = best
    churned = bool(sig.get("churned"))
    contracted = _flag(sig, "contracted_recently", "contracted_30d") and ts > now - cfg.revenue_recent_seconds
    renewal = _flag(sig, "renewal_due_soon", "renewal_due_30d")
    cancel = _flag(sig, "cancel_pending")
    facts.update(mrr=sig.get("mrr"), churned=churned, contracted_recently=contracted,
                 renewal_due_soon=renewal, cancel_pending=cancel)
    if churned:
        return 0.0
    pen = (cfg.revenue_contraction_penalty * contracted + cfg.revenue_renewal_penalty * renewal
           + cfg.revenue_cancel_penalty * cancel)
    return _r(max(0.0, 1.0 - pen))


_COMPONENTS = {"usage": _usage, "support": _support, "voice": _voice, "revenue": _revenue}


def evaluate(state: HealthState, now: float, cfg: HealthConfig | None = None) -> tuple[HealthScore, dict]:
    """The score of an account at ``now`` and the facts behind it (for the lowest-accounts view)."""
    cfg = cfg or DEFAULT_CONFIG
    facts: dict[str, Any] = {}
    comps = {name: fn(state, now, cfg, facts) for name, fn in _COMPONENTS.items()}
    num = den = 0.0
    for name, v in comps.items():
        w = cfg.weights.get(name, 0.0)
        if v is not None and w > 0:
            num += w * v
            den += w
    total = _r(num / den) if den > 0 else None
    return HealthScore(total, comps, cfg.band(total)), facts


# Window edges are computed as ``x + window`` here but compared as ``x <= now - window`` in the
# components: a cached score ends this much early so float rounding cannot outlive it.
_EDGE_MARGIN = 1e-3


def valid_until(state: HealthState, now: float, cfg: HealthConfig | None = None) -> float:
    """The first instant after ``now`` from which :func:`evaluate` of this (unchanged) state may
    differ from its value at ``now``: the nearest window edge or running SLA due time ahead.

    Every comparison with ``now`` in the components has its edge here (conservative: an edge
    that changes nothing only shortens the validity). ``math.inf`` when nothing is ahead.
    """
    cfg = cfg or DEFAULT_CONFIG
    edges: list[float] = []
    add = edges.append
    for _, ts, sig in state.live("usage"):
        add(ts + cfg.usage_known_seconds)  # the user stops being known
        la = sig.get("last_active_ts")
        if la is not None:
            add(la + cfg.usage_active_seconds)  # the user stops being active
    for _, _, sig in state.live("support"):
        created = sig.get("created_ts")
        if created is not None:
            add(created + cfg.support_recent_seconds)  # a closed ticket stops being considered
            if not sig.get("first_reply_breached") and sig.get("first_reply_stopped_ts") is None:
                due = sig.get("first_reply_due_ts")
                if due is None:
                    target = cfg.first_reply_targets.get(sig.get("priority"))
                    due = None if target is None else created + target
                if due is not None:
                    add(due)  # the running first-reply clock breaches
        lr = sig.get("last_reopen_ts")
        if lr is not None:
            add(lr + cfg.support_recent_seconds)  # the reopen stops counting
    for _, ts, _ in state.live("voice"):
        add(ts + cfg.voice_window_seconds)  # the response leaves the window
    for _, ts, _ in state.live("revenue"):
        add(ts + cfg.revenue_recent_seconds)  # a contraction stops counting
    ahead = [e for e in edges if e >= now]
    return min(ahead) - _EDGE_MARGIN if ahead else math.inf


def score(state: HealthState, now: float, cfg: HealthConfig | None = None) -> HealthScore:
    """Score of one account at wall-clock ``now`` (see docs/metrics.md, Composite)."""
    return evaluate(state, now, cfg)[0]


# --------------------------------------------------------------------------- index


class HealthIndex:
    """The accounts this worker holds (the caller also stores each state in its table) and their
    scores at ``now``. Not thread-safe (use the event loop).

    Scores depend on the wall clock, so they are computed at read time. Each account's score is
    kept with the instant it stays valid until (:func:`valid_until`: its nearest window edge or
    SLA due time), so a scrape re-evaluates only the accounts that changed or crossed an edge
    since, and still equals a fresh evaluation at any ``now`` (tests/unit/test_health.py).
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
        acc = account_id or _message_account(message)
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
