"""Revenue and retention metrics: per-account state, its contributions, and the derived index.

Same engine pattern as :mod:`stream_app.core.support` (read its docstring first):
``AccountState`` records facts keyed by event id, ``contributions(state, cfg)`` derives what one
account adds to the aggregates, ``RevenueIndex`` holds the aggregates and is updated by diffing
contributions. Definitions: docs/metrics.md (Revenue and retention section).

What is specific here:

* **An MRR timeline per account.** A subscription is active on ``[start, end)``: start = its
  earliest terms event (started / plan_changed / renewed), end = the earliest of ``ended``,
  ``cancelled`` with ``effective_at`` null (the cancel's event time) and ``effective_at``. Terms in
  force at ``x`` = the latest terms event with time <= x. From the subscriptions we get, at every
  change point, the account's vector (paying?, MRR per plan/currency, MRR in the reporting
  currency, primary plan). Changes can lie in the future (a cancellation effective at the period
  end): everything is keyed by the time the change takes effect and read at ``now``.
* **Exact integer sums.** MRR is carried as integer *annual nano-units* (major units x 1e9 per
  year: ``amount_minor x quantity x (12 | 1) x 10^(9 - exponent)``; the reporting-currency value is
  that times the static FX rate, rounded to an integer once per subscription). Every aggregate is
  an integer sum, so retractions cancel exactly; MRR = value / 12 / 1e9 at collect time.
* **Step stores.** Current-state gauges (MRR now) and calendar-month periods are sums of steps
  ``(key, t, delta)`` read "before p" at a few points (now, start of this month, start of last
  month) with incremental cursors (:class:`StepStore`).
* **Calendar-month periods (UTC).** ``period="current_month"`` is ``[start of month, now]``,
  ``"previous_month"`` the whole previous month. For an account without changes in a month its
  period contribution is a function of its state at the month start (read from the step store at
  that instant); an account with changes in month ``m`` adds a correction keyed by ``m`` whose
  value steps at each change (so the current month reads it at ``now``). Exact, no wall-clock scan.
* **Bounded state.** Facts with event time before the compaction point
  ``C = floor_day(newest fact - keep_seconds)`` are folded into a snapshot made only of min/max
  merges (earliest start, latest terms, earliest end, latest renewal notice, ...), so the state is
  independent of arrival order and holds about ``keep_seconds`` (>= 64 days) of facts. ``C`` is
  always before the worker's too-late cutoff, so only too-late events are ever folded.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from stream_app.core.index import ContributionIndex
from stream_app.core.labels import LabelGuard
from stream_app.core.windows import RollingCounter, check_windows, window_label

PREFIX = "stream_app_revenue_"
DAY = 86400
NANO = 10**9
MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")
COHORT_MOVEMENTS = ("expansion", "contraction", "churn", "reactivation")
PERIODS = ("current_month", "previous_month")
MIN_KEEP_SECONDS = 64 * DAY  # > 62 days: the start of the previous month is always inside it

Contribution = tuple[str, tuple, float | None, Any]

#: ISO 4217 minor-unit exponents that differ from the default of 2.
DEFAULT_MINOR_UNITS: dict[str, int] = {
    "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0,
    "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3, "TND": 3,
}
#: Static FX table: value of one unit of each currency in a common base (USD). Conversion
#: X -> reporting = rate[X] / rate[reporting]. Static by design (illustrative mid-2024 levels):
#: configure your own; currencies missing here are not converted (see unconverted_subscriptions).
DEFAULT_FX_RATES: dict[str, float] = {
    "USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CHF": 1.12, "CAD": 0.73, "AUD": 0.66,
    "JPY": 0.0064, "KRW": 0.00072, "SEK": 0.095, "KWD": 3.26, "BHD": 2.65,
}


# --------------------------------------------------------------------------- configuration


@dataclass
class RevenueConfig:
    """Everything the revenue metrics need. ``labels`` is stateful (caps): one per worker."""

    bucket_seconds: int = 3600
    windows: tuple[int, ...] = (7 * DAY, 30 * DAY)  # MRR movements
    grace_seconds: int = DAY  # billing webhooks are often retried for hours
    reporting_currency: str = "USD"
    fx_rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FX_RATES))
    minor_units: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MINOR_UNITS))
    default_minor_unit: int = 2
    trial_conversion_grace_seconds: float = 3 * DAY  # conversions up to trial end + this count
    signal_window_seconds: float = 30 * DAY  # account_signal: contraction look-back, renewal look-ahead
    labels: LabelGuard = field(default_factory=LabelGuard)  # needs rules for plan and currency

    def __post_init__(self) -> None:
        self.windows = check_windows(self.windows, self.bucket_seconds)
        if self.grace_seconds < 0:
            raise ValueError("grace_seconds must be >= 0")
        for name in ("plan", "currency"):
            if name not in self.labels.rules:
                raise ValueError(f"the label guard needs a rule for {name!r}")
        for c, e in self.minor_units.items():
            if not 0 <= int(e) <= 9:
                raise ValueError(f"minor unit exponent of {c} must be within 0..9")
        if any(not (r > 0 and math.isfinite(r)) for r in self.fx_rates.values()):
            raise ValueError("FX rates must be positive and finite")
        rep = self.reporting_currency
        if rep not in self.fx_rates:
            if len(self.fx_rates) > 1:
                raise ValueError(f"reporting currency {rep} has no FX rate")
            self.fx_rates = {**self.fx_rates, rep: 1.0}
        base = self.fx_rates[rep]
        self._to_rep = {c: r / base for c, r in self.fx_rates.items()}

    @property
    def max_window(self) -> int:
        return max(self.windows)

    @property
    def horizon(self) -> int:
        """max window + grace: what WatermarkTracker needs."""
        return self.max_window + self.grace_seconds

    @property
    def keep_seconds(self) -> int:
        """Facts kept per account before folding into the snapshot: covers the previous calendar
        month (<= 62 days back) and the worker horizon plus one bucket (so only events beyond the
        too-late cutoff are ever folded). Pass it to ``apply(..., keep_seconds=...)``."""
        return max(MIN_KEEP_SECONDS, self.horizon + self.bucket_seconds)

    def exponent(self, currency: str) -> int:
        return int(self.minor_units.get(currency, self.default_minor_unit))

    def to_reporting(self, currency: str) -> float | None:
        return self._to_rep.get(currency)  # type: ignore[attr-defined]


DEFAULT_KEEP_SECONDS = MIN_KEEP_SECONDS  # = RevenueConfig().keep_seconds


# --------------------------------------------------------------------------- time helpers


def month_index(ts: float) -> int:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return d.year * 12 + d.month - 1


def month_start(idx: int) -> float:
    return datetime(idx // 12, idx % 12 + 1, 1, tzinfo=timezone.utc).timestamp()


def _ts(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime")
        return v.timestamp()
    if isinstance(v, (int, float)):
        return float(v)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


def _field(data: Any, name: str, default: Any = None) -> Any:
    v = data.get(name, default) if isinstance(data, Mapping) else getattr(data, name, default)
    return getattr(v, "value", v) if v is not None and not isinstance(v, (str, bool, int, float, datetime)) else v


# --------------------------------------------------------------------------- state

# Fact layouts (lists, JSON-able), keyed by event id:
#   trial   ["t", ts, plan, trial_ends_at]
#   terms   ["s", ts, sub, plan, amount_minor, currency, interval, quantity]   started / plan_changed
#   renewed ["r", ts, sub, amount_minor, currency, interval]
#   due     ["d", ts, sub, due_at]
#   cancel  ["x", ts, sub, reason, effective_at | None]
#   ended   ["e", ts, sub]
#   payment ["p", ts, payment_id, amount_minor, currency, status]
# Snapshot (facts with ts < C folded; every field is a min/max merge, so folding commutes):
#   {"mx": newest folded ts, "pay": [purchases, first ts, last ts],
#    "subs": {sub: {"st": earliest terms ts, "pt": [ts, id, amount, currency, interval] latest price,
#                   "ft": [ts, id, plan, quantity] latest full terms, "end": earliest end,
#                   "fp": earliest ts of a positive price, "dn": [notice ts, id, due_at] latest
#                   renewal notice, "lr": latest renewed ts}}}


@dataclass(slots=True)
class AccountState:
    account_id: str
    facts: dict[str, list] = field(default_factory=dict)
    compacted: float | None = None  # C: facts before it live in snap
    snap: dict = field(default_factory=dict)

    def has_event(self, event_id: str) -> bool:
        return event_id in self.facts

    def max_ts(self) -> float | None:
        best = self.snap.get("mx")
        for f in self.facts.values():
            if best is None or f[1] > best:
                best = f[1]
        return best

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"v": 1, "a": self.account_id}
        if self.facts:
            out["f"] = self.facts
        if self.compacted is not None:
            out["c"] = self.compacted
            out["s"] = self.snap
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> AccountState:
        if d.get("v") != 1:
            raise ValueError(f"unsupported account state version {d.get('v')!r}")
        snap = d.get("s") or {}
        return cls(
            account_id=d["a"],
            facts={k: list(v) for k, v in d.get("f", {}).items()},
            compacted=d.get("c"),
            snap={
                **({"mx": snap["mx"]} if "mx" in snap else {}),
                **({"pay": list(snap["pay"])} if "pay" in snap else {}),
                "subs": {k: dict(v) for k, v in snap.get("subs", {}).items()},
            } if d.get("c") is not None else {},
        )


def _lt(a: list | None, b: list) -> bool:
    """a < b by (ts, id); None is smallest."""
    return a is None or (a[0], a[1]) < (b[0], b[1])


def _fold(snap: dict, eid: str, f: list) -> None:
    """Merge one fact into a snapshot (mutates ``snap``, which the caller owns)."""
    kind, ts = f[0], f[1]
    snap["mx"] = ts if snap.get("mx") is None else max(snap["mx"], ts)
    if kind == "t":
        return  # a folded trial started before every period we publish
    if kind == "p":
        if f[5] == "succeeded":  # refunds of folded payments cannot be matched any more
            n, first, last = snap.get("pay") or [0, None, None]
            snap["pay"] = [n + 1, ts if first is None else min(first, ts), ts if last is None else max(last, ts)]
        return
    subs = snap.setdefault("subs", {})
    s = subs.get(f[2])
    s = subs[f[2]] = dict(s) if s else {}
    if kind in ("s", "r"):
        s["st"] = ts if s.get("st") is None else min(s["st"], ts)
        price = [ts, eid, f[4], f[5], f[6]] if kind == "s" else [ts, eid, f[3], f[4], f[5]]
        if _lt(s.get("pt"), price):
            s["pt"] = price
        if kind == "s" and _lt(s.get("ft"), [ts, eid]):
            s["ft"] = [ts, eid, f[3], f[7]]
        if price[2] > 0:
            s["fp"] = ts if s.get("fp") is None else min(s["fp"], ts)
        if kind == "r":
            s["lr"] = ts if s.get("lr") is None else max(s["lr"], ts)
    elif kind in ("x", "e"):
        end = ts if kind == "e" or f[4] is None else f[4]
        s["end"] = end if s.get("end") is None else min(s["end"], end)
    elif kind == "d":
        if _lt(s.get("dn"), [ts, eid]):
            s["dn"] = [ts, eid, f[3]]


def compact(state: AccountState, keep_seconds: float = DEFAULT_KEEP_SECONDS) -> AccountState:
    """Fold facts older than ``floor_day(newest - keep_seconds)`` into the snapshot (pure)."""
    mx = state.max_ts()
    if mx is None:
        return state
    c = math.floor((mx - keep_seconds) / DAY) * DAY
    if state.compacted is not None and c <= state.compacted:
        return state
    old = [k for k, f in state.facts.items() if f[1] < c]
    if not old and state.compacted is None:
        return state  # nothing to fold yet: stay uncompacted (exact for any `now`)
    snap = {"subs": dict(state.snap.get("subs", {}))}
    for k in ("mx", "pay"):
        if k in state.snap:
            snap[k] = state.snap[k]
    facts = dict(state.facts)
    for k in sorted(old):
        _fold(snap, k, facts.pop(k))
    return AccountState(state.account_id, facts, float(c), snap)


def _fact(etype: str, ts: float, data: Any) -> list:
    g = lambda n, d=None: _field(data, n, d)  # noqa: E731
    if etype == "subscription.trial_started":
        return ["t", ts, g("plan"), _ts(g("trial_ends_at"))]
    if etype in ("subscription.started", "subscription.plan_changed"):
        return ["s", ts, g("subscription_id"), g("plan"), int(g("amount_minor")), g("currency"),
                g("interval"), int(g("quantity", 1) or 1)]
    if etype == "subscription.renewed":
        return ["r", ts, g("subscription_id"), int(g("amount_minor")), g("currency"), g("interval")]
    if etype == "subscription.renewal_due":
        return ["d", ts, g("subscription_id"), _ts(g("due_at"))]
    if etype == "subscription.cancelled":
        return ["x", ts, g("subscription_id"), g("reason", "voluntary"), _ts(g("effective_at"))]
    if etype == "subscription.ended":
        return ["e", ts, g("subscription_id")]
    if etype == "subscription.payment":
        return ["p", ts, g("payment_id"), int(g("amount_minor")), g("currency"), g("status")]
    raise ValueError(f"not a subscription event type: {etype!r}")


def apply(
    state: AccountState | None, event: Any, keep_seconds: float = DEFAULT_KEEP_SECONDS
) -> tuple[AccountState, bool]:
    """Record the facts of a subscription event. Pure: never mutates ``state``.

    Returns ``(new_state, True)``, or ``(state, False)`` for a duplicate id. Pass
    ``cfg.keep_seconds`` when the windows are configured longer than the defaults. An event
    older than the compaction point is folded into the snapshot (it is beyond the too-late cutoff
    anyway); its id is not remembered, so such an event is not recognised as a duplicate.
    """
    etype = event.type
    data = event.data
    eid = str(event.id)
    ts = float(event.ts)
    fact = _fact(etype, ts, data)  # raises for other families first
    if state is None:
        acc = _field(data, "account_id") or getattr(event, "subject", None)
        if not acc:
            raise ValueError("subscription event without account_id")
        state = AccountState(str(acc))
    elif state.has_event(eid):
        return state, False
    if state.compacted is not None and ts < state.compacted:
        snap = {"subs": dict(state.snap.get("subs", {}))}
        for k in ("mx", "pay"):
            if k in state.snap:
                snap[k] = state.snap[k]
        _fold(snap, eid, fact)
        return AccountState(state.account_id, state.facts, state.compacted, snap), True
    facts = dict(state.facts)
    facts[eid] = fact
    return compact(AccountState(state.account_id, facts, state.compacted, state.snap), keep_seconds), True


# --------------------------------------------------------------------------- derived facts


class Vec(NamedTuple):
    """An account at one instant."""

    paying: bool
    rep: int  # reporting-currency annual nano-units (convertible subscriptions only)
    plan: str | None  # primary plan: the paying subscription with the largest reporting value
    native: tuple  # ((plan, currency, annual nano-units), ...) of active subscriptions, sorted
    unconverted: tuple  # ((currency, n), ...): active paying subscriptions without an FX rate


ZERO = Vec(False, 0, None, (), ())


class _Sub:
    __slots__ = ("start", "end", "prices", "fulls", "fp", "dues", "renewals")

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None
        self.prices: list = []  # [ts, id, amount, currency, interval]
        self.fulls: list = []  # [ts, id, plan, quantity]
        self.fp: float | None = None
        self.dues: list = []  # [notice ts, id, due_at, folded?]
        self.renewals: list[float] = []


def _subs(state: AccountState) -> dict[str, _Sub]:
    subs: dict[str, _Sub] = {}
    for sid, s in state.snap.get("subs", {}).items():
        x = subs[sid] = _Sub()
        x.start, x.end, x.fp = s.get("st"), s.get("end"), s.get("fp")
        if s.get("pt"):
            x.prices.append(list(s["pt"]))
        if s.get("ft"):
            x.fulls.append(list(s["ft"]))
        if s.get("dn"):
            x.dues.append([*s["dn"], s.get("lr")])
    for eid, f in state.facts.items():
        kind, ts = f[0], f[1]
        if kind in ("t", "p"):
            continue
        x = subs.get(f[2])
        if x is None:
            x = subs[f[2]] = _Sub()
        if kind in ("s", "r"):
            x.start = ts if x.start is None else min(x.start, ts)
            if kind == "s":
                x.prices.append([ts, eid, f[4], f[5], f[6]])
                x.fulls.append([ts, eid, f[3], f[7]])
            else:
                x.prices.append([ts, eid, f[3], f[4], f[5]])
                x.renewals.append(ts)
        elif kind in ("x", "e"):
            end = ts if kind == "e" or f[4] is None else f[4]
            x.end = end if x.end is None else min(x.end, end)
        elif kind == "d":
            x.dues.append([ts, eid, f[3], None])
    for x in subs.values():
        x.prices.sort(key=lambda p: (p[0], p[1]))
        x.fulls.sort(key=lambda p: (p[0], p[1]))
    return subs


def _latest(items: list, t: float) -> list | None:
    best = None
    for it in items:  # sorted by (ts, id)
        if it[0] <= t:
            best = it
        else:
            break
    return best


def _vec(subs: Mapping[str, _Sub], t: float, cfg: RevenueConfig) -> Vec:
    """The account right after every change at or before ``t``."""
    native: dict[tuple, int] = {}
    unconv: dict[str, int] = {}
    rep = 0
    paying = False
    best: tuple | None = None
    for x in subs.values():
        if x.start is None or not (x.start <= t and (x.end is None or t < x.end)):
            continue
        price = _latest(x.prices, t)
        full = _latest(x.fulls, t)
        plan, qty = (full[2], full[3]) if full else (None, 1)
        amount, cur, interval = price[2], price[3], price[4]
        if amount * qty <= 0:
            continue
        paying = True
        annual = amount * qty * (12 if interval == "month" else 1) * 10 ** (9 - cfg.exponent(cur))
        native[(plan, cur)] = native.get((plan, cur), 0) + annual
        r = cfg.to_reporting(cur)
        if r is None:
            unconv[cur] = unconv.get(cur, 0) + 1
            r_units = 0
        else:
            r_units = round(annual * r)
        rep += r_units
        key = (r_units, annual, "" if plan is None else plan)
        if best is None or key > best[0]:
            best = (key, plan)
    return Vec(
        paying, rep, best[1] if best else None,
        tuple(sorted(((p, c, v) for (p, c), v in native.items()), key=lambda x: (x[0] or "", x[1]))),
        tuple(sorted(unconv.items())),
    )


class AccountFacts(NamedTuple):
    """What the metrics need, derived from a state (``derive``)."""

    start: float | None  # compaction point: the timeline is known from here (None = from the start)
    timeline: list  # [(t, Vec)] in time order: the account after each change point
    movements: list  # [(t, movement, amount)] amount in reporting annual nano-units
    dues: list  # [(sub, due_at, renewed)]
    trials: list  # [(ts, trial_ends_at, converted)]
    purchases: tuple  # (count, first ts | None, last ts | None)
    ended: dict  # sub -> end time (finite ends only)


def derive(state: AccountState, cfg: RevenueConfig) -> AccountFacts:
    subs = _subs(state)
    C = state.compacted
    times = set()
    for x in subs.values():
        if x.start is not None:
            times.add(x.start)
            times.update(p[0] for p in x.prices)
            times.update(p[0] for p in x.fulls)
        if x.end is not None:
            times.add(x.end)
    if C is not None:
        times = {t for t in times if t > C}
    timeline: list = []
    movements: list = []
    if C is not None:
        prev = _vec(subs, C, cfg)
        timeline.append((C, prev))
        # paid before C: a positive folded price while its subscription was active
        ever = any(x.fp is not None and x.fp < C and (x.end is None or x.fp < x.end) for x in subs.values())
    else:
        prev, ever = ZERO, False
    paying_starts: list[float] = []
    for t in sorted(times):
        v = _vec(subs, t, cfg)
        if v == prev:
            continue
        if v.paying and not prev.paying:
            movements.append((t, "reactivation" if ever else "new", v.rep))
            paying_starts.append(t)
        elif prev.paying and not v.paying:
            movements.append((t, "churn", prev.rep))
        elif v.paying and v.rep != prev.rep:
            d = v.rep - prev.rep
            movements.append((t, "expansion" if d > 0 else "contraction", abs(d)))
        ever = ever or v.paying
        timeline.append((t, v))
        prev = v

    dues = []
    for sid, x in subs.items():
        ds = sorted(x.dues, key=lambda d: (d[0], d[1]))
        seen_due: set = set()
        uniq = []
        for d in ds:  # one due per (subscription, due_at): the earliest notice
            if d[2] not in seen_due:
                seen_due.add(d[2])
                uniq.append(d)
        for i, d in enumerate(uniq):
            nxt = uniq[i + 1][0] if i + 1 < len(uniq) else math.inf
            renewed = any(d[0] <= r < nxt for r in x.renewals) or (d[3] is not None and d[3] >= d[0])
            dues.append((sid, d[2], renewed))

    trials = []
    grace = cfg.trial_conversion_grace_seconds
    for f in state.facts.values():
        if f[0] == "t":
            ends = f[3] if f[3] is not None else f[1]
            conv = any(f[1] <= t <= ends + grace for t in paying_starts)
            trials.append((f[1], ends, conv))

    n, first, last = state.snap.get("pay") or [0, None, None]
    pays: dict[str, list] = {}
    for f in state.facts.values():
        if f[0] == "p":
            pays.setdefault(f[2], []).append(f)
    for pf in pays.values():
        statuses = {f[5] for f in pf}
        if "succeeded" in statuses and "refunded" not in statuses:
            t = min(f[1] for f in pf if f[5] == "succeeded")
            n += 1
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
    ended = {sid: x.end for sid, x in subs.items() if x.end is not None}
    return AccountFacts(C, timeline, movements, dues, trials, (n, first, last), ended)


# --------------------------------------------------------------------------- contributions


def _base_items(v: Vec, cfg: RevenueConfig) -> dict[tuple, int]:
    """Current-state vector of an account as additive integer items."""
    lab = cfg.labels
    out: dict[tuple, int] = {}
    for plan, cur, val in v.native:
        k = ("mrr", lab.value("plan", plan), lab.value("currency", cur))
        out[k] = out.get(k, 0) + val
    for cur, n in v.unconverted:
        k = ("unconv", lab.value("currency", cur))
        out[k] = out.get(k, 0) + n
    if v.paying:
        p = lab.value("plan", v.plan)
        out[("paying", p)] = 1
        if v.rep:
            out[("rep", p)] = v.rep
    return out


def contributions(state: AccountState, cfg: RevenueConfig) -> list[Contribution]:
    """Everything one account adds to the revenue aggregates (see docs/metrics.md)."""
    f = derive(state, cfg)
    out: list[Contribution] = [("tracked", (), None, 1)]
    # current-state steps: the change of the vector at each change point
    prev: dict[tuple, int] = {}
    for t, v in f.timeline:
        cur = _base_items(v, cfg)
        for k in prev.keys() | cur.keys():
            d = cur.get(k, 0) - prev.get(k, 0)
            if d:
                out.append(("base", k, t, d))
        prev = cur
    for t, mv, amount in f.movements:
        out.append(("mv", (mv,), t, 1))
        if amount:
            out.append(("mva", (mv,), t, amount))

    # period corrections for months starting after the compaction point (see module docstring)
    by_month: dict[int, list] = {}
    for t, v in f.timeline:
        if f.start is None or t > f.start:
            by_month.setdefault(month_index(t), []).append((t, v))
    mv_at = {}
    for t, mv, amount in f.movements:
        mv_at[t] = (mv, amount)
    for m, points in by_month.items():
        ms = month_start(m)
        if f.start is not None and ms <= f.start:
            continue
        before = ZERO
        for t, v in f.timeline:
            if t < ms:
                before = v
        start = before.paying
        churned = 0
        cohort = dict.fromkeys(COHORT_MOVEMENTS, 0)
        last: dict[str, int] = {}
        for t, v in points:
            mv = mv_at.get(t)
            if start and mv is not None and mv[0] in cohort:
                cohort[mv[0]] += mv[1]
                if mv[0] == "churn":
                    churned = 1
            end = v.paying
            corr = {
                "end": int(end) - int(start),
                "new": int(end and not start),
                "retained": -int(start and not end),
                "churned": churned,
                **{"cohort_" + k: a for k, a in cohort.items()},
            }
            for k in corr.keys() | last.keys():
                d = corr.get(k, 0) - last.get(k, 0)
                if d:
                    out.append(("pc", (m, k), t, d))
            last = corr

    for _sid, due_at, renewed in f.dues:
        m = month_index(due_at)
        out.append(("pm", (m, "renewals_due"), None, 1))
        if renewed:
            out.append(("pm", (m, "renewals_renewed"), None, 1))
    for ts, _ends, conv in f.trials:
        m = month_index(ts)
        out.append(("pm", (m, "trials_started"), None, 1))
        if conv:
            out.append(("pm", (m, "trials_converted"), None, 1))
    n, first, last_p = f.purchases
    if n >= 1:
        out.append(("life", ("purchasing",), None, 1))
    if n >= 2:
        out.append(("life", ("repeat",), None, 1))
        out.append(("life", ("gaps",), None, n - 1))
        out.append(("life", ("gap_ms",), None, round((last_p - first) * 1000)))
    return out


def retention_until(state: AccountState, cfg: RevenueConfig) -> float | None:
    """Event time after which the account no longer affects any metric (delete it then), or
    None (keep). Accounts that ever paid or purchased are kept (compacted): they feed the
    lifetime purchase metrics and a later return must count as a reactivation, not as new."""
    f = derive(state, cfg)
    if f.purchases[0] or any(v.paying for _, v in f.timeline):
        return None
    if f.start is not None and any(
        x.get("fp") is not None for x in state.snap.get("subs", {}).values()
    ):
        return None
    mx = state.max_ts()
    ends = [e for e in f.ended.values()] + [t[1] for t in f.trials]
    last = max([mx] + ends) if mx is not None else None
    # the caller deletes once this is before the watermark cutoff (~ now - horizon): i.e. when
    # the last fact is more than keep_seconds old, before the start of the previous month
    return None if last is None else last + cfg.keep_seconds - cfg.horizon


def account_signal(state: AccountState, now: float, cfg: RevenueConfig | None = None) -> dict | None:
    """Revenue inputs of the customer-health score for one account at ``now``, or None for an
    account with neither subscriptions nor trials.

    mrr: current MRR in the reporting currency; paying; churned (paid before, not now);
    contracted_recently: a contraction within the last ``signal_window_seconds``;
    renewal_due_soon: a renewal due within that horizon (or overdue) of a subscription still
    active now, not renewed; cancel_pending: an active paying subscription has a scheduled end;
    trialing: in a trial and not paying; plan: primary plan (raw value, not a label).
    """
    cfg = cfg or RevenueConfig()
    f = derive(state, cfg)
    if not f.timeline and not f.trials and not f.dues:
        return None
    v = ZERO
    ever = f.start is not None and any(
        x.get("fp") is not None and x.get("fp") < f.start for x in state.snap.get("subs", {}).values()
    )
    for t, vt in f.timeline:
        if t <= now:
            v = vt
            ever = ever or vt.paying
    w = cfg.signal_window_seconds
    contracted = any(mv == "contraction" and now - w < t <= now for t, mv, _ in f.movements)
    subs = _subs(state)

    def active(sid: str) -> bool:
        x = subs.get(sid)
        return bool(x and x.start is not None and x.start <= now and (x.end is None or now < x.end))

    due_soon = any(not r and d <= now + w and active(sid) for sid, d, r in f.dues)
    cancel_pending = any(active(sid) and end > now for sid, end in f.ended.items())
    trialing = not v.paying and any(ts <= now < ends for ts, ends, _ in f.trials)
    return {
        "account_id": state.account_id,
        "mrr": v.rep / 12 / NANO,
        "currency": cfg.reporting_currency,
        "paying": v.paying,
        "plan": v.plan,
        "churned": ever and not v.paying,
        "contracted_recently": contracted,
        "renewal_due_soon": due_soon,
        "cancel_pending": cancel_pending,
        "trialing": trialing,
    }


# --------------------------------------------------------------------------- index


class StepStore:
    """Sums of integer steps ``(key, t, delta)`` read as "total of steps with t < p" at a few
    named read points, each with an incremental cursor (moving a cursor forward costs the steps it
    passes; moving it back rebuilds it). Zero totals are deleted, so retractions leave nothing."""

    __slots__ = ("_steps", "_cursors")

    def __init__(self) -> None:
        self._steps: dict[float, dict] = {}
        self._cursors: dict[str, list] = {}  # name -> [pos, totals, heap, pending set]

    @staticmethod
    def _merge(dst: dict, key, delta) -> None:
        v = dst.get(key, 0) + delta
        if v:
            dst[key] = v
        else:
            dst.pop(key, None)

    def add(self, key, t: float, delta: int) -> None:
        cell = self._steps.get(t)
        if cell is None:
            cell = self._steps[t] = {}
        self._merge(cell, key, delta)
        if not cell:
            del self._steps[t]
        for cur in self._cursors.values():
            if t < cur[0]:
                self._merge(cur[1], key, delta)
            elif t not in cur[3]:
                heapq.heappush(cur[2], t)
                cur[3].add(t)

    def read(self, name: str, p: float) -> Mapping:
        """Totals per key of the steps before ``p`` (a live view: do not mutate)."""
        cur = self._cursors.get(name)
        if cur is None or p < cur[0]:
            totals: dict = {}
            heap = []
            for t, cell in self._steps.items():
                if t < p:
                    for k, d in cell.items():
                        self._merge(totals, k, d)
                else:
                    heap.append(t)
            heapq.heapify(heap)
            cur = self._cursors[name] = [p, totals, heap, set(heap)]
            return totals
        heap, totals = cur[2], cur[1]
        while heap and heap[0] < p:
            t = heapq.heappop(heap)
            cur[3].discard(t)
            cell = self._steps.get(t)
            if cell:
                for k, d in cell.items():
                    self._merge(totals, k, d)
        cur[0] = p
        return totals

    def clear(self) -> None:
        self._steps.clear()
        self._cursors.clear()

    def __len__(self) -> int:
        return len(self._steps)


def _mrr(v: int) -> float:
    return v / 12 / NANO


class RevenueIndex(ContributionIndex):
    """Revenue aggregates derived from account states. Not thread-safe (use the event loop)."""

    def _reset(self) -> None:
        cfg = self.cfg
        self._mv = RollingCounter(cfg.windows, cfg.bucket_seconds)
        self._mva = RollingCounter(cfg.windows, cfg.bucket_seconds)
        self._base = StepStore()
        self._pc = StepStore()
        self._pm: dict[tuple, int] = {}
        self._gauges: dict[tuple, int] = {}
        self._seen: dict[str, set] = {"mrr": set(), "paying": set(), "rep": set(), "unconv": set()}
        self.dropped = 0

    def _apply(self, c: Contribution, k: int) -> int:
        name, key, ts, value = c
        if name in ("mv", "mva"):
            store = self._mv if name == "mv" else self._mva
            return 0 if store.add(key, ts, k * value) or k < 0 else k
        if name == "base":
            self._base.add(key, ts, k * value)
            self._seen[key[0]].add(key[1:])
        elif name == "pc":
            self._pc.add(key, ts, k * value)
        else:
            d = self._pm if name == "pm" else self._gauges
            n = d.get((name, key), 0) + k * value
            if n:
                d[(name, key)] = n
            else:
                d.pop((name, key), None)
        return 0

    def _contributions(self, state: AccountState) -> list[Contribution]:
        return contributions(state, self.cfg)

    def evict(self, cutoff_ts: float | None) -> int:
        if cutoff_ts is None:
            return 0
        return self._mv.evict(cutoff_ts) + self._mva.evict(cutoff_ts)

    # -- exposition -------------------------------------------------------
    def collect(self, now: float) -> list[Metric]:
        cfg = self.cfg
        out: list[Metric] = []
        after_now = math.nextafter(now, math.inf)  # "at now" includes changes timestamped now
        base_now = self._base.read("now", after_now)

        def state_gauge(kind: str, name: str, doc: str, labels: tuple, conv=lambda v: v):
            fam = GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))
            for lv in sorted(self._seen[kind]):
                fam.add_metric(list(lv), conv(base_now.get((kind, *lv), 0)))
            out.append(fam)

        state_gauge("mrr", "mrr", "MRR now of active subscriptions in their own currency (major units), "
                    "by subscription plan.", ("plan", "currency"), _mrr)
        state_gauge("rep", "mrr_reporting", "MRR now in the reporting currency (static FX), by the "
                    "account's primary plan. ARR = 12 x this.", ("plan",), _mrr)
        state_gauge("paying", "paying_accounts", "Accounts with MRR > 0 now, by primary plan.", ("plan",))
        state_gauge("unconv", "unconverted_subscriptions", "Active paying subscriptions whose currency "
                    "has no FX rate (left out of reporting-currency values).", ("currency",))
        info = GaugeMetricFamily(PREFIX + "reporting_currency_info", "Reporting currency of the "
                                 "*_reporting and movement amounts.", labels=["currency"])
        info.add_metric([cfg.reporting_currency], 1)
        out.append(info)

        # movements in trailing windows (all five movements always published)
        cnt = self._mv.windows_at(now)
        amt = self._mva.windows_at(now)
        f1 = GaugeMetricFamily(PREFIX + "mrr_movements", "MRR movements in the window, by the event "
                               "time of the change.", labels=["movement", "window"])
        f2 = GaugeMetricFamily(PREFIX + "mrr_movement_amount", "MRR moved in the window in the "
                               "reporting currency (positive; churn = MRR lost).", labels=["movement", "window"])
        for mv in MOVEMENTS:
            for w in cfg.windows:
                f1.add_metric([mv, window_label(w)], cnt[w].get((mv,), 0))
                f2.add_metric([mv, window_label(w)], _mrr(amt[w].get((mv,), 0)))
        out += [f1, f2]

        # calendar-month periods
        m_cur = month_index(now)
        months = {"current_month": m_cur, "previous_month": m_cur - 1}
        pc = self._pc.read("now", after_now)
        vals: dict[str, dict[str, float]] = {}
        for pname, m in months.items():
            at = self._base.read(pname, month_start(m))
            start = sum(v for k, v in at.items() if k[0] == "paying")
            start_rep = sum(v for k, v in at.items() if k[0] == "rep")
            g = lambda k: pc.get((m, k), 0)  # noqa: E731
            vals[pname] = {
                "period_start_accounts": start,
                "period_end_accounts": start + g("end"),
                "period_new_accounts": g("new"),
                "period_retained_accounts": start + g("retained"),
                "period_churned_accounts": g("churned"),
                "period_start_mrr": _mrr(start_rep),
                **{f"cohort:{mv}": _mrr(g("cohort_" + mv)) for mv in COHORT_MOVEMENTS},
                **{k: self._pm.get(("pm", (m, k)), 0) for k in
                   ("renewals_due", "renewals_renewed", "trials_started", "trials_converted")},
            }
        docs = {
            "period_start_accounts": "Accounts paying at the start of the period (UTC calendar month).",
            "period_end_accounts": "Accounts paying at the end of the period (now for the current month).",
            "period_new_accounts": "Accounts paying at the end that were not at the start (new or reactivated).",
            "period_retained_accounts": "Accounts paying at both the start and the end of the period.",
            "period_churned_accounts": "Accounts paying at the start with a churn movement in the period.",
            "period_start_mrr": "Reporting-currency MRR at the period start of the accounts paying then.",
            "renewals_due": "Renewals due (one per subscription and due_at) with due_at in the period.",
            "renewals_renewed": "Of renewals_due, those renewed (a renewed event for the subscription "
                                "after its renewal notice and before the next one).",
            "trials_started": "Trials started in the period.",
            "trials_converted": "Of trials_started, those whose account started paying between the "
                                "trial start and the trial end plus the conversion grace.",
        }
        for name, doc in docs.items():
            fam = GaugeMetricFamily(PREFIX + name, doc, labels=["period"])
            for pname in PERIODS:
                fam.add_metric([pname], vals[pname][name])
            out.append(fam)
        fam = GaugeMetricFamily(PREFIX + "period_cohort_mrr_movement", "MRR movements in the period "
                                "of the accounts paying at its start (reporting currency). NRR = "
                                "(start + expansion - contraction - churn) / start.", labels=["period", "movement"])
        for pname in PERIODS:
            for mv in COHORT_MOVEMENTS:
                fam.add_metric([pname, mv], vals[pname]["cohort:" + mv])
        out.append(fam)

        life = {k[1][0]: v for k, v in self._gauges.items() if k[0] == "life"}
        for name, key, doc, conv in (
            ("purchasing_accounts", "purchasing", "Accounts held with >= 1 purchase (succeeded, "
             "not refunded payment).", int),
            ("repeat_purchasing_accounts", "repeat", "Accounts held with >= 2 purchases.", int),
            ("purchase_gaps", "gaps", "Gaps between consecutive purchases of an account, summed over accounts.", int),
            ("purchase_gap_seconds_sum", "gap_ms", "Total seconds between consecutive purchases "
             "(mean time between purchases = this / purchase_gaps).", lambda v: v / 1000),
        ):
            out.append(GaugeMetricFamily(PREFIX + name, doc, value=conv(life.get(key, 0))))
        out.append(GaugeMetricFamily(PREFIX + "accounts_tracked", "Account states held by this worker.",
                                     value=self._gauges.get(("tracked", ()), 0)))
        dropped = CounterMetricFamily(PREFIX + "window_dropped_contributions", "Window contributions "
                                      "refused because their bucket was already evicted (too late).")
        dropped.add_metric([], self.dropped)
        out.append(dropped)
        return out
