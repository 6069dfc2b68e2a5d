"""What an account's facts mean: its MRR timeline, movements and periods (derive), what it
contributes to the aggregates, when it may be forgotten, and its signal to customer health."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

from stream_app.engine.expiry import retention_bucket

from .config import COHORT_MOVEMENTS, Contribution, NANO, RevenueConfig, month_index, month_start
from .state import AccountState


# --------------------------------------------------------------------------- derived facts


class Vec(NamedTuple):
    """An account at one instant."""

    paying: bool
    rep: int  # reporting-currency annual nano-units (convertible subscriptions only)
    plan: str | None  # primary plan: the paying subscription with the largest reporting value
    native: tuple  # ((plan, currency, annual nano-units), ...) of active subscriptions, sorted
    unconverted: tuple  # ((currency, n), ...): active paying subscriptions without an FX rate
    pending: bool = False  # a paying subscription has a known, scheduled end (pending churn)
    pending_rep: int = 0  # reporting annual nano-units of those subscriptions


ZERO = Vec(False, 0, None, (), ())
#: Churn reasons (contract: subscription.cancelled.reason; "other" also = ended without a
#: cancellation, or a move to a free price), in the order that decides a churn of several at once.
REASONS = ("involuntary", "voluntary", "other")


class _Sub:
    __slots__ = ("start", "end", "prices", "fulls", "fp", "dues", "renewals", "known", "ends")

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None
        self.prices: list = []  # [ts, id, amount, currency, interval]
        self.fulls: list = []  # [ts, id, plan, quantity]
        self.fp: float | None = None
        self.dues: list = []  # [notice ts, id, due_at, folded?]
        self.renewals: list[float] = []
        self.known: float | None = None  # earliest time an end was known (cancel / ended event time)
        self.ends: list = []  # [end, event ts, id, reason] of cancellations: the earliest is the cause


def _subs(state: AccountState) -> dict[str, _Sub]:
    subs: dict[str, _Sub] = {}
    for sid, s in state.snap.get("subs", {}).items():
        x = subs[sid] = _Sub()
        x.start, x.end, x.fp = s.get("st"), s.get("end"), s.get("fp")
        if x.end is not None:
            x.known = -math.inf  # folded: known before the compaction point
        if s.get("ec"):
            x.ends.append(list(s["ec"]))
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
            x.known = ts if x.known is None else min(x.known, ts)
            if kind == "x":
                x.ends.append([end, ts, eid, f[3]])
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


def _paying_terms(x: _Sub, t: float) -> tuple | None:
    """(plan, quantity, amount, currency, interval) of a subscription paying at ``t``, else None."""
    if x.start is None or not (x.start <= t and (x.end is None or t < x.end)):
        return None
    price = _latest(x.prices, t)
    full = _latest(x.fulls, t)
    plan, qty = (full[2], full[3]) if full else (None, 1)
    return (plan, qty, price[2], price[3], price[4]) if price[2] * qty > 0 else None


def _end_reason(x: _Sub) -> str:
    """Why a subscription ended: the reason of the earliest cancellation (end, time, id) whose end
    is its end; ``other`` when no cancellation ended it (an ended event)."""
    causes = [e for e in x.ends if e[0] == x.end]
    reason = min(causes)[3] if causes else "other"
    return reason if reason in REASONS else "other"


def _vec(subs: Mapping[str, _Sub], t: float, cfg: RevenueConfig) -> Vec:
    """The account right after every change at or before ``t``."""
    native: dict[tuple, int] = {}
    unconv: dict[str, int] = {}
    rep = 0
    paying = pending = False
    pending_rep = 0
    best: tuple | None = None
    for x in subs.values():
        terms = _paying_terms(x, t)
        if terms is None:
            continue
        plan, qty, amount, cur, interval = terms
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
        if x.known is not None and x.known <= t:  # its scheduled end (> t) is known at t
            pending = True
            pending_rep += r_units
        key = (r_units, annual, "" if plan is None else plan)
        if best is None or key > best[0]:
            best = (key, plan)
    return Vec(
        paying, rep, best[1] if best else None,
        tuple(sorted(((p, c, v) for (p, c), v in native.items()), key=lambda x: (x[0] or "", x[1]))),
        tuple(sorted(unconv.items())), pending, pending_rep,
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
    churns: list  # [(t, reason, seconds since the account first paid)], one per churn movement
    failed: list  # [t]: earliest failed attempt of each payment id with one
    recovered: list  # [(t, amount in reporting nano-units)]: failed payments that later succeeded


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
        if x.known is not None and math.isfinite(x.known):
            times.add(x.known)  # a pending cancellation starts
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
    # first instant the account paid: its first "new" movement, or a folded positive price
    folded_fp = [x.fp for x in subs.values() if x.fp is not None and C is not None and x.fp < C
                 and (x.end is None or x.fp < x.end)]
    first_paid = min(folded_fp) if folded_fp else None
    paying_starts: list[float] = []
    churns: list = []
    before = C if C is not None else -math.inf  # the previous change point: state just before t
    for t in sorted(times):
        v = _vec(subs, t, cfg)
        prev_t, before = before, t
        if v == prev:
            continue
        if v.paying and not prev.paying:
            movements.append((t, "reactivation" if ever else "new", v.rep))
            paying_starts.append(t)
            first_paid = t if first_paid is None else first_paid
        elif prev.paying and not v.paying:
            movements.append((t, "churn", prev.rep))
            stopped = [x for x in subs.values() if _paying_terms(x, prev_t) is not None]
            causes = {_end_reason(x) if x.end is not None and x.end <= t else "other" for x in stopped}
            reason = next(r for r in REASONS if r in causes)
            churns.append((t, reason, t - first_paid if first_paid is not None else 0.0))
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
    pays: dict[str, dict] = {}  # payment id -> {event id: fact}
    for eid, f in state.facts.items():
        if f[0] == "p":
            pays.setdefault(f[2], {})[eid] = f
    for pf in pays.values():
        statuses = {f[5] for f in pf.values()}
        if "succeeded" in statuses and "refunded" not in statuses:
            t = min(f[1] for f in pf.values() if f[5] == "succeeded")
            n += 1
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
    ended = {sid: x.end for sid, x in subs.items() if x.end is not None}
    failed, recovered = _dunning(pays, cfg)
    return AccountFacts(C, timeline, movements, dues, trials, (n, first, last), ended, churns, failed, recovered)


def _dunning(pays: Mapping[str, list], cfg: RevenueConfig) -> tuple[list, list]:
    """Failed payments (a payment id's earliest ``failed`` event) and recovered ones (its earliest
    ``succeeded`` event at or after that failure, by (time, id); amount in reporting nano-units,
    0 without an FX rate). Facts folded into the snapshot are not seen (documented)."""
    failed, recovered = [], []
    for pid, pf in pays.items():
        fails = [f[1] for f in pf.values() if f[5] == "failed"]
        if not fails:
            continue
        t_fail = min(fails)
        failed.append(t_fail)
        wins = sorted((f[1], eid, f) for eid, f in pf.items() if f[5] == "succeeded" and f[1] >= t_fail)
        if wins:
            f = wins[0][2]
            r = cfg.to_reporting(f[4])
            recovered.append((f[1], 0 if r is None else round(f[3] * 10 ** (9 - cfg.exponent(f[4])) * r)))
    return failed, recovered


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
        if v.pending:
            out[("pending", p)] = 1
            if v.pending_rep:
                out[("pending_rep", p)] = v.pending_rep
    return out


def contributions(state: AccountState, cfg: RevenueConfig) -> list[Contribution]:
    """Everything one account adds to the revenue aggregates (see docs/metrics.md)."""
    f = derive(state, cfg)
    # retained-entity gauges (tracked, lifetime purchases) carry the retention bucket
    kept = retention_bucket(retention_until(state, cfg, f), cfg.bucket_seconds)
    out: list[Contribution] = [("tracked", (kept,), None, 1)]
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
    # churn that happened and why, failed and recovered payments: trailing windows ("wc" counts,
    # "wa" integer amounts: MRR / revenue in reporting nano-units, tenure in milliseconds)
    for (t, mv, amount), (_t, reason, tenure) in zip((m for m in f.movements if m[1] == "churn"), f.churns):
        out.append(("wc", ("churn", reason), t, 1))
        if amount:
            out.append(("wa", ("churn", reason), t, amount))
        if tenure:
            out.append(("wa", ("tenure",), t, round(tenure * 1000)))
    for t in f.failed:
        out.append(("wc", ("failed",), t, 1))
    for t, amount in f.recovered:
        out.append(("wc", ("recovered",), t, 1))
        if amount:
            out.append(("wa", ("recovered",), t, amount))

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
        out.append(("life", ("purchasing", kept), None, 1))
    if n >= 2:
        out.append(("life", ("repeat", kept), None, 1))
        out.append(("life", ("gaps", kept), None, n - 1))
        out.append(("life", ("gap_ms", kept), None, round((last_p - first) * 1000)))
    return out


def _last_fact(state: AccountState, f: AccountFacts) -> float | None:
    """The account's newest fact: event, subscription end or trial end (ends may lie ahead)."""
    mx = state.max_ts()
    if mx is None:
        return None
    return max([mx] + list(f.ended.values()) + [t[1] for t in f.trials])


