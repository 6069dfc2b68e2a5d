"""The revenue aggregates derived from account states (step stores for current MRR and calendar
months, rolling windows for movements), and their exposition."""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from stream_app.engine.expiry import retained_from_bucket
from stream_app.engine.index import ContributionIndex
from stream_app.engine.windows import RollingCounter, window_label

from .config import (
    COHORT_MOVEMENTS,
    Contribution,
    MOVEMENTS,
    NANO,
    PERIODS,
    PREFIX,
    month_index,
    month_start,
)
from .state import AccountState
from .movements import REASONS, contributions


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

    def next_step(self, name: str) -> float:
        """After a read of cursor ``name``: the time of the earliest step it has not passed (a
        read at that time or later may differ), or inf (conservative: steps removed since they
        were scheduled may still bound it)."""
        cur = self._cursors.get(name)
        return cur[2][0] if cur is not None and cur[2] else math.inf

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
        self._wc = RollingCounter(cfg.windows, cfg.bucket_seconds)  # churn by reason, payments
        self._wa = RollingCounter(cfg.windows, cfg.bucket_seconds)
        self._base = StepStore()
        self._pc = StepStore()
        self._pm: dict[tuple, int] = {}
        self._gauges: dict[tuple, int] = {}
        self._seen: dict[str, set] = {"mrr": set(), "paying": set(), "rep": set(), "unconv": set(),
                                      "pending": set(), "pending_rep": set()}
        self.dropped = 0

    def _apply(self, c: Contribution, k: int) -> int:
        name, key, ts, value = c
        if name in ("mv", "mva", "wc", "wa"):
            store = {"mv": self._mv, "mva": self._mva, "wc": self._wc, "wa": self._wa}[name]
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

    def _evict(self, cutoff_ts: float) -> int:
        return sum(c.evict(cutoff_ts) for c in (self._mv, self._mva, self._wc, self._wa))

    # -- exposition -------------------------------------------------------
    def _valid_until(self, now: float) -> float:
        # window buckets, steps of the current state ahead of now, the next calendar month
        return min(self._mv.next_edge(now), self._base.next_step("now"), self._pc.next_step("now"),
                   month_start(month_index(now) + 1))

    def _collect(self, now: float) -> list[Metric]:
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
        state_gauge("pending", "pending_churn_accounts", "Accounts paying now with a cancellation scheduled "
                    "but not yet effective, by primary plan.", ("plan",))
        state_gauge("pending_rep", "pending_churn_mrr", "MRR now (reporting currency) of the paying "
                    "subscriptions with a cancellation scheduled but not yet effective, by the account's "
                    "primary plan.", ("plan",), _mrr)
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
        wc = self._wc.windows_at(now)
        wa = self._wa.windows_at(now)
        f3 = GaugeMetricFamily(PREFIX + "churn_movements", "Churn movements in the window by reason "
                               "(the cancellation's; involuntary = failed payments).", labels=["reason", "window"])
        f4 = GaugeMetricFamily(PREFIX + "churn_movement_amount", "MRR lost by churn in the window, by reason "
                               "(reporting currency).", labels=["reason", "window"])
        for reason in REASONS:
            for w in cfg.windows:
                f3.add_metric([reason, window_label(w)], wc[w].get(("churn", reason), 0))
                f4.add_metric([reason, window_label(w)], _mrr(wa[w].get(("churn", reason), 0)))
        out += [f3, f4]
        for name, key, doc, conv in (
            ("churn_tenure_seconds_sum", "tenure", "Seconds from each churned account's first payment "
             "to its churn, summed over the churn movements in the window (time to churn = this / "
             "churn movements).", lambda v: v / 1000),
            ("failed_payments", "failed", "Payment ids whose earliest failed attempt is in the window.", int),
            ("recovered_payments", "recovered", "Failed payments that later succeeded, by the time of "
             "the success.", int),
            ("recovered_revenue", "recovered", "Amount of the recovered payments in the reporting currency "
             "(major units).", lambda v: v / NANO),
        ):
            store = wa if name in ("churn_tenure_seconds_sum", "recovered_revenue") else wc
            fam = GaugeMetricFamily(PREFIX + name, doc, labels=["window"])
            for w in cfg.windows:
                fam.add_metric([window_label(w)], conv(store[w].get((key,), 0)))
            out.append(fam)

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

        first = retained_from_bucket(now, cfg.horizon, cfg.bucket_seconds)  # retained-entity gauges
        life: dict[str, int] = {}
        tracked = 0
        for (name, key), v in self._gauges.items():
            if key[-1] is not None and key[-1] < first:
                continue  # the account's retention passed: gone, or deleted any time now
            if name == "life":
                life[key[0]] = life.get(key[0], 0) + v
            elif name == "tracked":
                tracked += v
        for name, key, doc, conv in (
            ("purchasing_accounts", "purchasing", "Accounts retained with >= 1 purchase (succeeded, "
             "not refunded payment).", int),
            ("repeat_purchasing_accounts", "repeat", "Accounts retained with >= 2 purchases.", int),
            ("purchase_gaps", "gaps", "Gaps between consecutive purchases of an account, summed over accounts.", int),
            ("purchase_gap_seconds_sum", "gap_ms", "Total seconds between consecutive purchases "
             "(mean time between purchases = this / purchase_gaps).", lambda v: v / 1000),
        ):
            out.append(GaugeMetricFamily(PREFIX + name, doc, value=conv(life.get(key, 0))))
        out.append(GaugeMetricFamily(PREFIX + "accounts_tracked", "Accounts retained by this worker.", value=tracked))
        dropped = CounterMetricFamily(PREFIX + "window_dropped_contributions", "Window contributions "
                                      "refused because their bucket was already evicted (too late).")
        dropped.add_metric([], self.dropped)
        out.append(dropped)
        return out
