"""Subscription and payment events. Topic setting ``topic_subscriptions``; subject/key = ``data.account_id``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .envelope import AmountMinor, Currency, Envelope, EventData, Id, Name64, UtcDatetime

Interval = Literal["month", "year"]
CancelReason = Literal["voluntary", "involuntary", "other"]
PaymentStatus = Literal["succeeded", "failed", "refunded"]

_AMOUNT = "Price per interval in the currency's minor unit (e.g. cents)."


class SubscriptionEvent(Envelope):
    FAMILY = "subscription"
    SUBJECT_FIELD = "account_id"


class TrialStartedData(EventData):
    account_id: Id
    plan: Name64
    trial_ends_at: UtcDatetime


class SubscriptionTrialStarted(SubscriptionEvent):
    type: Literal["subscription.trial_started"] = "subscription.trial_started"
    data: TrialStartedData


class SubscriptionTermsData(EventData):
    account_id: Id
    subscription_id: Id
    plan: Name64
    amount_minor: AmountMinor = Field(description=_AMOUNT)
    currency: Currency
    interval: Interval
    quantity: int = Field(1, ge=1, description="Seats or units.")


class SubscriptionStarted(SubscriptionEvent):
    type: Literal["subscription.started"] = "subscription.started"
    data: SubscriptionTermsData


class SubscriptionPlanChanged(SubscriptionEvent):
    """Carries the new terms (same fields as ``subscription.started``)."""

    type: Literal["subscription.plan_changed"] = "subscription.plan_changed"
    data: SubscriptionTermsData


class RenewalDueData(EventData):
    account_id: Id
    subscription_id: Id
    due_at: UtcDatetime


class SubscriptionRenewalDue(SubscriptionEvent):
    type: Literal["subscription.renewal_due"] = "subscription.renewal_due"
    data: RenewalDueData


class RenewedData(EventData):
    account_id: Id
    subscription_id: Id
    amount_minor: AmountMinor = Field(description=_AMOUNT)
    currency: Currency
    interval: Interval


class SubscriptionRenewed(SubscriptionEvent):
    type: Literal["subscription.renewed"] = "subscription.renewed"
    data: RenewedData


class CancelledData(EventData):
    account_id: Id
    subscription_id: Id
    reason: CancelReason = "voluntary"
    effective_at: UtcDatetime | None = Field(None, description="Null means immediately.")


class SubscriptionCancelled(SubscriptionEvent):
    type: Literal["subscription.cancelled"] = "subscription.cancelled"
    data: CancelledData


class EndedData(EventData):
    account_id: Id
    subscription_id: Id


class SubscriptionEnded(SubscriptionEvent):
    type: Literal["subscription.ended"] = "subscription.ended"
    data: EndedData


class PaymentData(EventData):
    account_id: Id
    payment_id: Id
    amount_minor: AmountMinor = Field(description="Amount in the currency's minor unit.")
    currency: Currency
    status: PaymentStatus


class SubscriptionPayment(SubscriptionEvent):
    type: Literal["subscription.payment"] = "subscription.payment"
    data: PaymentData


SUBSCRIPTION_EVENTS = (
    SubscriptionTrialStarted,
    SubscriptionStarted,
    SubscriptionPlanChanged,
    SubscriptionRenewalDue,
    SubscriptionRenewed,
    SubscriptionCancelled,
    SubscriptionEnded,
    SubscriptionPayment,
)
