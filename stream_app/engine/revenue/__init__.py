"""Revenue and retention metrics: per-account state, its contributions, and the derived index.

Same family pattern as :mod:`stream_app.engine.support` (read its docstring first):
``AccountState`` records facts keyed by event id, ``contributions(state, cfg)`` derives what one
account adds to the aggregates, ``RevenueIndex`` holds the aggregates and is updated by diffing
contributions. Definitions: docs/metrics.md (Revenue and retention section).

What is specific here:

* **An MRR timeline per account.** A subscription is active on ``[start, end)``: start = its
  earliest terms event (started / plan_changed / renewed), end = the earliest of ``ended``,
  ``cancelled`` with ``effective_at`` null (the cancel's event time) and ``effective_at``. Terms in
  force at ``x`` = the latest terms event with time <= x. From the subscriptions we get, at every
  change point, the account's vector (paying?, MRR per plan/currency, MRR in the reporting
  currency, primary plan). Changes can lie in the future (a cancellation effective at the period
  end): everything is keyed by the time the change takes effect and read at ``now``.
* **Exact integer sums.** MRR is carried as integer *annual nano-units* (major units x 1e9 per
  year: ``amount_minor x quantity x (12 | 1) x 10^(9 - exponent)``; the reporting-currency value is
  that times the static FX rate, rounded to an integer once per subscription). Every aggregate is
  an integer sum, so retractions cancel exactly; MRR = value / 12 / 1e9 at collect time.
* **Step stores.** Current-state gauges (MRR now) and calendar-month periods are sums of steps
  ``(key, t, delta)`` read "before p" at a few points (now, start of this month, start of last
  month) with incremental cursors (:class:`StepStore`).
* **Calendar-month periods (UTC).** ``period="current_month"`` is ``[start of month, now]``,
  ``"previous_month"`` the whole previous month. For an account without changes in a month its
  period contribution is a function of its state at the month start (read from the step store at
  that instant); an account with changes in month ``m`` adds a correction keyed by ``m`` whose
  value steps at each change (so the current month reads it at ``now``). Exact, no wall-clock scan.
* **Bounded state.** Facts with event time before the compaction point
  ``C = floor_day(newest fact - keep_seconds)`` are folded into a snapshot made only of min/max
  merges (earliest start, latest terms, earliest end, latest renewal notice, ...), so the state is
  independent of arrival order and holds about ``keep_seconds`` (>= 64 days) of facts. ``C`` is
  always before the worker's too-late cutoff, so only too-late events are ever folded."""

from __future__ import annotations

from .config import (
    COHORT_MOVEMENTS,
    Contribution,
    DAY,
    DEFAULT_FX_RATES,
    DEFAULT_KEEP_SECONDS,
    DEFAULT_MINOR_UNITS,
    MIN_KEEP_SECONDS,
    MOVEMENTS,
    NANO,
    PERIODS,
    PREFIX,
    RevenueConfig,
    month_index,
    month_start,
)
from .state import AccountState, apply, compact
from .movements import (
    AccountFacts,
    Vec,
    ZERO,
    account_signal,
    contributions,
    derive,
    retention_until,
)
from .family import RevenueFamily
from .index import RevenueIndex, StepStore

__all__ = [
    "AccountFacts",
    "AccountState",
    "COHORT_MOVEMENTS",
    "Contribution",
    "DAY",
    "DEFAULT_FX_RATES",
    "DEFAULT_KEEP_SECONDS",
    "DEFAULT_MINOR_UNITS",
    "MIN_KEEP_SECONDS",
    "MOVEMENTS",
    "NANO",
    "PERIODS",
    "PREFIX",
    "RevenueConfig",
    "RevenueFamily",
    "RevenueIndex",
    "StepStore",
    "Vec",
    "ZERO",
    "account_signal",
    "apply",
    "compact",
    "contributions",
    "derive",
    "month_index",
    "month_start",
    "retention_until",
]
