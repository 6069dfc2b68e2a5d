"""Builds each metric family's core configuration from Settings (one place for the mapping)."""

from __future__ import annotations

from .config import Settings
from .core import support, voice
from .core.labels import LabelGuard, LabelRule
from .processing import Family


def label_guard(settings: Settings) -> LabelGuard:
    """One guard per worker, shared by all families, so a value maps the same everywhere."""

    def rule(allow: list[str], cap: int) -> LabelRule:
        return LabelRule(allow=frozenset(allow)) if allow else LabelRule(cap=cap)

    return LabelGuard.with_overrides(
        team=rule(settings.label_team_allow, settings.label_team_cap),
        plan=rule(settings.label_plan_allow, settings.label_plan_cap),
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
        ),
    ]
