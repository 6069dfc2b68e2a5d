"""An account's subscription facts (AccountState), how an event adds to them, and their compaction
into a snapshot."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stream_app.engine.fields import field as _field
from .config import DAY, DEFAULT_KEEP_SECONDS, _ts


# --------------------------------------------------------------------------- state

# Fact layouts (lists, JSON-able), keyed by event id:
#   trial   ["t", ts, plan, trial_ends_at]
#   terms   ["s", ts, sub, plan, amount_minor, currency, interval, quantity]   started / plan_changed
#   renewed ["r", ts, sub, amount_minor, currency, interval]
#   due     ["d", ts, sub, due_at]
#   cancel  ["x", ts, sub, reason, effective_at | None]
#   ended   ["e", ts, sub]
#   payment ["p", ts, payment_id, amount_minor, currency, status]
# Snapshot (facts with ts < C folded; every field is a min/max merge, so folding commutes):
#   {"mx": newest folded ts, "pay": [purchases, first ts, last ts],
#    "subs": {sub: {"st": earliest terms ts, "pt": [ts, id, amount, currency, interval] latest price,
#                   "ft": [ts, id, plan, quantity] latest full terms, "end": earliest end,
#                   "fp": earliest ts of a positive price, "dn": [notice ts, id, due_at] latest
#                   renewal notice, "lr": latest renewed ts,
#                   "ec": [end, ts, id, reason] earliest cancellation (absent before v2 of this
#                   catalogue: its churn then counts as "other")}}}


@dataclass(slots=True)
class AccountState:
    account_id: str
    facts: dict[str, list] = field(default_factory=dict)
    compacted: float | None = None  # C: facts before it live in snap
    snap: dict = field(default_factory=dict)

    def has_event(self, event_id: str) -> bool:
        return event_id in self.facts

    def max_ts(self) -> float | None:
        best = self.snap.get("mx")
        for f in self.facts.values():
            if best is None or f[1] > best:
                best = f[1]
        return best

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"v": 1, "a": self.account_id}
        if self.facts:
            out["f"] = self.facts
        if self.compacted is not None:
            out["c"] = self.compacted
            out["s"] = self.snap
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> AccountState:
        if d.get("v") != 1:
            raise ValueError(f"unsupported account state version {d.get('v')!r}")
        snap = d.get("s") or {}
        return cls(
            account_id=d["a"],
            facts={k: list(v) for k, v in d.get("f", {}).items()},
            compacted=d.get("c"),
            snap={
                **({"mx": snap["mx"]} if "mx" in snap else {}),
                **({"pay": list(snap["pay"])} if "pay" in snap else {}),
                "subs": {k: dict(v) for k, v in snap.get("subs", {}).items()},
            } if d.get("c") is not None else {},
        )


def _lt(a: list | None, b: list) -> bool:
    """a < b by (ts, id); None is smallest."""
    return a is None or (a[0], a[1]) < (b[0], b[1])


def _fold(snap: dict, eid: str, f: list) -> None:
    """Merge one fact into a snapshot (mutates ``snap``, which the caller owns)."""
    kind, ts = f[0], f[1]
    snap["mx"] = ts if snap.get("mx") is None else max(snap["mx"], ts)
    if kind == "t":
        return  # a folded trial started before every period we publish
    if kind == "p":
        if f[5] == "succeeded":  # refunds of folded payments cannot be matched any more
            n, first, last = snap.get("pay") or [0, None, None]
            snap["pay"] = [n + 1, ts if first is None else min(first, ts), ts if last is None else max(last, ts)]
        return
    subs = snap.setdefault("subs", {})
    s = subs.get(f[2])
    s = subs[f[2]] = dict(s) if s else {}
    if kind in ("s", "r"):
        s["st"] = ts if s.get("st") is None else min(s["st"], ts)
        price = [ts, eid, f[4], f[5], f[6]] if kind == "s" else [ts, eid, f[3], f[4], f[5]]
        if _lt(s.get("pt"), price):
            s["pt"] = price
        if kind == "s" and _lt(s.get("ft"), [ts, eid]):
            s["ft"] = [ts, eid, f[3], f[7]]
        if price[2] > 0:
            s["fp"] = ts if s.get("fp") is None else min(s["fp"], ts)
        if kind == "r":
            s["lr"] = ts if s.get("lr") is None else max(s["lr"], ts)
    elif kind in ("x", "e"):
        end = ts if kind == "e" or f[4] is None else f[4]
        s["end"] = end if s.get("end") is None else min(s["end"], end)
        if kind == "x":  # the churn reason: earliest cancellation by (end, time, id)
            cause = [end, ts, eid, f[3]]
            if s.get("ec") is None or cause < s["ec"]:
                s["ec"] = cause
    elif kind == "d":
        if _lt(s.get("dn"), [ts, eid]):
            s["dn"] = [ts, eid, f[3]]


def compact(state: AccountState, keep_seconds: float = DEFAULT_KEEP_SECONDS) -> AccountState:
    """Fold facts older than ``floor_day(newest - keep_seconds)`` into the snapshot (pure)."""
    mx = state.max_ts()
    if mx is None:
        return state
    c = math.floor((mx - keep_seconds) / DAY) * DAY
    if state.compacted is not None and c <= state.compacted:
        return state
    old = [k for k, f in state.facts.items() if f[1] < c]
    if not old and state.compacted is None:
        return state  # nothing to fold yet: stay uncompacted (exact for any `now`)
    snap = {"subs": dict(state.snap.get("subs", {}))}
    for k in ("mx", "pay"):
        if k in state.snap:
            snap[k] = state.snap[k]
    facts = dict(state.facts)
    for k in sorted(old):
        _fold(snap, k, facts.pop(k))
    return AccountState(state.account_id, facts, float(c), snap)


def _fact(etype: str, ts: float, data: Any) -> list:
    g = lambda n, d=None: _field(data, n, d)  # noqa: E731
    if etype == "subscription.trial_started":
        return ["t", ts, g("plan"), _ts(g("trial_ends_at"))]
    if etype in ("subscription.started", "subscription.plan_changed"):
        return ["s", ts, g("subscription_id"), g("plan"), int(g("amount_minor")), g("currency"),
                g("interval"), int(g("quantity", 1) or 1)]
    if etype == "subscription.renewed":
        return ["r", ts, g("subscription_id"), int(g("amount_minor")), g("currency"), g("interval")]
    if etype == "subscription.renewal_due":
        return ["d", ts, g("subscription_id"), _ts(g("due_at"))]
    if etype == "subscription.cancelled":
        return ["x", ts, g("subscription_id"), g("reason", "voluntary"), _ts(g("effective_at"))]
    if etype == "subscription.ended":
        return ["e", ts, g("subscription_id")]
    if etype == "subscription.payment":
        return ["p", ts, g("payment_id"), int(g("amount_minor")), g("currency"), g("status")]
    raise ValueError(f"not a subscription event type: {etype!r}")


def apply(
    state: AccountState | None, event: Any, keep_seconds: float = DEFAULT_KEEP_SECONDS
) -> tuple[AccountState, bool]:
    """Record the facts of a subscription event. Pure: never mutates ``state``.

    Returns ``(new_state, True)``, or ``(state, False)`` for a duplicate id. Pass
    ``cfg.keep_seconds`` when the windows are configured longer than the defaults. An event
    older than the compaction point is folded into the snapshot (it is beyond the too-late cutoff
    anyway); its id is not remembered, so such an event is not recognised as a duplicate.
    """
    etype = event.type
    data = event.data
    eid = str(event.id)
    ts = float(event.ts)
    fact = _fact(etype, ts, data)  # raises for other families first
    if state is None:
        acc = _field(data, "account_id") or getattr(event, "subject", None)
        if not acc:
            raise ValueError("subscription event without account_id")
        state = AccountState(str(acc))
    elif state.has_event(eid):
        return state, False
    if state.compacted is not None and ts < state.compacted:
        snap = {"subs": dict(state.snap.get("subs", {}))}
        for k in ("mx", "pay"):
            if k in state.snap:
                snap[k] = state.snap[k]
        _fold(snap, eid, fact)
        return AccountState(state.account_id, state.facts, state.compacted, snap), True
    facts = dict(state.facts)
    facts[eid] = fact
    return compact(AccountState(state.account_id, facts, state.compacted, state.snap), keep_seconds), True
