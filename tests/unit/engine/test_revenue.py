"""Revenue metrics: hand-worked examples, wall-clock effects, ordering/duplicates/lateness, bounded
state, and property tests against the independent batch reference
(tests/reference/revenue_reference.py)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.engine.labels import LabelGuard, LabelRule
from stream_app.engine.revenue import (
    AccountState,
    RevenueConfig,
    RevenueFamily,
    StepStore,
    account_signal,
    apply,
    contributions,
    month_index,
    month_start,
    retention_until,
)
from tests.reference import revenue_reference as ref
from tests.support.engine import EngineRunner
from tests.support.events import Ev, arrival_orders
from tests.support.references import plain, revenue_params
from tests.support.samples import assert_same, exposition, lab, samples, state_derived

DAY = 86400
H = 3600
P = "stream_app_revenue_"
HUGE = 10**12


def d(month, day, hour=0, minute=0, year=2024):
    return datetime(year, month, day, hour, minute, tzinfo=timezone.utc).timestamp()


class KeptRevenue(RevenueFamily):
    """Revenue with every account kept for ever: compaction compared with the reference on its own
    (the reference has no notion of deleted accounts; expiry has its own test)."""

    def retention_until(self, state):
        return None


def engine(cfg=None, family=RevenueFamily):
    """The worker's engine step over accounts in a dict (watermark, eviction, compaction, expiry:
    the real ones)."""
    return EngineRunner(family(cfg or RevenueConfig()))


def unbounded():
    """A grace beyond any log: keep_seconds (horizon + one bucket) never compacts, and nothing is
    too late, evicted or expired. What compaction and lateness are compared against."""
    return RevenueConfig(grace_seconds=HUGE)


def terms(eid, ts, acc, sub, plan, amount, currency="USD", interval="month", qty=1, changed=False):
    return Ev(eid, "subscription.plan_changed" if changed else "subscription.started", float(ts),
              dict(account_id=acc, subscription_id=sub, plan=plan, amount_minor=amount, currency=currency,
                   interval=interval, quantity=qty))


def renewed(eid, ts, acc, sub, amount, currency="USD", interval="month"):
    return Ev(eid, "subscription.renewed", float(ts), dict(account_id=acc, subscription_id=sub,
                                                            amount_minor=amount, currency=currency, interval=interval))


def due(eid, ts, acc, sub, due_at):
    return Ev(eid, "subscription.renewal_due", float(ts), dict(account_id=acc, subscription_id=sub, due_at=due_at))


def cancel(eid, ts, acc, sub, effective_at=None, reason="voluntary"):
    return Ev(eid, "subscription.cancelled", float(ts), dict(account_id=acc, subscription_id=sub, reason=reason,
                                                              effective_at=effective_at))


def ended(eid, ts, acc, sub):
    return Ev(eid, "subscription.ended", float(ts), dict(account_id=acc, subscription_id=sub))


def trial(eid, ts, acc, ends_at, plan="starter"):
    return Ev(eid, "subscription.trial_started", float(ts), dict(account_id=acc, plan=plan, trial_ends_at=ends_at))


def pay(eid, ts, acc, pid, amount=100, status="succeeded", currency="USD"):
    return Ev(eid, "subscription.payment", float(ts), dict(account_id=acc, payment_id=pid, amount_minor=amount,
                                                            currency=currency, status=status))


# ----------------------------------------------------------------------------- hand-worked

NOW = d(4, 10, 12, 30)  # current month = April 2024, previous = March 2024


def scenario():
    """Seven accounts; expected values are worked out in the tests below. Default config: USD
    reporting, EUR 1.08, JPY 0.0064, KWD 3.26 USD; JPY has 0 decimals, KWD 3; XXX has no rate.
    Delivered in event-time order, as a live feed brings them: the log spans three months, longer
    than the horizon (30 d + 1 d grace), so D's January start arriving after B's April events
    would be too late."""
    return sorted([
        # A: USD monthly, growth 99.00 x 2 seats = 198.00; upgraded Apr 5 to business 299.00 x 2 = 598.00
        terms("a1", d(3, 2), "A", "a", "growth", 9900, qty=2),
        pay("a2", d(3, 2), "A", "pA1", 19800),
        due("a3", d(3, 26), "A", "a", d(4, 2)),
        pay("a4", d(4, 2), "A", "pA2", 19800),
        renewed("a5", d(4, 2), "A", "a", 9900),  # same price: no MRR change
        terms("a6", d(4, 5), "A", "a", "business", 29900, qty=2, changed=True),
        # B: EUR yearly 1200.00 -> 100.00 EUR/month = 108.00 USD; cancelled immediately Apr 8
        terms("b1", d(3, 10), "B", "b", "business", 120000, currency="EUR", interval="year"),
        pay("b2", d(3, 10), "B", "pB1", 120000, currency="EUR"),
        pay("b3", d(4, 8), "B", "pB1", 120000, status="refunded", currency="EUR"),
        cancel("b4", d(4, 8), "B", "b"),
        # C: JPY monthly 3000 (0 decimals) = 19.20 USD; down to 1500 = 9.60 USD on Mar 20;
        # cancelled Apr 5 effective Apr 20 (in the future at NOW)
        terms("c1", d(2, 15), "C", "c", "starter", 3000, currency="JPY"),
        pay("c2", d(3, 1), "C", "pC1", 3000, status="failed", currency="JPY"),
        pay("c3", d(3, 2), "C", "pC2", 3000, currency="JPY"),
        terms("c4", d(3, 20), "C", "c", "starter", 1500, currency="JPY", changed=True),
        due("c5", d(4, 1), "C", "c", d(4, 12)),
        cancel("c6", d(4, 5), "C", "c", effective_at=d(4, 20)),
        # D: KWD monthly 10.000 (3 decimals) = 32.60 USD; ended Mar 15; back with a new sub Apr 2
        terms("d1", d(1, 10), "D", "d", "starter", 10000, currency="KWD"),
        due("d2", d(3, 3), "D", "d", d(3, 10)),
        renewed("d3", d(3, 10), "D", "d", 10000, currency="KWD"),
        ended("d4", d(3, 15), "D", "d"),
        terms("d5", d(4, 2), "D", "d2", "starter", 10000, currency="KWD"),
        # E: a currency without FX rate: paying, native MRR 5.00 XXX, reporting value 0
        terms("e1", d(3, 5), "E", "e", "growth", 500, currency="XXX"),
        # F: trial Mar 25 -> Apr 8, converts Apr 7 on starter 29.00 USD
        trial("f1", d(3, 25), "F", d(4, 8)),
        terms("f2", d(4, 7), "F", "f", "starter", 2900),
        # G: trial Apr 1 -> Apr 15, not converted (yet)
        trial("g1", d(4, 1), "G", d(4, 15)),
    ], key=lambda e: e.ts)


def test_current_mrr_by_plan_and_currency_with_minor_units_and_fx():
    s = samples(engine().feed(scenario()).index, NOW)
    # native, major units: A 2 x 299.00; C 1500 JPY; D 10.000 KWD; E 5.00 XXX; F 29.00; B cancelled
    assert s[(P + "mrr", lab(plan="business", currency="USD"))] == pytest.approx(598.0)
    assert s[(P + "mrr", lab(plan="starter", currency="JPY"))] == pytest.approx(1500.0)
    assert s[(P + "mrr", lab(plan="starter", currency="KWD"))] == pytest.approx(10.0)
    assert s[(P + "mrr", lab(plan="growth", currency="XXX"))] == pytest.approx(5.0)
    assert s[(P + "mrr", lab(plan="starter", currency="USD"))] == pytest.approx(29.0)
    assert (P + "mrr", lab(plan="business", currency="EUR")) not in s
    # reporting (USD): starter = C 1500 x 0.0064 + D 10 x 3.26 + F 29 = 9.6 + 32.6 + 29 = 71.2
    assert s[(P + "mrr_reporting", lab(plan="starter"))] == pytest.approx(71.2)
    assert s[(P + "mrr_reporting", lab(plan="business"))] == pytest.approx(598.0)
    assert (P + "mrr_reporting", lab(plan="growth")) not in s  # E cannot be converted
    assert s[(P + "paying_accounts", lab(plan="starter"))] == 3  # C, D, F
    assert s[(P + "paying_accounts", lab(plan="business"))] == 1  # A
    assert s[(P + "paying_accounts", lab(plan="growth"))] == 1  # E pays, in an unconverted currency
    assert s[(P + "unconverted_subscriptions", lab(currency="XXX"))] == 1
    assert s[(P + "reporting_currency_info", lab(currency="USD"))] == 1
    assert s[(P + "accounts_tracked", lab())] == 7


def test_movements_in_trailing_windows():
    s = samples(engine().feed(scenario()).index, NOW)
    mv = lambda m, w: s.get((P + "mrr_movements", lab(movement=m, window=w)), 0)  # noqa: E731
    amt = lambda m, w: s.get((P + "mrr_movement_amount", lab(movement=m, window=w)), 0)  # noqa: E731
    # 1h buckets; 7d holds buckets starting Apr 3 13:00 .. Apr 10 12:00; 30d from Mar 11 13:00
    # 7d: F new Apr 7 (29), A expansion Apr 5 (598 - 198 = 400), B churn Apr 8 (108)
    assert (mv("new", "7d"), amt("new", "7d")) == (1, pytest.approx(29.0))
    assert (mv("expansion", "7d"), amt("expansion", "7d")) == (1, pytest.approx(400.0))
    assert (mv("churn", "7d"), amt("churn", "7d")) == (1, pytest.approx(108.0))
    assert mv("contraction", "7d") == mv("reactivation", "7d") == 0  # D came back Apr 2: too early
    # 30d adds: C contraction Mar 20 (19.2 - 9.6), D churn Mar 15 (32.6), D reactivation Apr 2 (32.6)
    assert (mv("contraction", "30d"), amt("contraction", "30d")) == (1, pytest.approx(9.6))
    assert (mv("churn", "30d"), amt("churn", "30d")) == (2, pytest.approx(108.0 + 32.6))
    assert (mv("reactivation", "30d"), amt("reactivation", "30d")) == (1, pytest.approx(32.6))
    assert mv("new", "30d") == 1  # A (Mar 2), E (Mar 5), B (Mar 10) are older than the window
    # C's scheduled churn (Apr 20) is not counted before it happens
    fams = {f.name: f for f in engine().feed(scenario()).index.collect(NOW)}
    zero_series = [x for x in fams[P + "mrr_movements"].samples if x.value == 0]
    assert len(fams[P + "mrr_movements"].samples) == 10 and zero_series  # all movements x windows


def test_calendar_month_periods():
    s = samples(engine().feed(scenario()).index, NOW)

    def v(name, period, **kw):
        return s.get((P + name, lab(period=period, **kw)), 0)

    # March: paying at Mar 1 00:00 = C (19.2), D (32.6); end = A, B, C, E; D churned Mar 15
    assert v("period_start_accounts", "previous_month") == 2
    assert v("period_start_mrr", "previous_month") == pytest.approx(51.8)
    assert v("period_end_accounts", "previous_month") == 4
    assert v("period_new_accounts", "previous_month") == 3  # A, B, E
    assert v("period_retained_accounts", "previous_month") == 1  # C
    assert v("period_churned_accounts", "previous_month") == 1  # D
    assert v("period_cohort_mrr_movement", "previous_month", movement="contraction") == pytest.approx(9.6)
    assert v("period_cohort_mrr_movement", "previous_month", movement="churn") == pytest.approx(32.6)
    # NRR(March) = (51.8 + 0 - 9.6 - 32.6) / 51.8
    # April to NOW: start = A 198, B 108, C 9.6, E 0; end = A, C, D, E, F (B churned Apr 8)
    assert v("period_start_accounts", "current_month") == 4
    assert v("period_start_mrr", "current_month") == pytest.approx(315.6)
    assert v("period_end_accounts", "current_month") == 5
    assert v("period_new_accounts", "current_month") == 2  # D (reactivated), F
    assert v("period_retained_accounts", "current_month") == 3  # retention = 3/4 = (5 - 2)/4
    assert v("period_churned_accounts", "current_month") == 1  # churn rate 1/4
    assert v("period_cohort_mrr_movement", "current_month", movement="expansion") == pytest.approx(400.0)
    assert v("period_cohort_mrr_movement", "current_month", movement="churn") == pytest.approx(108.0)
    assert v("period_cohort_mrr_movement", "current_month", movement="reactivation") == 0  # D not in cohort
    # renewals: March D due Mar 10 renewed; April: A due Apr 2 renewed, C due Apr 12 not renewed
    assert (v("renewals_due", "previous_month"), v("renewals_renewed", "previous_month")) == (1, 1)
    assert (v("renewals_due", "current_month"), v("renewals_renewed", "current_month")) == (2, 1)
    # trials: F (March) converted Apr 7 <= Apr 8 + 3 d grace; G (April) not
    assert (v("trials_started", "previous_month"), v("trials_converted", "previous_month")) == (1, 1)
    assert (v("trials_started", "current_month"), v("trials_converted", "current_month")) == (1, 0)


def test_lifetime_purchases_exclude_failed_and_refunded():
    s = samples(engine().feed(scenario()).index, NOW)
    # A: 2 purchases 31 days apart; B: its only payment refunded; C: one failed, one succeeded
    assert s[(P + "purchasing_accounts", lab())] == 2
    assert s[(P + "repeat_purchasing_accounts", lab())] == 1
    assert s[(P + "purchase_gaps", lab())] == 1
    assert s[(P + "purchase_gap_seconds_sum", lab())] == 31 * DAY


def test_scheduled_cancellation_takes_effect_when_its_time_passes():
    idx = engine().feed(scenario()).index
    jpy = (P + "mrr", lab(plan="starter", currency="JPY"))
    churn7 = (P + "mrr_movements", lab(movement="churn", window="7d"))
    before = samples(idx, d(4, 20) - 1)
    assert before[jpy] == 1500 and churn7 not in before  # B's churn (Apr 8) left the 7d window Apr 15
    at = samples(idx, d(4, 20))  # effective_at reached: C is gone now
    assert jpy not in at
    assert at[(P + "paying_accounts", lab(plan="starter"))] == 2
    assert at[churn7] == 1  # C's churn, in the bucket of its effective time
    assert at[(P + "mrr_movement_amount", lab(movement="churn", window="7d"))] == pytest.approx(9.6)
    assert at[(P + "period_churned_accounts", lab(period="current_month"))] == 2  # B and C
    # reading back in time works (cursors rebuild)
    assert samples(idx, NOW) == samples(engine().feed(scenario()).index, NOW)


def test_month_rollover_moves_current_to_previous():
    idx = engine().feed(scenario()).index
    s = samples(idx, d(5, 3))
    # May: start = A, D, E, F (B churned Apr 8, C Apr 20); April is now the previous month
    assert s[(P + "period_start_accounts", lab(period="current_month"))] == 4
    assert s[(P + "period_start_accounts", lab(period="previous_month"))] == 4
    assert s[(P + "period_churned_accounts", lab(period="previous_month"))] == 2
    assert s[(P + "period_end_accounts", lab(period="previous_month"))] == 4


def test_downgrade_to_zero_price_is_churn_and_back_is_reactivation():
    cfg = RevenueConfig()
    e = engine(cfg).feed([
        terms("1", d(4, 1), "Z", "z", "growth", 5000),
        terms("2", d(4, 3), "Z", "z", "free", 0, changed=True),
        terms("3", d(4, 5), "Z", "z", "growth", 5000, changed=True),
    ])
    s = samples(e.index, d(4, 6))
    for m in ("new", "churn", "reactivation"):
        assert s[(P + "mrr_movements", lab(movement=m, window="7d"))] == 1
        assert s[(P + "mrr_movement_amount", lab(movement=m, window="7d"))] == pytest.approx(50.0)


def test_two_subscriptions_churn_only_when_the_last_ends():
    cfg = RevenueConfig()
    e = engine(cfg).feed([
        terms("1", d(4, 1), "Y", "y1", "growth", 5000),
        terms("2", d(4, 2), "Y", "y2", "addon", 1000),
        ended("3", d(4, 3), "Y", "y1"),
        cancel("4", d(4, 4), "Y", "y2", effective_at=d(4, 3, 12)),  # backdated: effective at once
    ])
    s = samples(e.index, d(4, 5))
    assert s[(P + "mrr_movements", lab(movement="expansion", window="7d"))] == 1  # +10 on Apr 2
    assert s[(P + "mrr_movement_amount", lab(movement="contraction", window="7d"))] == pytest.approx(50.0)
    assert s[(P + "mrr_movement_amount", lab(movement="churn", window="7d"))] == pytest.approx(10.0)


# ----------------------------------------------------------------------------- churn that is coming and why (issue #13.5)


def test_churn_by_reason_and_time_to_churn_in_the_scenario():
    s = samples(engine().feed(scenario()).index, NOW)
    c = lambda name, reason, w: s.get((P + name, lab(reason=reason, window=w)), 0)  # noqa: E731
    # B: cancelled immediately Apr 8, reason voluntary (the contract's default), MRR 108.00
    assert (c("churn_movements", "voluntary", "7d"), c("churn_movement_amount", "voluntary", "7d")) == (
        1, pytest.approx(108.0))
    # D: ended Mar 15 without a cancellation -> other, 32.60; in the 30d window only
    assert c("churn_movements", "other", "7d") == 0
    assert (c("churn_movements", "other", "30d"), c("churn_movement_amount", "other", "30d")) == (
        1, pytest.approx(32.6))
    assert c("churn_movements", "involuntary", "30d") == 0
    # time to churn: B paid from Mar 10 to Apr 8 = 29 d; D from Jan 10 to Mar 15 = 31 + 29 + 5 = 65 d
    # (D's January start is folded into its snapshot by then: its first payment comes from there)
    assert s[(P + "churn_tenure_seconds_sum", lab(window="7d"))] == 29 * DAY
    assert s[(P + "churn_tenure_seconds_sum", lab(window="30d"))] == (29 + 65) * DAY
    # C's scheduled cancellation: pending now (9.60 USD from 1500 JPY), not yet a churn
    assert s[(P + "pending_churn_accounts", lab(plan="starter"))] == 1
    assert s[(P + "pending_churn_mrr", lab(plan="starter"))] == pytest.approx(9.6)
    assert sum(v for k, v in s.items() if k[0] == P + "pending_churn_accounts") == 1


def test_churn_reason_of_several_subscriptions_ended_at_once_and_of_a_free_plan():
    e = engine().feed([
        # J: two subscriptions end at the same instant, one voluntary, one involuntary
        terms("j1", d(4, 1), "J", "j1", "growth", 5000),
        terms("j2", d(4, 1), "J", "j2", "addon", 1000),
        cancel("j3", d(4, 2), "J", "j1", effective_at=d(4, 6)),
        cancel("j4", d(4, 6), "J", "j2", reason="involuntary"),
        # K: an involuntary cancellation and an ended event at the same time: the cancellation says why
        terms("k1", d(4, 1), "K", "k", "growth", 2000),
        ended("k2", d(4, 7), "K", "k"),
        cancel("k3", d(4, 7), "K", "k", reason="involuntary"),
        # L: moves to a free price: churn, reason other
        terms("l1", d(4, 1), "L", "l", "growth", 3000),
        terms("l2", d(4, 7), "L", "l", "free", 0, changed=True),
    ])
    s = samples(e.index, d(4, 8))
    c = lambda name, reason: s.get((P + name, lab(reason=reason, window="7d")), 0)  # noqa: E731
    assert c("churn_movements", "involuntary") == 2  # J (involuntary wins), K
    assert c("churn_movement_amount", "involuntary") == pytest.approx(60.0 + 20.0)
    assert (c("churn_movements", "other"), c("churn_movement_amount", "other")) == (1, pytest.approx(30.0))
    assert c("churn_movements", "voluntary") == 0
    assert s[(P + "mrr_movements", lab(movement="churn", window="7d"))] == 3  # the reasons add up
    # J paid 5 d, K 6 d, L 6 d
    assert s[(P + "churn_tenure_seconds_sum", lab(window="7d"))] == (5 + 6 + 6) * DAY


def test_pending_churn_starts_with_the_cancellation_and_ends_when_it_takes_effect():
    idx = engine().feed([
        terms("m1", d(4, 1), "M", "m1", "business", 30000),
        terms("m2", d(4, 1), "M", "m2", "starter", 2000),
        cancel("m3", d(4, 9), "M", "m2", effective_at=d(4, 30)),
    ]).index
    pending = lambda s: (s.get((P + "pending_churn_accounts", lab(plan="business")), 0),  # noqa: E731
                         s.get((P + "pending_churn_mrr", lab(plan="business")), 0))
    assert pending(samples(idx, d(4, 9) - 1)) == (0, 0)  # not cancelled yet
    # under the account's primary plan (business), only the cancelled subscription's MRR
    assert pending(samples(idx, d(4, 9))) == (1, pytest.approx(20.0))
    assert pending(samples(idx, d(4, 30) - 1)) == (1, pytest.approx(20.0))
    after = samples(idx, d(4, 30))  # effective: a contraction, nothing pending
    assert pending(after) == (0, 0)
    assert after[(P + "mrr_movement_amount", lab(movement="contraction", window="7d"))] == pytest.approx(20.0)


def test_failed_and_recovered_payments():
    idx = engine().feed([
        # H: one payment id fails twice (dunning) and succeeds the next day: 50.00 USD recovered
        pay("h1", d(4, 9, 10), "H", "pH1", 5000, status="failed"),
        pay("h2", d(4, 9, 12), "H", "pH1", 5000, status="failed"),
        pay("h3", d(4, 10, 9), "H", "pH1", 5000),
        # I: 100.00 EUR failed Mar 25, recovered Apr 1 (108.00 USD): 30d window only
        pay("i1", d(3, 25), "I", "pI1", 10000, status="failed", currency="EUR"),
        pay("i2", d(4, 1), "I", "pI1", 10000, currency="EUR"),
        # I: a success before the failure is not a recovery
        pay("i3", d(4, 8), "I", "pI3", 700),
        pay("i4", d(4, 9), "I", "pI3", 700, status="failed"),
        # I: a failed payment of another id, its retry never succeeded
        pay("i5", d(4, 2), "I", "pI5", 900, status="failed"),
    ]).index
    s = samples(idx, NOW)
    w = lambda name, win: s.get((P + name, lab(window=win)), 0)  # noqa: E731
    assert w("failed_payments", "7d") == 2  # pH1 Apr 9, pI3 Apr 9 (pI5 Apr 2 is before Apr 3 13:00)
    assert w("failed_payments", "30d") == 4
    assert (w("recovered_payments", "7d"), w("recovered_revenue", "7d")) == (1, pytest.approx(50.0))
    assert (w("recovered_payments", "30d"), w("recovered_revenue", "30d")) == (2, pytest.approx(158.0))


# ----------------------------------------------------------------------------- account signal, retention


def test_account_signal_for_customer_health():
    e = engine().feed(scenario())
    sig = {k: account_signal(st_, NOW) for k, st_ in e.entities.items()}
    assert sig["A"]["mrr"] == pytest.approx(598.0) and sig["A"]["paying"] and not sig["A"]["churned"]
    assert sig["A"]["plan"] == "business" and not sig["A"]["renewal_due_soon"]  # renewed Apr 2
    assert sig["B"]["churned"] and sig["B"]["mrr"] == 0
    c = sig["C"]
    assert c["mrr"] == pytest.approx(9.6) and c["contracted_recently"]  # Mar 20 within 30 d
    assert c["renewal_due_soon"] and c["cancel_pending"]  # due Apr 12, ends Apr 20
    assert not sig["D"]["churned"] and sig["D"]["mrr"] == pytest.approx(32.6)  # reactivated
    assert sig["G"]["trialing"] and not sig["G"]["paying"]
    assert not sig["F"]["trialing"]  # converted
    later = account_signal(e.entities["C"], d(4, 21))
    assert later["churned"] and not later["renewal_due_soon"] and not later["cancel_pending"]
    assert account_signal(e.entities["C"], d(5, 1))["contracted_recently"] is False  # Mar 20 + 30 d passed
    only_payment, _ = apply(None, pay("x", NOW, "Q", "p"))
    assert account_signal(only_payment, NOW) is None


def test_retention_until():
    cfg = RevenueConfig()
    e = engine(cfg).feed(scenario())
    assert retention_until(e.entities["A"], cfg) is None  # paid: kept (compacted) for reactivations
    assert retention_until(e.entities["B"], cfg) is None
    g = retention_until(e.entities["G"], cfg)  # trial only: until its trial end + keep - horizon
    assert g == d(4, 15) + cfg.keep_seconds - cfg.horizon


def test_accounts_that_never_paid_are_deleted_keep_seconds_after_their_trial_end():
    # keep_seconds = 64 d (> horizon 31 d + 1 h): G's trial ends Apr 15, so G goes once the
    # watermark is past Jun 18 (Apr 15 + 64 d); A paid once and is kept for a reactivation
    e = engine().feed([trial("g1", d(4, 1), "G", d(4, 15)), terms("a1", d(4, 1), "A", "a", "growth", 100),
                       ended("a2", d(4, 2), "A", "a")])
    e.feed([terms("z1", d(6, 17, 23), "Z", "z", "growth", 100)])
    assert set(e.entities) == {"A", "G", "Z"}
    e.feed([terms("z2", d(6, 18, 1), "Z", "z", "growth", 200, changed=True)])
    assert set(e.entities) == {"A", "Z"} and e.engine.evicted_entities == 1
    assert samples(e.index, d(6, 18, 2))[(P + "accounts_tracked", lab())] == 2


def test_accounts_tracked_with_account_retention_forgets_accounts_not_paying():
    # R = 90 d. A paid Apr 1 and ended Apr 2: its life ends Jul 1 (Apr 2 + 90 d). Q only purchased
    # (Apr 1): its life ends Jun 30. Z still pays: kept. A read at now counts an account while the
    # cutoff now - horizon (31 d + 1 h) is not past its life's end, held or deleted alike.
    cfg = RevenueConfig(account_retention_seconds=90 * DAY)
    e = engine(cfg).feed([terms("a1", d(4, 1), "A", "a", "growth", 100), ended("a2", d(4, 2), "A", "a"),
                          pay("q1", d(4, 1), "Q", "p"), terms("z1", d(4, 1), "Z", "z", "growth", 100)])
    e.feed([renewed("z2", d(7, 20), "Z", "z", 100)])  # watermark Jul 20: cutoff ~Jun 19
    assert set(e.entities) == {"A", "Q", "Z"}
    s = samples(e.index, d(7, 20))
    assert s[(P + "accounts_tracked", lab())] == 3 and s[(P + "purchasing_accounts", lab())] == 1
    s = samples(e.index, d(8, 10))  # cutoff ~Jul 9: A and Q are gone although still held
    assert s[(P + "accounts_tracked", lab())] == 1 and s.get((P + "purchasing_accounts", lab()), 0) == 0
    e.feed([renewed("z3", d(8, 10), "Z", "z", 100)])
    assert set(e.entities) == {"Z"}
    assert samples(e.index, d(8, 10))[(P + "accounts_tracked", lab())] == 1


@pytest.mark.parametrize("retention", [0, 90 * DAY])
def test_a_return_after_the_account_retention_is_new(retention):
    # B ended Apr 2 (life ends Jul 1 with R = 90 d) and returns Jul 15; C ended May 1 (life ends
    # Jul 30) and returns Jul 16. Without retention both are reactivations; with it B is new.
    cfg = RevenueConfig(account_retention_seconds=retention)
    e = engine(cfg).feed([terms("b1", d(4, 1), "B", "b", "growth", 100), ended("b2", d(4, 2), "B", "b"),
                          terms("c1", d(4, 1), "C", "c", "growth", 100), ended("c2", d(5, 1), "C", "c"),
                          terms("b3", d(7, 15), "B", "b2", "growth", 100),
                          terms("c3", d(7, 16), "C", "c2", "growth", 100)])
    s = samples(e.index, d(7, 20))
    mv = lambda m: s.get((P + "mrr_movements", lab(movement=m, window="30d")), 0)  # noqa: E731
    assert (mv("new"), mv("reactivation")) == ((1, 1) if retention else (0, 2))
    assert s[(P + "accounts_tracked", lab())] == 2


# ----------------------------------------------------------------------------- ordering, duplicates, lateness


@pytest.mark.parametrize("compacting", [False, True])
def test_duplicates_and_any_order_give_the_same_state_and_index(compacting):
    cfg = RevenueConfig if compacting else unbounded
    evs = scenario()  # D's first event (Jan 10) is older than keep_seconds before D's newest (Apr 2)
    base = engine(cfg()).feed(evs)
    if compacting:
        assert base.entities["D"].compacted is not None and "d1" not in base.entities["D"].facts
    expected = samples(base.index, NOW)
    for shuffled in arrival_orders(evs, seed=5, runs=15, redelivered=5):
        e = engine(cfg()).feed(shuffled)
        if not compacting:  # a folded event's id is forgotten: its redelivery is folded again (idempotent)
            assert e.duplicates == 5
        assert e.stored() == base.stored()
        if compacting:
            # events older than the compaction point are older than the horizon too: arriving after
            # newer ones they are too late, refused and counted as they arrive
            assert_same(state_derived(samples(e.index, NOW)), state_derived(expected))
        else:
            assert_same(samples(e.index, NOW), expected)


def test_apply_is_pure_and_rejects_other_families():
    s0, ok = apply(None, terms("1", d(4, 1), "A", "a", "growth", 100))
    before = json.dumps(s0.to_dict(), sort_keys=True)
    s1, ok1 = apply(s0, terms("1", d(4, 1), "A", "a", "growth", 100))
    assert ok and not ok1 and s1 is s0
    apply(s0, ended("2", d(4, 2), "A", "a"))
    assert json.dumps(s0.to_dict(), sort_keys=True) == before
    with pytest.raises(ValueError):
        apply(s0, Ev("x", "ticket.created", d(4, 1), {"account_id": "A"}))
    with pytest.raises(ValueError):
        AccountState.from_dict({**s0.to_dict(), "v": 9})


def test_late_event_within_grace_and_too_late_event():
    cfg = RevenueConfig()  # horizon = 30 d + 1 d grace, 1 h buckets
    e = engine(cfg).feed([terms("n", d(4, 10), "N", "n", "growth", 1000)])
    e.feed([terms("l", d(4, 2), "L", "l", "growth", 2000)])  # 8 days late: inside the horizon
    assert e.too_late == 0
    s = samples(e.index, d(4, 10))
    assert s[(P + "mrr_movements", lab(movement="new", window="30d"))] == 2
    assert s[(P + "mrr_movements", lab(movement="new", window="7d"))] == 1
    # cutoff = bucket_start(Apr 10 - 31 d) = Mar 10 00:00; an event of Mar 1 is too late
    e.feed([terms("o", d(3, 1), "O", "o", "growth", 3000)])
    assert e.too_late == 1 and e.index.dropped == 2  # its `new` movement: count and amount
    s = samples(e.index, d(4, 10))
    assert s[(P + "window_dropped_contributions_total", lab())] == 2
    # ...but the state-derived values are exact: O pays now and was paying at April's start
    assert s[(P + "mrr", lab(plan="growth", currency="USD"))] == pytest.approx(60.0)
    assert s[(P + "period_start_accounts", lab(period="current_month"))] == 1
    assert s[(P + "period_new_accounts", lab(period="previous_month"))] == 1


def test_rebuild_from_states_equals_incremental_index():
    cfg = RevenueConfig()
    e = engine(cfg).feed(scenario())
    fresh = e.rebuilt()
    assert fresh.tracker.watermark() == d(4, 8)  # seeded with the newest event time of the states
    for now in (NOW, d(4, 20), d(5, 2)):
        assert samples(fresh.index, now) == samples(e.index, now)
    # retracting every account empties every store
    for st_ in e.entities.values():
        e.index.retract(contributions(st_, cfg))
    left = {k: v for k, v in samples(e.index, NOW).items() if not k[0].endswith("_info")}
    assert left == {}


def test_state_round_trip_and_labels():
    guard = LabelGuard.with_overrides(currency=LabelRule(allow=frozenset({"USD"})), plan=LabelRule(cap=1))
    cfg = RevenueConfig(labels=guard)
    e = engine(cfg).feed(scenario())
    for s in e.entities.values():
        assert AccountState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    keys = samples(e.index, NOW)
    currencies = {dict(k[1])["currency"] for k in keys if k[0] == P + "mrr"}
    plans = {dict(k[1])["plan"] for k in keys if k[0] == P + "paying_accounts"}
    assert currencies == {"USD", "other"} and len(plans - {"other"}) == 1
    with pytest.raises(ValueError):
        RevenueConfig(labels=LabelGuard({"plan": LabelRule(cap=3)}))
    with pytest.raises(ValueError):
        RevenueConfig(reporting_currency="CHF", fx_rates={"USD": 1.0, "EUR": 1.1})


def test_reporting_currency_is_rebased():
    cfg = RevenueConfig(reporting_currency="EUR")
    s = samples(engine(cfg).feed([terms("1", d(4, 1), "A", "a", "p", 10800)]).index, d(4, 2))
    assert s[(P + "mrr_reporting", lab(plan="p"))] == pytest.approx(100.0)  # 108 USD / 1.08
    assert s[(P + "reporting_currency_info", lab(currency="EUR"))] == 1


def test_exposition_renders():
    idx = engine().feed(scenario()).index
    text = exposition(idx, NOW)
    assert 'stream_app_revenue_period_start_accounts{period="current_month"} 4.0' in text
    assert 'stream_app_revenue_mrr_movements{movement="reactivation",window="7d"} 0.0' in text
    assert "stream_app_revenue_window_dropped_contributions_total 0.0" in text


def test_step_store_reads_forward_backward_and_retracts_exactly():
    s = StepStore()
    s.add("k", 10.0, 3)
    s.add("k", 20.0, 4)
    assert dict(s.read("x", 15)) == {"k": 3}
    s.add("k", 12.0, 1)  # before the cursor: applied at once
    s.add("k", 30.0, 5)  # after: pending
    assert dict(s.read("x", 25)) == {"k": 8}
    assert dict(s.read("x", 11)) == {"k": 3}  # backwards: rebuilt
    s.add("k", 30.0, -5)
    assert dict(s.read("x", 100)) == {"k": 8}
    for t, v in ((10.0, 3), (20.0, 4), (12.0, 1)):
        s.add("k", t, -v)
    assert dict(s.read("x", 100)) == {} and len(s) == 0


def test_month_helpers():
    assert month_start(month_index(d(2, 29, 23, 59))) == d(2, 1)
    assert month_index(d(1, 1)) - month_index(d(12, 31, 23, 59, year=2023)) == 1


# ----------------------------------------------------------------------------- bounded state over years


def years_of_renewals(acc="R", years=3):
    """Monthly subscription renewed every 30 days for years, with payments, dues and an upgrade."""
    evs = [terms(f"{acc}s", d(1, 1), acc, "r", "growth", 5000), pay(f"{acc}p0", d(1, 1), acc, f"{acc}P0", 5000)]
    t = d(1, 1)
    for i in range(1, int(years * 12.2)):
        t += 30 * DAY
        evs.append(due(f"{acc}d{i}", t - 7 * DAY, acc, "r", t))
        evs.append(pay(f"{acc}p{i}", t, acc, f"{acc}P{i}", 5000))
        evs.append(renewed(f"{acc}r{i}", t + 60, acc, "r", 5000))
        if i == 20:
            evs.append(terms(f"{acc}u", t + 3600, acc, "r", "business", 9000, changed=True))
    return evs, t


def test_state_stays_bounded_and_compaction_changes_no_metric():
    cfg = RevenueConfig()
    evs, end = years_of_renewals()
    evs += [terms("x1", end - 40 * DAY, "X", "x", "growth", 1000), ended("x2", end - 3 * DAY, "X", "x")]
    evs.sort(key=lambda e: e.ts)  # as a live feed brings them (x1 after R's newest would be too late)
    compacted = engine(cfg).feed(evs)
    full = engine(unbounded()).feed(evs)
    st_ = compacted.entities["R"]
    assert len(st_.facts) <= 3 * (cfg.keep_seconds // (30 * DAY) + 2)  # ~ 2 months of facts
    assert len(json.dumps(st_.to_dict())) < 4000
    assert len(full.entities["R"].facts) == len([e for e in evs if e.subject == "R"])
    for now in (end + 1, end + 10 * DAY, end + 45 * DAY):
        assert_same(samples(compacted.index, now), samples(full.index, now))
    # and in any arrival order (late events older than the compaction point are folded)
    rnd = random.Random(3)
    shuffled = list(evs)
    rnd.shuffle(shuffled)
    other = engine(cfg).feed(shuffled)
    assert other.entities["R"].to_dict() == st_.to_dict()
    # (the shuffled log's too-late events are refused and counted as they arrive)
    assert_same(state_derived(samples(other.index, end + 1)), samples(compacted.index, end + 1))
    # a churned account comes back years later: reactivation, although its start was folded
    back = engine(cfg).feed(evs + [cancel("c", end + DAY, "R", "r"),
                                   terms("z", end + 400 * DAY, "R", "r2", "growth", 100)])
    s = samples(back.index, end + 400 * DAY)
    assert s[(P + "mrr_movements", lab(movement="reactivation", window="7d"))] == 1


# ----------------------------------------------------------------------------- property test vs reference

T0 = d(1, 20)
CURRENCIES = ("USD", "EUR", "JPY", "KWD", "XXX")


@st.composite
def event_logs(draw, span_days=75):
    events = []
    span = span_days * DAY
    for a in range(draw(st.integers(1, 4))):
        acc = f"A{a}"
        for _ in range(draw(st.integers(1, 9))):
            t = T0 + draw(st.integers(0, span // 600)) * 600 + draw(st.sampled_from([0, 7]))
            sub = draw(st.sampled_from(["s1", "s1", "s2"]))
            kind = draw(st.sampled_from(["terms", "terms", "terms", "renewed", "due", "cancel", "ended",
                                         "trial", "pay", "pay"]))
            if kind == "terms":
                data = dict(subscription_id=sub, plan=draw(st.sampled_from(["p1", "p2"])),
                            amount_minor=draw(st.sampled_from([0, 1000, 2500, 9900])),
                            currency=draw(st.sampled_from(CURRENCIES)),
                            interval=draw(st.sampled_from(["month", "year"])), quantity=draw(st.integers(1, 3)))
                etype = draw(st.sampled_from(["subscription.started", "subscription.plan_changed"]))
            elif kind == "renewed":
                data = dict(subscription_id=sub, amount_minor=draw(st.sampled_from([0, 1000, 2500])),
                            currency=draw(st.sampled_from(CURRENCIES)), interval="month")
                etype = "subscription.renewed"
            elif kind == "due":
                data = dict(subscription_id=sub, due_at=t + draw(st.sampled_from([-DAY, 0, 5 * DAY, 20 * DAY])))
                etype = "subscription.renewal_due"
            elif kind == "cancel":
                eff = draw(st.sampled_from([None, None, -3 * DAY, 2 * DAY, 30 * DAY]))
                data = dict(subscription_id=sub, reason=draw(st.sampled_from(["voluntary", "involuntary", "other"])),
                            effective_at=None if eff is None else t + eff)
                etype = "subscription.cancelled"
            elif kind == "ended":
                data, etype = dict(subscription_id=sub), "subscription.ended"
            elif kind == "trial":
                data = dict(plan="p1", trial_ends_at=t + draw(st.sampled_from([0, 7 * DAY, 14 * DAY])))
                etype = "subscription.trial_started"
            else:
                data = dict(payment_id=draw(st.sampled_from(["q1", "q2", "q3"])), amount_minor=100, currency="USD",
                            status=draw(st.sampled_from(["succeeded", "succeeded", "failed", "refunded"])))
                etype = "subscription.payment"
            events.append(dict(type=etype, time=float(t), data={"account_id": acc, **data}))
    log = [dict(id=f"e{j:03d}", **e) for j, e in enumerate(events)]
    rnd = draw(st.randoms(use_true_random=False))
    delivered = log + [rnd.choice(log) for _ in range(draw(st.integers(0, 4)))]
    rnd.shuffle(delivered)
    last = max(e["time"] for e in log)
    now = draw(st.one_of(
        st.integers(0, span + 40 * DAY).map(lambda o: float(T0 + o)),
        st.integers(0, 40 * DAY).map(lambda o: last + o),
    ))
    return log, delivered, now


@given(event_logs())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_index_matches_reference_for_any_order_and_duplicates(case):
    log, delivered, now = case
    cfg = RevenueConfig()
    evs = [Ev(e["id"], e["type"], e["time"], e["data"]) for e in delivered]
    exp = ref.compute(delivered, now, revenue_params(cfg))
    run = engine(unbounded()).feed(evs)
    got = samples(run.index, now)
    assert_same(got, exp)
    assert_same(samples(run.rebuilt().index, now), got)
    if now >= max(e["time"] for e in log):  # compaction is exact from the newest event on
        assert_same(exact_part(samples(engine(cfg, KeptRevenue).feed(evs).index, now)), exact_part(exp))


PURCHASES = ("purchasing_accounts", "repeat_purchasing_accounts", "purchase_gaps", "purchase_gap_seconds_sum",
             "failed_payments", "recovered_payments", "recovered_revenue")


def exact_part(x):
    """What compaction keeps exact. Lifetime purchase counts and failed / recovered payments are
    approximate once folded (documented): a payment id seen twice beyond the compaction point, or refunded after it, is not
    matched any more. Nor the too-late counter: a folded event is older than the horizon, too late
    when it arrives after newer ones (refused and counted as it arrives). Nor accounts_tracked:
    it counts the accounts retained at the read time (an account that never paid goes keep_seconds
    after its newest fact), the reference keeps every account (hand-worked: test_accounts_tracked_*)."""
    return {k: v for k, v in state_derived(x).items() if k[0][len(P):] not in PURCHASES + ("accounts_tracked",)}


@st.composite
def long_logs(draw):
    log, delivered, _ = draw(event_logs(span_days=200))
    last = max(e["time"] for e in log)
    return log, delivered, last + draw(st.integers(0, 40 * DAY))


@given(long_logs())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_compacted_state_matches_reference_over_long_logs(case):
    log, delivered, now = case
    cfg = RevenueConfig()
    run = engine(cfg, KeptRevenue).feed([Ev(e["id"], e["type"], e["time"], e["data"]) for e in delivered])
    assert_same(exact_part(samples(run.index, now)),
                exact_part(ref.compute(delivered, now, revenue_params(cfg))))


# ----------------------------------------------------------------------------- generator logs


def decoded_subscriptions(seed, start, duration, rate, profile, faults=None):
    from stream_app.events import EventRejected, decode_event
    from stream_app.tools.generator import generate

    out = []
    for g in generate(seed, start, duration, rate, profile=profile, faults=faults):
        if g.family != "subscription":
            continue
        try:
            out.append(decode_event(g.value, expected_family="subscription", now=start + duration + 30 * DAY))
        except EventRejected:
            assert g.is_invalid
    return out


def check_against_reference(decoded, nows, cfg, skip=()):
    """The engine fed ``decoded`` equals the reference at each of ``nows``, but for the metrics
    named in ``skip`` (without the prefix)."""
    dicts = [plain(e) for e in decoded]
    run = engine(cfg).feed(decoded)
    assert run.duplicates == len(decoded) - len({e.id for e in decoded})

    def kept(x):
        return {k: v for k, v in x.items() if k[0][len(P):] not in skip}

    for now in nows:
        got = samples(run.index, now)
        assert_same(kept(got), kept(ref.compute(dicts, now, revenue_params(cfg))))
    return got


# Seeds whose 8-hour logs end with a scheduled cancellation still pending (seeds 2 and 7 do not
# since the generator's ticket world draws more random numbers): every churn kind is exercised.
@pytest.mark.parametrize("seed", [3, 11])
def test_generator_fast_profile_with_faults_matches_reference(seed):
    from stream_app.tools.generator import Faults, Profile

    start = d(5, 31, 20)  # crosses a month boundary after 4 h
    dec = decoded_subscriptions(seed, start, 8 * H, 1.0, Profile.fast(),
                                Faults(duplicate=0.05, out_of_order=0.05, late=0.05, invalid=0.02, late_by=1800.0))
    assert {e.type for e in dec} >= {"subscription.started", "subscription.renewed", "subscription.cancelled",
                                     "subscription.ended", "subscription.payment", "subscription.trial_started"}
    got = check_against_reference(dec, (start + 6 * H, start + 8 * H + 60), RevenueConfig())
    assert got[(P + "period_start_accounts", lab(period="current_month"))] > 0
    assert got[(P + "mrr_movements", lab(movement="churn", window="7d"))] > 0
    # the generator exercises catalogue v2's churn metrics: dunning that recovers or ends in an
    # involuntary cancellation, scheduled cancellations pending at the end of the log
    assert got[(P + "recovered_payments", lab(window="7d"))] > 0
    assert got[(P + "churn_movements", lab(reason="involuntary", window="7d"))] > 0
    assert got[(P + "churn_movements", lab(reason="voluntary", window="7d"))] > 0
    assert any(k[0] == P + "pending_churn_mrr" for k in got)


def test_generator_realistic_months_match_reference():
    from stream_app.tools.generator import Profile

    start = d(1, 1)
    dec = decoded_subscriptions(5, start, 80 * DAY, 0.004, Profile(initial_accounts=20))
    # 95 days are more than keep_seconds (64 d): accounts that never paid are gone by the end,
    # which the reference does not model (exact_part; hand-worked: test_accounts_tracked_*)
    got = check_against_reference(dec, (start + 80 * DAY, start + 95 * DAY), RevenueConfig(),
                                  skip=("accounts_tracked",))
    assert got[(P + "renewals_renewed", lab(period="previous_month"))] > 0
