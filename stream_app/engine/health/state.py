"""Customer health state: the latest signal per (source, entity) of each account, how a signal
message changes it, and how it is stored as one row per entity."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import DEFAULT_CONFIG, SOURCES, HealthConfig

# What one entity says about its account (see stream_app.engine.family.Family.account_signal).
Signal = dict[str, Any]


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class HealthState:
    """Latest signal per (source, entity) of one account.

    entries: source -> entity key -> [ts, signal dict without account_id | None (tombstone)]
    hw:      newest ts of any message applied to this account (drives retention)
    """

    account_id: str
    hw: float | None = None
    entries: dict[str, dict[str, list]] = field(default_factory=dict)

    def max_ts(self) -> float | None:
        return self.hw

    def live(self, source: str) -> Iterable[tuple[str, float, dict]]:
        """(entity, ts, signal) of the entities of ``source`` that are not deleted."""
        for k, (ts, sig) in self.entries.get(source, {}).items():
            if sig is not None:
                yield k, ts, sig

    def live_count(self) -> int:
        """Entities not deleted. A state with none holds only tombstones: the caller may delete
        it (the tombstones then stop guarding against replays of older signals)."""
        return sum(1 for d in self.entries.values() for v in d.values() if v[1] is not None)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"v": 1, "a": self.account_id, "hw": self.hw}
        e = {s: d for s, d in self.entries.items() if d}
        if e:
            out["e"] = e
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> HealthState:
        if d.get("v") != 1:
            raise ValueError(f"unsupported health state version {d.get('v')!r}")
        entries = {
            s: {k: [v[0], None if v[1] is None else dict(v[1])] for k, v in es.items()}
            for s, es in d.get("e", {}).items()
        }
        return cls(d["a"], d.get("hw"), entries)


def coarsen_signal(source: str, signal: Signal | None) -> Signal | None:
    """A signal as the health stage needs it from ``source``, before the change test.

    Usage: ``last_active_ts`` to the hour. Health judges activity by days, and the exact
    last-active time would send a message on every heartbeat.
    """
    if source == "usage" and signal is not None and signal.get("last_active_ts") is not None:
        signal["last_active_ts"] = signal["last_active_ts"] // 3600 * 3600
    return signal


def same_signal(a: Signal | None, b: Signal | None) -> bool:
    """Whether two signals of one entity say the same; their ``ts`` (the entity's newest event
    time, which moves on every event) is left out: only a change of what a signal says is worth
    a message."""
    if a is None or b is None:
        return a is b
    return {k: v for k, v in a.items() if k != "ts"} == {k: v for k, v in b.items() if k != "ts"}


def message_account(message: Mapping) -> str | None:
    acc = message.get("account_id")
    sig = message.get("signal")
    if not acc and isinstance(sig, Mapping):
        acc = sig.get("account_id")
    return str(acc) if acc else None


def apply_signal(
    state: HealthState | None,
    message: Mapping,
    cfg: HealthConfig | None = None,
    *,
    account_id: str | None = None,
) -> tuple[HealthState, bool]:
    """Record one signal message. Pure: never mutates ``state``.

    ``message``: ``{"source": usage|support|voice|revenue, "entity": key, "ts": entity max ts,
    "signal": dict | None, ["account_id"]}``. The account is ``account_id`` (pass the Kafka key),
    else the message's or its signal's ``account_id``; needed only when ``state`` is None.
    Returns ``(new_state, True)`` if anything changed, else ``(state, False)`` (an older or
    repeated signal, or one beyond retention). Raises ValueError for an unknown source.
    """
    cfg = cfg or DEFAULT_CONFIG
    source = message.get("source")
    if source not in SOURCES:
        raise ValueError(f"unknown health signal source {source!r}")
    entity = str(message["entity"])
    ts = float(message["ts"])
    sig = message.get("signal")
    if sig is not None:
        sig = {k: v for k, v in sig.items() if k != "account_id"}  # the state's key names it
    if state is None:
        acc = account_id or message_account(message)
        if not acc:
            raise ValueError("health signal without an account id")
        state = HealthState(acc)
    hw = ts if state.hw is None or ts > state.hw else state.hw
    r = cfg.retention_seconds.get(source)
    if r is not None and ts < hw - r:
        return state, False  # beyond retention (then ts < hw: nothing else changes)
    entries = state.entries
    cur = entries.get(source, {}).get(entity)
    # equal ts: a different signal replaces the stored one, but never a deletion (the deletion
    # carries the entity's last ts, the same as its last signal: either order gives the deletion)
    if cur is None or ts > cur[0] or (ts == cur[0] and cur[1] is not None and sig != cur[1]):
        d = dict(entries.get(source, {}))
        d[entity] = [ts, sig]
        entries = {**entries, source: d}
    if hw != state.hw:
        entries = prune(entries, hw, cfg)
    if hw == state.hw and entries is state.entries:
        return state, False
    return HealthState(state.account_id, hw, entries), True


def prune(entries: dict[str, dict[str, list]], hw: float, cfg: HealthConfig) -> dict[str, dict[str, list]]:
    out = entries
    for s, d in entries.items():
        r = cfg.retention_seconds.get(s)
        if r is None:
            continue
        cutoff = hw - r
        if any(v[0] < cutoff for v in d.values()):
            if out is entries:
                out = dict(entries)
            out[s] = {k: v for k, v in d.items() if v[0] >= cutoff}
    return out


# --------------------------------------------------------------------------- rows
# An account is stored as one row per (source, entity): the key names them (:func:`row_key`), the
# value is the entity's latest signal or tombstone, ``[ts, signal]``. A signal changes one
# entity, so it writes one small row instead of the whole account (an account can hold thousands
# of entities).

Row = list  # [ts, signal | None]


def row_key(account_id: str, source: str, entity: str) -> str:
    """Key of one entity's row (JSON: unambiguous whatever the ids contain)."""
    return json.dumps([account_id, source, entity], separators=(",", ":"))


