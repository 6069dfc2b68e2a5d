"""Independent batch computation of the revenue metrics, written from docs/metrics.md.

Shares no code with stream_app.engine: it sees the whole log, dedupes by id, sorts by event time and
evaluates every definition by brute force (an account's state at an instant is rebuilt from its
raw events each time it is needed; no compaction, no incremental sums, floats throughout).
Result: ``{(sample_name, frozenset(labels.items())): value}``, zero samples left out. Label values
are raw (callers keep them under the caps).

Events are dicts {"id", "type", "time" (epoch s), "data": {... datetimes as epoch seconds}}.
Params: bucket, windows, reporting, fx {currency: value in a common base}, minor {currency: exp},
default_minor, trial_grace.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from .common import Samples, by_entity, first_deliveries, time_order, window_name, window_test

P = "stream_app_revenue_"
TERMS = ("subscription.started", "subscription.plan_changed")
PRICES = TERMS + ("subscription.renewed",)


def _lab(**kw):
    return frozenset(kw.items())


def _month(ts):
    d = datetime.fromtimestamp(ts, timezone.utc)
    return d.year, d.month


def _month_start(y, m):
    return datetime(y, m, 1, tzinfo=timezone.utc).timestamp()


class _Account:
    def __init__(self, evs, prm):
        self.evs = evs
        self.prm = prm
        self.subs = {}
        for e in evs:
            sid = e["data"].get("subscription_id")
            if sid is not None:
                self.subs.setdefault(sid, []).append(e)

    def _interval(self, evs):
        starts = [e["time"] for e in evs if e["type"] in PRICES]
        ends = []
        for e in evs:
            if e["type"] == "subscription.ended":
                ends.append(e["time"])
            elif e["type"] == "subscription.cancelled":
                eff = e["data"].get("effective_at")
                ends.append(e["time"] if eff is None else eff)
        return (min(starts) if starts else None), (min(ends) if ends else None)

    def state(self, happened):
        """Account after every change for which happened(time) is true. Returns
        (paying, reporting MRR, primary plan, {(plan, currency): MRR}, {currency: unconverted subs})."""
        prm = self.prm
        rep_rate = prm["fx"][prm["reporting"]]
        native, unconv = {}, {}
        rep = 0.0
        paying = False
        best = None
        for evs in self.subs.values():
            start, end = self._interval(evs)
            if start is None or not happened(start) or (end is not None and happened(end)):
                continue
            prices = [e for e in evs if e["type"] in PRICES and happened(e["time"])]
            fulls = [e for e in evs if e["type"] in TERMS and happened(e["time"])]
            price = prices[-1]["data"]  # events are in (time, id) order
            plan = fulls[-1]["data"]["plan"] if fulls else None
            qty = fulls[-1]["data"].get("quantity", 1) if fulls else 1
            if price["amount_minor"] * qty <= 0:
                continue
            paying = True
            cur = price["currency"]
            monthly = price["amount_minor"] * qty / 10 ** prm["minor"].get(cur, prm["default_minor"])
            if price["interval"] == "year":
                monthly /= 12
            native[(plan, cur)] = native.get((plan, cur), 0.0) + monthly
            if cur in prm["fx"]:
                r = monthly * prm["fx"][cur] / rep_rate
            else:
                unconv[cur] = unconv.get(cur, 0) + 1
                r = 0.0
            rep += r
            key = (r, monthly, plan or "")
            if best is None or key > best[0]:
                best = (key, plan)
        return paying, rep, (best[1] if best else None), native, unconv

    def sub_paying_rep(self, evs, t):
        """Reporting MRR of one subscription right after every change at or before ``t`` when it
        pays then (0.0 without an FX rate), else None."""
        prm = self.prm
        start, end = self._interval(evs)
        if start is None or start > t or (end is not None and end <= t):
            return None
        prices = [e for e in evs if e["type"] in PRICES and e["time"] <= t]
        fulls = [e for e in evs if e["type"] in TERMS and e["time"] <= t]
        price = prices[-1]["data"]
        qty = fulls[-1]["data"].get("quantity", 1) if fulls else 1
        if price["amount_minor"] * qty <= 0:
            return None
        cur = price["currency"]
        monthly = price["amount_minor"] * qty / 10 ** prm["minor"].get(cur, prm["default_minor"])
        if price["interval"] == "year":
            monthly /= 12
        return monthly * prm["fx"][cur] / prm["fx"][prm["reporting"]] if cur in prm["fx"] else 0.0

    def pending(self, now):
        """Reporting MRR of the subscriptions paying at ``now`` with a cancelled or ended event at
        or before ``now`` (their end is still ahead), or None when there is none."""
        amounts = [
            r for evs in self.subs.values()
            if (r := self.sub_paying_rep(evs, now)) is not None
            and any(e["type"] in ("subscription.cancelled", "subscription.ended") and e["time"] <= now for e in evs)
        ]
        return sum(amounts) if amounts else None

    def churn_reason(self, t):
        """Why the account stopped paying at ``t``: over the subscriptions paying just before,
        the reason of the cancellation that set each one's end (earliest by end, time, id) when
        it ended at ``t``, else other; involuntary before voluntary before other."""
        reasons = set()
        for evs in self.subs.values():
            before = max((x for x in self.change_points() if x < t), default=None)
            if before is None or self.sub_paying_rep(evs, before) is None:
                continue
            _start, end = self._interval(evs)
            reason = "other"
            if end is not None and end <= t:
                causes = sorted(
                    (e["time"] if e["data"].get("effective_at") is None else e["data"]["effective_at"],
                     e["time"], e["id"], e["data"].get("reason", "voluntary"))
                    for e in evs if e["type"] == "subscription.cancelled"
                )
                causes = [c for c in causes if c[0] == end]
                if causes:
                    reason = causes[0][3]
            reasons.add(reason)
        return next(r for r in ("involuntary", "voluntary", "other") if r in reasons)

    def change_points(self):
        times = set()
        for evs in self.subs.values():
            start, end = self._interval(evs)
            if start is None:
                continue
            times.add(start)
            if end is not None:
                times.add(end)
            times.update(e["time"] for e in evs if e["type"] in PRICES)
        return times

    def movements(self):
        times = set()
        for evs in self.subs.values():
            start, end = self._interval(evs)
            if start is None:
                continue
            times.add(start)
            if end is not None:
                times.add(end)
            times.update(e["time"] for e in evs if e["type"] in PRICES)
        out = []
        prev = (False, 0.0)
        ever = False
        for t in sorted(times):
            paying, rep, *_ = self.state(lambda x, t=t: x <= t)
            if paying and not prev[0]:
                out.append((t, "reactivation" if ever else "new", rep))
            elif prev[0] and not paying:
                out.append((t, "churn", prev[1]))
            elif paying and not math.isclose(rep, prev[1], rel_tol=1e-12, abs_tol=1e-9):
                out.append((t, "expansion" if rep > prev[1] else "contraction", abs(rep - prev[1])))
            ever = ever or paying
            prev = (paying, rep)
        return out


def compute(events, now, prm):
    by_acc = by_entity(sorted(first_deliveries(events), key=time_order), "account_id")
    out = Samples()
    put = out.put
    in_window = window_test(now, prm["bucket"])

    put(P + "accounts_tracked", _lab(), len(by_acc))
    put(P + "reporting_currency_info", _lab(currency=prm["reporting"]), 1)
    y, mo = _month(now)
    prev_y, prev_mo = (y, mo - 1) if mo > 1 else (y - 1, 12)
    periods = {
        "current_month": (_month_start(y, mo), lambda t: t <= now),
        "previous_month": (_month_start(prev_y, prev_mo), lambda t, e=_month_start(y, mo): t < e),
    }

    for acc_id, evs in by_acc.items():
        a = _Account(evs, prm)
        paying, rep, plan, native, unconv = a.state(lambda t: t <= now)
        for (pl, cur), v in native.items():
            put(P + "mrr", _lab(plan=pl or "other", currency=cur), v)
        for cur, n in unconv.items():
            put(P + "unconverted_subscriptions", _lab(currency=cur), n)
        if paying:
            put(P + "paying_accounts", _lab(plan=plan or "other"), 1)
            put(P + "mrr_reporting", _lab(plan=plan or "other"), rep)

        pending = a.pending(now)
        if paying and pending is not None:
            put(P + "pending_churn_accounts", _lab(plan=plan or "other"), 1)
            put(P + "pending_churn_mrr", _lab(plan=plan or "other"), pending)

        mvs = a.movements()
        first_paid = min((t for t, kind, _ in mvs if kind == "new"), default=None)
        for t, kind, amount in mvs:
            for w in prm["windows"]:
                if in_window(t, w):
                    put(P + "mrr_movements", _lab(movement=kind, window=window_name(w)), 1)
                    put(P + "mrr_movement_amount", _lab(movement=kind, window=window_name(w)), amount)
                    if kind == "churn":
                        reason = a.churn_reason(t)
                        put(P + "churn_movements", _lab(reason=reason, window=window_name(w)), 1)
                        put(P + "churn_movement_amount", _lab(reason=reason, window=window_name(w)), amount)
                        put(P + "churn_tenure_seconds_sum", _lab(window=window_name(w)), t - first_paid)

        for pname, (M, ended_by) in periods.items():
            s_pay, s_rep, *_ = a.state(lambda t, M=M: t < M)
            e_pay = a.state(ended_by)[0]
            lab = _lab(period=pname)
            in_period = [(t, k, amt) for t, k, amt in mvs if t >= M and ended_by(t)]
            if s_pay:
                put(P + "period_start_accounts", lab, 1)
                put(P + "period_start_mrr", lab, s_rep)
                if e_pay:
                    put(P + "period_retained_accounts", lab, 1)
                if any(k == "churn" for _, k, _ in in_period):
                    put(P + "period_churned_accounts", lab, 1)
                for _, k, amt in in_period:
                    if k != "new":
                        put(P + "period_cohort_mrr_movement", _lab(period=pname, movement=k), amt)
            if e_pay:
                put(P + "period_end_accounts", lab, 1)
                if not s_pay:
                    put(P + "period_new_accounts", lab, 1)

            end_month = (y, mo) if pname == "current_month" else (prev_y, prev_mo)
            for sid, sevs in a.subs.items():
                notices = {}
                for e in sevs:
                    if e["type"] == "subscription.renewal_due":
                        d = e["data"]["due_at"]
                        if d not in notices:  # first (earliest) notice per due_at
                            notices[d] = e["time"]
                ordered = sorted(notices.items(), key=lambda kv: kv[1])
                renew_times = [e["time"] for e in sevs if e["type"] == "subscription.renewed"]
                for i, (due_at, notice) in enumerate(ordered):
                    if _month(due_at) != end_month:
                        continue
                    nxt = ordered[i + 1][1] if i + 1 < len(ordered) else math.inf
                    put(P + "renewals_due", lab, 1)
                    if any(notice <= r < nxt for r in renew_times):
                        put(P + "renewals_renewed", lab, 1)
            for e in evs:
                if e["type"] == "subscription.trial_started" and _month(e["time"]) == end_month:
                    put(P + "trials_started", lab, 1)
                    lo, hi = e["time"], e["data"]["trial_ends_at"] + prm["trial_grace"]
                    if any(k in ("new", "reactivation") and lo <= t <= hi for t, k, _ in mvs):
                        put(P + "trials_converted", lab, 1)

        payments = {}
        for e in evs:
            if e["type"] == "subscription.payment":
                payments.setdefault(e["data"]["payment_id"], []).append(e)
        times = sorted(
            min(e["time"] for e in pe if e["data"]["status"] == "succeeded")
            for pe in payments.values()
            if any(e["data"]["status"] == "succeeded" for e in pe)
            and not any(e["data"]["status"] == "refunded" for e in pe)
        )
        for pe in payments.values():
            fails = [e["time"] for e in pe if e["data"]["status"] == "failed"]
            if not fails:
                continue
            wins = sorted((e for e in pe if e["data"]["status"] == "succeeded" and e["time"] >= min(fails)),
                          key=time_order)
            for w in prm["windows"]:
                if in_window(min(fails), w):
                    put(P + "failed_payments", _lab(window=window_name(w)), 1)
                if wins and in_window(wins[0]["time"], w):
                    d = wins[0]["data"]
                    put(P + "recovered_payments", _lab(window=window_name(w)), 1)
                    if d["currency"] in prm["fx"]:
                        amount = d["amount_minor"] / 10 ** prm["minor"].get(d["currency"], prm["default_minor"])
                        put(P + "recovered_revenue", _lab(window=window_name(w)),
                            amount * prm["fx"][d["currency"]] / prm["fx"][prm["reporting"]])
        if times:
            put(P + "purchasing_accounts", _lab(), 1)
        if len(times) > 1:
            put(P + "repeat_purchasing_accounts", _lab(), 1)
            put(P + "purchase_gaps", _lab(), len(times) - 1)
            put(P + "purchase_gap_seconds_sum", _lab(), sum(b - a for a, b in zip(times, times[1:])))
    return out
