"""Accounts and subscriptions: new accounts (trial or direct purchase), purchases by free or
churned accounts, and each subscription's periods (plan changes, renewals, dunning, churn)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .activity import first_session, signup
from .message import rfc3339
from .world import DRAW_CURRENCIES, DRAW_CURRENCIES_CW, DRAW_PLANS_CW, PLANS, PRICES, Account, Proc, wchoice

if TYPE_CHECKING:
    from .simulation import Simulation


def new_account(sim: Simulation, t: float) -> Proc:
    r = sim.rng
    acc = Account(sim.new_id("acc"))
    uid = sim.new_id("usr")
    yield t, "activity.signed_up", {"user_id": uid, "account_id": acc.id}
    sim.accounts.append(acc)
    sim.add_user(acc, uid)
    sim.spawn(first_session(sim, t + r.uniform(5.0, 120.0), (uid, acc)))
    plan = wchoice(r, PLANS[:3], DRAW_PLANS_CW[:3])
    if r.random() < 0.25:  # sales-led: pays right away
        yield from _paying(sim, acc, t + r.uniform(60.0, 600.0), plan)
        return
    t += r.uniform(5.0, 60.0)
    trial_end = t + sim.profile.trial_seconds
    yield t, "subscription.trial_started", {
        "account_id": acc.id,
        "plan": plan,
        "trial_ends_at": rfc3339(trial_end),
    }
    acc.state = "trial"
    acc.trial_end = trial_end
    for _ in range(r.choice((0, 0, 1, 1, 2, 4))):  # teammates join during the trial
        sim.spawn(signup(sim, t + r.uniform(0.05, 0.9) * sim.profile.trial_seconds, acc))
    if r.random() < 0.3:
        t = trial_end - r.uniform(0.0, 0.5) * sim.profile.trial_seconds
        yield from _paying(sim, acc, t, plan)
    # else the trial lapses silently (no event): conversion rate counts it as not converted


def purchase(sim: Simulation, t: float) -> Proc:
    r = sim.rng
    free = [
        a
        for a in r.sample(sim.accounts, min(8, len(sim.accounts)))
        if a.state in ("free", "churned") or (a.state == "trial" and a.trial_end < t)
    ]
    if not free:
        yield from new_account(sim, t)
        return
    acc = free[0]
    acc.state = "paying"  # reserve it so no second purchase starts meanwhile
    plan = "enterprise" if acc.enterprise and r.random() < 0.5 else wchoice(r, PLANS[:3], DRAW_PLANS_CW[:3])
    yield from _paying(sim, acc, t, plan)


def existing_subscription(sim: Simulation, acc: Account, start: float) -> Proc:
    """A warm start's paying account: subscribed months before ``start``; only its last weeks
    (renewals, plan changes, churn) are in the log, besides the start of its subscription."""
    r = sim.rng
    plan = "enterprise" if acc.enterprise and r.random() < 0.5 else wchoice(r, PLANS[:3], DRAW_PLANS_CW[:3])
    since = start - r.uniform(1.2, 18.0) * sim.profile.month_seconds
    yield from _paying(sim, acc, since, plan, quiet_until=start - 35 * 86400.0)


def _paying(sim: Simulation, acc: Account, t: float, plan: str, quiet_until: float = -math.inf) -> Proc:
    """A subscription from its start; billing periods that end before ``quiet_until`` pass
    without events (a warm start's long-running subscriptions)."""
    r = sim.rng
    sub = sim.new_id("sub")
    currency = wchoice(r, DRAW_CURRENCIES, DRAW_CURRENCIES_CW)
    interval = "year" if r.random() < 0.2 else "month"
    period = sim.profile.month_seconds * (12 if interval == "year" else 1)

    def amount(p: str) -> int:
        return PRICES[currency][p] * (10 if interval == "year" else 1)

    price = amount(plan)
    acc.state = "paying"
    yield t, "subscription.started", _sub_terms(acc, sub, plan, price, currency, interval)
    t += r.uniform(1.0, 10.0)
    yield t, "subscription.payment", _payment(sim, acc, price, currency, "succeeded")
    period_start = t
    while True:
        period_end = period_start + period
        if period_end <= quiet_until:
            period_start = period_end
            continue
        if r.random() < 0.12:
            idx = PLANS.index(plan)
            up = r.random() < 0.65
            new_idx = min(len(PLANS) - 1, idx + 1) if up else max(0, idx - 1)
            if new_idx != idx:
                t = period_start + r.uniform(0.1, 0.9) * period
                old_price, plan = price, PLANS[new_idx]
                price = amount(plan)
                yield t, "subscription.plan_changed", _sub_terms(acc, sub, plan, price, currency, interval)
                if price > old_price:  # prorated upgrade charge
                    remaining = (period_end - t) / period
                    t += r.uniform(1.0, 10.0)
                    charge = int((price - old_price) * remaining)
                    yield t, "subscription.payment", _payment(sim, acc, charge, currency, "succeeded")
        notice = min(7 * 86400.0, period * 0.25)
        t = period_end - notice
        yield t, "subscription.renewal_due", {
            "account_id": acc.id,
            "subscription_id": sub,
            "due_at": rfc3339(period_end),
        }
        if r.random() < (0.06 if interval == "month" else 0.15):
            t += r.uniform(0.05, 0.9) * notice
            yield t, "subscription.cancelled", {
                "account_id": acc.id,
                "subscription_id": sub,
                "reason": "voluntary",
                "effective_at": rfc3339(period_end),
            }
            yield period_end, "subscription.ended", {"account_id": acc.id, "subscription_id": sub}
            acc.state = "churned"
            return
        t = period_end
        failures = 0
        charge_id = None  # dunning retries the same charge (payment id): failed, then recovered
        while r.random() < (0.07 if failures == 0 else 0.4):
            charge_id = charge_id or sim.new_id("pay")  # drawn when first used: same draws as before
            yield t, "subscription.payment", _payment(sim, acc, price, currency, "failed", charge_id)
            failures += 1
            t += period / 30.0  # dunning retry a "day" later
            if failures == 3:
                yield t, "subscription.cancelled", {
                    "account_id": acc.id,
                    "subscription_id": sub,
                    "reason": "involuntary",
                    "effective_at": None,
                }
                yield t + r.uniform(0.5, 5.0), "subscription.ended", {
                    "account_id": acc.id,
                    "subscription_id": sub,
                }
                acc.state = "churned"
                return
        yield t, "subscription.payment", _payment(sim, acc, price, currency, "succeeded", charge_id)
        t += r.uniform(0.5, 5.0)
        yield t, "subscription.renewed", {
            "account_id": acc.id,
            "subscription_id": sub,
            "amount_minor": price,
            "currency": currency,
            "interval": interval,
        }
        period_start = period_end


def _sub_terms(
    acc: Account, sub: str, plan: str, price: int, currency: str, interval: str
) -> dict[str, Any]:
    return {
        "account_id": acc.id,
        "subscription_id": sub,
        "plan": plan,
        "amount_minor": price,
        "currency": currency,
        "interval": interval,
        "quantity": 1,
    }


def _payment(
    sim: Simulation, acc: Account, amount: int, currency: str, status: str, payment_id: str | None = None
) -> dict[str, Any]:
    return {
        "account_id": acc.id,
        "payment_id": payment_id or sim.new_id("pay"),
        "amount_minor": amount,
        "currency": currency,
        "status": status,
    }