def retention_until(state: AccountState, cfg: RevenueConfig, f: AccountFacts | None = None) -> float | None:
    """Event time after which the account no longer affects any metric (delete it then), or
    None (keep).

    * An account that never paid nor purchased (trials only) goes ``keep_seconds`` after its
      newest fact: before the start of the previous month, beyond the worker horizon.
    * With ``account_retention_seconds`` (R), an account that is not paying at the end of its
      timeline (churned, or purchases only) ends its life R after its newest fact: a later event
      starts a new life (a return is then *new*, not a reactivation) and the lifetime purchase
      metrics forget it (docs/metrics.md, Revenue, State and memory).
    * Otherwise (R = 0, or still paying) the account is kept."""
    f = derive(state, cfg) if f is None else f
    last = _last_fact(state, f)
    ever = bool(f.purchases[0]) or any(v.paying for _, v in f.timeline) or (
        f.start is not None and any(x.get("fp") is not None for x in state.snap.get("subs", {}).values()))
    if not ever:
        # the caller deletes once this is before the watermark cutoff (~ now - horizon): i.e. when
        # the last fact is more than keep_seconds old, before the start of the previous month
        return None if last is None else last + cfg.keep_seconds - cfg.horizon
    r = cfg.account_retention_seconds
    if not r or last is None or (f.timeline and f.timeline[-1][1].paying):
        return None
    return last + r


def life_ended(state: AccountState, cfg: RevenueConfig, ts: float) -> bool:
    """Whether an event at ``ts`` comes after the end of the account's life (retention on, not
    paying, newest fact more than ``account_retention_seconds`` before ``ts``)."""
    r = cfg.account_retention_seconds
    mx = state.max_ts()
    if not r or mx is None or ts <= mx + r:
        return False  # the newest fact is at least the newest event: no derive on the hot path
    f = derive(state, cfg)
    last = _last_fact(state, f)
    paying_at_end = bool(f.timeline) and f.timeline[-1][1].paying
    ever = bool(f.purchases[0]) or any(v.paying for _, v in f.timeline)
    return ever and not paying_at_end and last is not None and ts > last + cfg.account_retention_seconds


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
