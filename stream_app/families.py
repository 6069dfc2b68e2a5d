"""Builds each metric family's core configuration from Settings (one place for the mapping)."""

from __future__ import annotations

from .config import Settings
from functools import partial

from .core import health, revenue, support, usage, voice
from .core.labels import LabelGuard, LabelRule
from .processing import Family


def label_guard(settings: Settings) -> LabelGuard:
    """One guard per worker, shared by all families, so a value maps the same everywhere."""

    def rule(allow: list[str], cap: int) -> LabelRule:
        return LabelRule(allow=frozenset(allow)) if allow else LabelRule(cap=cap)

    return LabelGuard.with_overrides(
        team=rule(settings.label_team_allow, settings.label_team_cap),
        plan=rule(settings.label_plan_allow, settings.label_plan_cap),
        currency=rule(settings.label_currency_allow, settings.label_currency_cap),
        feature=rule(settings.label_feature_allow, settings.label_feature_cap),
    )


def support_config(settings: Settings, labels: LabelGuard) -> support.SupportConfig:
    return support.SupportConfig(
        bucket_seconds=settings.support_bucket_seconds,
        volume_windows=tuple(settings.support_volume_windows),
        windows=tuple(settings.support_windows),
        grace_seconds=settings.support_grace_seconds,
        sla_targets={
            priority: support.SlaTarget(*targets) for priority, targets in settings.support_sla_targets.items()
        },
        at_risk_fraction=settings.support_sla_at_risk_fraction,
        calendars={team: support.BusinessCalendar(**cal) for team, cal in settings.support_calendars.items()},
        labels=labels,
    )


def usage_config(settings: Settings, labels: LabelGuard) -> usage.UsageConfig:
    return usage.UsageConfig(
        bucket_seconds=settings.usage_bucket_seconds,
        active_windows=tuple(settings.usage_active_windows),
        session_windows=tuple(settings.usage_session_windows),
        feature_windows=tuple(settings.usage_feature_windows),
        known_seconds=settings.usage_known_seconds,
        grace_seconds=settings.usage_grace_seconds,
        idle_timeout_seconds=settings.usage_idle_timeout_seconds,
        adoption_seconds=settings.usage_adoption_seconds,
        max_features_per_user=settings.usage_max_features_per_user,
        labels=labels,
    )


def revenue_config(settings: Settings, labels: LabelGuard) -> revenue.RevenueConfig:
    return revenue.RevenueConfig(
        bucket_seconds=settings.revenue_bucket_seconds,
        windows=tuple(settings.revenue_windows),
        grace_seconds=settings.revenue_grace_seconds,
        reporting_currency=settings.revenue_reporting_currency,
        fx_rates={**revenue.DEFAULT_FX_RATES, **settings.revenue_fx_rates},
        minor_units={**revenue.DEFAULT_MINOR_UNITS, **settings.revenue_minor_units},
        trial_conversion_grace_seconds=settings.revenue_trial_conversion_grace_seconds,
        labels=labels,
    )


def voice_config(settings: Settings, labels: LabelGuard) -> voice.VoiceConfig:
    return voice.VoiceConfig(
        bucket_seconds=settings.voice_bucket_seconds,
        windows=tuple(settings.voice_windows),
        grace_seconds=settings.voice_grace_seconds,
        min_responses=settings.voice_min_responses,
        labels=labels,
    )


def build_families(settings: Settings) -> list[Family]:
    labels = label_guard(settings)
    usage_cfg = usage_config(settings, labels)
    revenue_cfg = revenue_config(settings, labels)
    return [
        Family(
            name="support",
            event_family="ticket",
            table="tickets",
            config=support_config(settings, labels),
            from_dict=support.TicketState.from_dict,
            apply=support.apply,
            contributions=support.contributions,
            make_index=support.SupportIndex,
            retention_until=getattr(support, "retention_until", None),
            account_signal=support.account_signal,
        ),
        Family(
            name="voice",
            event_family="survey",
            table="survey_responses",
            config=voice_config(settings, labels),
            from_dict=voice.ResponseState.from_dict,
            apply=voice.apply,
            contributions=voice.contributions,
            make_index=voice.VoiceIndex,
            retention_until=voice.retention_until,
            account_signal=lambda state, cfg: voice.account_signal(state),
        ),
        Family(
            name="usage",
            event_family="activity",
            table="users",
            config=usage_cfg,
            from_dict=usage.UserState.from_dict,
            apply=partial(usage.apply, cfg=usage_cfg),
            contributions=usage.contributions,
            make_index=usage.UsageIndex,
            retention_until=usage.retention_until,
            account_signal=_usage_signal,
        ),
        Family(
            name="revenue",
            event_family="subscription",
            table="accounts",
            config=revenue_cfg,
            from_dict=revenue.AccountState.from_dict,
            # Compaction keeps what the configured windows need.
            apply=partial(revenue.apply, keep_seconds=revenue_cfg.keep_seconds),
            contributions=revenue.contributions,
            make_index=revenue.RevenueIndex,
            retention_until=revenue.retention_until,
            # Judged at the account's newest event, so the signal is a pure function of the state.
            account_signal=lambda state, cfg: revenue.account_signal(state, state.max_ts(), cfg),
        ),
    ]


def _usage_signal(state: usage.UserState, cfg: usage.UsageConfig) -> dict | None:
    """A user's signal, coarsened to the hour: health judges activity by days, and an
    exact last-active time would send a message on every heartbeat."""
    signal = usage.account_signal(state, state.max_ts())
    if signal is not None and signal.get("last_active_ts") is not None:
        signal["last_active_ts"] = signal["last_active_ts"] // 3600 * 3600
    return signal


def health_config(settings: Settings) -> health.HealthConfig:
    return health.HealthConfig(
        weights=settings.health_weights,
        at_risk_below=settings.health_at_risk_below,
        healthy_from=settings.health_healthy_from,
        first_reply_targets={p: t[0] for p, t in settings.support_sla_targets.items()},
    )
