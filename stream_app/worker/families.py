"""Each metric family and the health stage, configured from Settings (one place for the mapping)."""

from __future__ import annotations

from ..config import Settings
from ..engine import health, revenue, support, usage, voice
from ..engine.family import Family
from ..engine.labels import LabelGuard, LabelRule


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
        ticket_retention_seconds=settings.support_ticket_retention_seconds,
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
        account_retention_seconds=settings.revenue_account_retention_seconds,
        labels=labels,
    )


def voice_config(settings: Settings, labels: LabelGuard) -> voice.VoiceConfig:
    return voice.VoiceConfig(
        bucket_seconds=settings.voice_bucket_seconds,
        windows=tuple(settings.voice_windows),
        grace_seconds=settings.voice_grace_seconds,
        min_responses=settings.voice_min_responses,
        themes={k: tuple(v) for k, v in settings.voice_comment_themes.items()},
        keep_comment_text=settings.voice_keep_comment_text,
        labels=labels,
    )


def build_families(settings: Settings) -> list[Family]:
    """Every metric family, configured; one label guard shared by all."""
    labels = label_guard(settings)
    return [
        support.SupportFamily(support_config(settings, labels)),
        voice.VoiceFamily(voice_config(settings, labels)),
        usage.UsageFamily(usage_config(settings, labels)),
        revenue.RevenueFamily(revenue_config(settings, labels)),
    ]


def health_config(settings: Settings) -> health.HealthConfig:
    return health.HealthConfig(
        weights=settings.health_weights,
        at_risk_below=settings.health_at_risk_below,
        healthy_from=settings.health_healthy_from,
        first_reply_targets={p: t[0] for p, t in settings.support_sla_targets.items()},
        voice_comments_shown=settings.health_voice_comments_shown,
    )
