"""Customer health: a composite score per account from the other families' account signals.

Data flow: when an entity's state changes, its family's engine (``stream_app.engine.family``)
computes that entity's ``account_signal`` and, if it changed, emits ``{"source", "entity", "ts",
"signal"}`` (signal None = the entity was deleted) for an internal topic keyed by account id. The
health stage (``stage.HealthStage``) keeps one ``HealthState`` per account via ``apply_signal``
(stored as one row per entity) and ``HealthIndex`` scores the accounts it holds at wall-clock
``now``.

Modules: ``config`` (vocabulary, weights, windows), ``state`` (state, signals, rows), ``score``
(components, validity), ``index`` (held accounts, exposition), ``stage`` (the per-worker stage).

* ``HealthState`` keeps the latest signal per ``(source, entity)``: the newer ``ts`` wins; at equal
  ``ts`` the later message wins (a producer re-sends an entity's signal when an out-of-order event
  changed it without moving its newest time), except that a deletion is never replaced at equal
  ``ts``. A deletion is kept as a tombstone so an older signal arriving later cannot resurrect
  the entity.
* Bounded: ``hw`` is the newest ``ts`` seen for the account; an entry (tombstone or not) whose ts
  is older than ``hw - retention[source]`` is dropped, and a message that old is ignored. One
  retention per source, whatever the entry's content, keeps the state independent of arrival
  order (for messages with distinct ts per entity).
* ``score(state, now, cfg)`` derives four components in 0..1 and their weighted mean; missing
  components are left out and the weights renormalised. Formulas: docs/metrics.md (Composite).
"""
from .config import (
    BANDS,
    BOTTOM_CATEGORIES,
    DAY,
    DEFAULT_CONFIG,
    DEFAULT_SCORE_EDGES,
    PREFIX,
    SOURCES,
    HealthConfig,
)
from .index import HealthIndex
from .score import HealthScore, evaluate, score, valid_until
from .stage import HealthStage
from .state import (
    HealthState,
    Row,
    Signal,
    apply_signal,
    coarsen_signal,
    merge_row,
    message_account,
    prune,
    row_changes,
    row_key,
    same_signal,
    settle,
)

__all__ = [
    "BANDS",
    "BOTTOM_CATEGORIES",
    "DAY",
    "DEFAULT_CONFIG",
    "DEFAULT_SCORE_EDGES",
    "PREFIX",
    "SOURCES",
    "HealthConfig",
    "HealthIndex",
    "HealthScore",
    "HealthStage",
    "HealthState",
    "Row",
    "Signal",
    "apply_signal",
    "coarsen_signal",
    "evaluate",
    "merge_row",
    "message_account",
    "prune",
    "row_changes",
    "row_key",
    "same_signal",
    "score",
    "settle",
    "valid_until",
]