def row_changes(old: HealthState | None, new: HealthState) -> tuple[list[tuple[str, Row]], list[str]]:
    """The rows to write and the row keys to delete when an account goes from ``old`` to ``new``.

    :func:`apply_signal` copies only what changed, so an unchanged entry is the same object in
    both states and is skipped without comparing.
    """
    account_id = new.account_id
    sets: list[tuple[str, Row]] = []
    deletes: list[str] = []
    old_entries = old.entries if old is not None else {}
    for source, entities in new.entries.items():
        before = old_entries.get(source)
        if entities is before:
            continue
        for entity, entry in entities.items():
            if before is None or before.get(entity) is not entry:
                sets.append((row_key(account_id, source, entity), [entry[0], entry[1]]))
        if before is not None:
            deletes.extend(row_key(account_id, source, e) for e in before if e not in entities)  # pruned
    for source, before in old_entries.items():
        if source not in new.entries:
            deletes.extend(row_key(account_id, source, e) for e in before)
    return sets, deletes


def merge_row(states: dict[str, HealthState], key: str, row: Row) -> None:
    """Add one stored row to the states being rebuilt; of two rows of one entity the newer wins
    (a deletion wins a tie, as in :func:`apply_signal`)."""
    account_id, source, entity = json.loads(key)
    ts, signal = row
    state = states.get(account_id)
    if state is None:
        state = states[account_id] = HealthState(account_id)
    entities = state.entries.setdefault(source, {})
    cur = entities.get(entity)
    entry = [ts, None if signal is None else dict(signal)]
    if cur is None or entry[0] > cur[0] or (entry[0] == cur[0] and entry[1] is None):
        entities[entity] = entry


def settle(state: HealthState, cfg: HealthConfig = DEFAULT_CONFIG) -> None:
    """Finish a state rebuilt from rows: ``hw`` is its newest entry (the newest applied signal is
    never pruned), and pruning again makes it exact even if a crash kept a row whose deletion
    was not written."""
    state.hw = max((e[0] for d in state.entries.values() for e in d.values()), default=None)
    if state.hw is not None:
        state.entries = prune(state.entries, state.hw, cfg)
