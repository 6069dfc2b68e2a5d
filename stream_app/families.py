"""Builds each metric family's core configuration from Settings (one place for the mapping)."""

from __future__ import annotations

from .config import Settings
from .core import support
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
        bucket_seconds=settings.bucket_seconds,
        volume_windows=tuple(settings.support_volume_windows),
        windows=tuple(settings.support_windows),
        grace_seconds=settings.window_grace_seconds,
        sla_targets={
            priority: support.SlaTarget(*targets) for priority, targets in settings.support_sla_targets.items()
        },
        at_risk_fraction=settings.support_sla_at_risk_fraction,
        calendars={team: support.BusinessCalendar(**cal) for team, cal in settings.support_calendars.items()},
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
    ]
