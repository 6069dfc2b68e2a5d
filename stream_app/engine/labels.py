"""Bounded Prometheus label values.

Every label a metric family uses must have a rule: an allow-list (values outside it become
``other``) or a cap on distinct values (the first N distinct values seen are kept, later ones
become ``other``). Label names without a rule are refused, so an id or free text can never reach a
label by accident.

Caps depend on arrival order, so two workers (or one worker before and after a restart) may keep
different values; the mapping of a value never changes once decided within one guard, which is
what keeps retractions exact. Configure an allow-list where stable series matter (teams, plans).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..vocabulary import CHANNELS, CLIENTS, PRIORITIES, TICKET_STATUSES

OTHER = "other"

DEFAULT_TEAM_CAP = 20
DEFAULT_PLAN_CAP = 20
DEFAULT_FEATURE_CAP = 50
DEFAULT_CURRENCY_CAP = 20


@dataclass(frozen=True)
class LabelRule:
    """Exactly one of ``allow`` (fixed set of values) or ``cap`` (max distinct values kept)."""

    allow: frozenset[str] | None = None
    cap: int | None = None

    def __post_init__(self) -> None:
        if (self.allow is None) == (self.cap is None):
            raise ValueError("a label rule needs exactly one of allow or cap")
        if self.allow is not None:
            object.__setattr__(self, "allow", frozenset(self.allow))
        if self.cap is not None and self.cap < 0:
            raise ValueError("cap must be >= 0")


def default_rules() -> dict[str, LabelRule]:
    return {
        "team": LabelRule(cap=DEFAULT_TEAM_CAP),
        "channel": LabelRule(allow=frozenset(CHANNELS)),
        "priority": LabelRule(allow=frozenset(PRIORITIES)),
        "status": LabelRule(allow=frozenset(TICKET_STATUSES)),
        "plan": LabelRule(cap=DEFAULT_PLAN_CAP),
        "client": LabelRule(allow=frozenset(CLIENTS)),
        "feature": LabelRule(cap=DEFAULT_FEATURE_CAP),
        "currency": LabelRule(cap=DEFAULT_CURRENCY_CAP),
    }


class LabelGuard:
    """Maps raw values to bounded label values. Stateful only for capped labels."""

    __slots__ = ("rules", "other", "_kept", "_tuple_cache")

    def __init__(self, rules: Mapping[str, LabelRule] | None = None, other: str = OTHER):
        self.rules: dict[str, LabelRule] = dict(default_rules() if rules is None else rules)
        self.other = other
        self._kept: dict[str, set[str]] = {n: set() for n, r in self.rules.items() if r.cap is not None}
        self._tuple_cache: dict[tuple, tuple[str, ...]] = {}

    @classmethod
    def with_overrides(cls, **rules: LabelRule) -> LabelGuard:
        """Default rules with some replaced, e.g. ``with_overrides(team=LabelRule(allow={...}))``."""
        merged = default_rules()
        merged.update(rules)
        return cls(merged)

    def value(self, label: str, raw: object) -> str:
        rule = self.rules.get(label)
        if rule is None:
            raise KeyError(f"label {label!r} has no rule; add an allow-list or a cap")
        if raw is None:
            return self.other
        v = str(getattr(raw, "value", raw)).strip()  # enums arrive as str or Enum
        if not v:
            return self.other
        if rule.allow is not None:
            return v if v in rule.allow else self.other
        kept = self._kept[label]
        if v in kept:
            return v
        if len(kept) < rule.cap:  # type: ignore[operator]
            kept.add(v)
            return v
        return self.other

    def labels(self, names: tuple[str, ...], raws: tuple) -> tuple[str, ...]:
        """Bounded values for several labels at once (memoised: the result for a given input
        never changes within one guard)."""
        key = (names, raws)
        hit = self._tuple_cache.get(key)
        if hit is None:
            hit = tuple(self.value(n, r) for n, r in zip(names, raws))
            if len(self._tuple_cache) < 100_000:  # raw inputs are unbounded; keep the memo bounded
                self._tuple_cache[key] = hit
        return hit

    def kept(self, label: str) -> frozenset[str]:
        """Values admitted so far for a capped label (allowed values for an allow-list)."""
        rule = self.rules[label]
        return rule.allow if rule.allow is not None else frozenset(self._kept[label])

    def seed(self, label: str, values: Iterable[str]) -> None:
        """Pre-admit values of a capped label (e.g. restored from a previous run) in order."""
        for v in values:
            self.value(label, v)
