"""Revenue configuration: windows, reporting currency and FX rates, minor units, compaction, and
calendar-month helpers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from stream_app.engine.labels import LabelGuard
from stream_app.engine.windows import check_windows


PREFIX = "stream_app_revenue_"
DAY = 86400
NANO = 10**9
MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")
COHORT_MOVEMENTS = ("expansion", "contraction", "churn", "reactivation")
PERIODS = ("current_month", "previous_month")
MIN_KEEP_SECONDS = 64 * DAY  # > 62 days: the start of the previous month is always inside it

Contribution = tuple[str, tuple, float | None, Any]

#: ISO 4217 minor-unit exponents that differ from the default of 2.
DEFAULT_MINOR_UNITS: dict[str, int] = {
    "JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0,
    "KWD": 3, "BHD": 3, "JOD": 3, "OMR": 3, "TND": 3,
}
#: Static FX table: value of one unit of each currency in a common base (USD). Conversion
#: X -> reporting = rate[X] / rate[reporting]. Static by design (illustrative mid-2024 levels):
#: configure your own; currencies missing here are not converted (see unconverted_subscriptions).
DEFAULT_FX_RATES: dict[str, float] = {
    "USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CHF": 1.12, "CAD": 0.73, "AUD": 0.66,
    "JPY": 0.0064, "KRW": 0.00072, "SEK": 0.095, "KWD": 3.26, "BHD": 2.65,
}


# --------------------------------------------------------------------------- configuration


@dataclass
class RevenueConfig:
    """Everything the revenue metrics need. ``labels`` is stateful (caps): one per worker."""

    bucket_seconds: int = 3600
    windows: tuple[int, ...] = (7 * DAY, 30 * DAY)  # MRR movements
    grace_seconds: int = DAY  # billing webhooks are often retried for hours
    reporting_currency: str = "USD"
    fx_rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FX_RATES))
    minor_units: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MINOR_UNITS))
    default_minor_unit: int = 2
    trial_conversion_grace_seconds: float = 3 * DAY  # conversions up to trial end + this count
    signal_window_seconds: float = 30 * DAY  # account_signal: contraction look-back, renewal look-ahead
    labels: LabelGuard = field(default_factory=LabelGuard)  # needs rules for plan and currency
    # An account not paying (at the end of its timeline) is forgotten this long after its newest
    # fact (a later event starts a new life); 0 = keep every account that ever paid or purchased.
    account_retention_seconds: int = 0

    def __post_init__(self) -> None:
        self.windows = check_windows(self.windows, self.bucket_seconds)
        if self.grace_seconds < 0:
            raise ValueError("grace_seconds must be >= 0")
        for name in ("plan", "currency"):
            if name not in self.labels.rules:
                raise ValueError(f"the label guard needs a rule for {name!r}")
        for c, e in self.minor_units.items():
            if not 0 <= int(e) <= 9:
                raise ValueError(f"minor unit exponent of {c} must be within 0..9")
        if any(not (r > 0 and math.isfinite(r)) for r in self.fx_rates.values()):
            raise ValueError("FX rates must be positive and finite")
        rep = self.reporting_currency
        if rep not in self.fx_rates:
            if len(self.fx_rates) > 1:
                raise ValueError(f"reporting currency {rep} has no FX rate")
            self.fx_rates = {**self.fx_rates, rep: 1.0}
        base = self.fx_rates[rep]
        self._to_rep = {c: r / base for c, r in self.fx_rates.items()}
        r = self.account_retention_seconds
        if r < 0 or (r and r < self.keep_seconds):
            raise ValueError(f"account_retention_seconds ({r}) must be 0 (keep) or at least keep_seconds "
                             f"({self.keep_seconds}: the previous month and the worker horizon)")  # fmt: skip

    @property
    def max_window(self) -> int:
        return max(self.windows)

    @property
    def horizon(self) -> int:
        """max window + grace: what WatermarkTracker needs."""
        return self.max_window + self.grace_seconds

    @property
    def keep_seconds(self) -> int:
        """Facts kept per account before folding into the snapshot: covers the previous calendar
        month (<= 62 days back) and the worker horizon plus one bucket (so only events beyond the
        too-late cutoff are ever folded). Pass it to ``apply(..., keep_seconds=...)``."""
        return max(MIN_KEEP_SECONDS, self.horizon + self.bucket_seconds)

    def exponent(self, currency: str) -> int:
        return int(self.minor_units.get(currency, self.default_minor_unit))

    def to_reporting(self, currency: str) -> float | None:
        return self._to_rep.get(currency)  # type: ignore[attr-defined]


DEFAULT_KEEP_SECONDS = MIN_KEEP_SECONDS  # = RevenueConfig().keep_seconds


# --------------------------------------------------------------------------- time helpers


def month_index(ts: float) -> int:
    d = datetime.fromtimestamp(ts, timezone.utc)
    return d.year * 12 + d.month - 1


def month_start(idx: int) -> float:
    return datetime(idx // 12, idx % 12 + 1, 1, tzinfo=timezone.utc).timestamp()


def _ts(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime")
        return v.timestamp()
    if isinstance(v, (int, float)):
        return float(v)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()

