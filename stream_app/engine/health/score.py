"""The health score of one account at a wall-clock time: four components in 0..1 and their
weighted mean (formulas: docs/metrics.md, Composite), and how long a score stays valid."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from .config import BOTTOM_CATEGORIES, DEFAULT_CONFIG, DIGITS, HealthConfig
from .state import HealthState

# --------------------------------------------------------------------------- score


class HealthScore(NamedTuple):
    total: float | None  # 0..1, None when no component has data
    components: dict[str, float | None]  # usage, support, voice, revenue
    band: str | None  # at_risk | neutral | healthy, None when total is None


def _r(x: float) -> float:
    return round(x, DIGITS)


def _usage(state: HealthState, now: float, cfg: HealthConfig, facts: dict) -> float | None:
    known = active = 0
    sessions = 0.0
    last = None
    for _, ts, sig in state.live("usage"):
        if ts <= now - cfg.usage_known_seconds:
            continue
        known += 1
        la = sig.get("last_active_ts")
        if la is not None:
            last = la if last is None else max(last, la)
            if la > now - cfg.usage_active_seconds:
                active += 1
                # sessions_7d is as of the user's last signal: counted only while the user is active
                sessions += float(sig.get("sessions_7d") or 0)
    facts.update(known_users=known, active_users_7d=active, sessions_7d=int(sessions), last_active_ts=last)
    if known == 0:
        return None
    share = active / known
    intensity = min(1.0, sessions / (known * cfg.usage_session_cap))
    w = cfg.usage_intensity_weight
    return _r((1 - w) * share + w * intensity)


def _support(state: HealthState, now: float, cfg: HealthConfig, facts: dict) -> float | None:
    considered = open_ = breaches = reopened = 0
    recent = now - cfg.support_recent_seconds
    for _, _, sig in state.live("support"):
        created = sig.get("created_ts")
        is_open = bool(sig.get("open"))
        if not is_open and (created is None or created <= recent):
            continue
        considered += 1
        open_ += is_open
        breached = bool(sig.get("first_reply_breached"))
        if not breached and sig.get("first_reply_stopped_ts") is None and created is not None:
            # clock still running: judged at now against the signal's due time, else cfg's target
            due = sig.get("first_reply_due_ts")
            if due is None:
                target = cfg.first_reply_targets.get(sig.get("priority"))
                due = None if target is None else created + target
            breached = due is not None and now > due
        breaches += breached
        lr = sig.get("last_reopen_ts")
        reopened += lr is not None and lr > recent
    facts.update(tickets_considered=considered, open_tickets=open_, first_reply_breaches=breaches,
                 reopened_tickets=reopened)
    if considered == 0:
        return None
    pen = (cfg.support_open_penalty * open_ + cfg.support_breach_penalty * breaches
           + cfg.support_reopen_penalty * reopened)
    return _r(max(0.0, 1.0 - pen))


def _voice(state: HealthState, now: float, cfg: HealthConfig, facts: dict) -> float | None:
    lo = now - cfg.voice_window_seconds
    rs = [(ts, k, sig) for k, ts, sig in state.live("voice") if ts > lo]
    rs.sort(key=lambda r: (r[0], r[1]), reverse=True)
    latest_nps = next((r[2].get("category") for r in rs if r[2].get("kind") == "nps"), None)
    rs = rs[: cfg.voice_max_responses]
    facts.update(responses=len(rs), latest_nps_category=latest_nps,
                 latest_response={"kind": rs[0][2].get("kind"), "category": rs[0][2].get("category"),
                                  "ts": rs[0][0]} if rs else None)
    facts["lowest_sentiment_comments"] = _lowest_comments(state, lo, cfg.voice_comments_shown)
    if not rs:
        return None
    mean = sum(float(r[2]["score"]) for r in rs) / len(rs)
    bottom = sum(1 for r in rs if r[2].get("category") in BOTTOM_CATEGORIES) / len(rs)
    return _r(max(0.0, mean - cfg.voice_bottom_penalty * bottom))


def _lowest_comments(state: HealthState, lo: float, n: int) -> list[dict]:
    """The ``n`` commented responses of the voice window with the lowest sentiment (ties: the
    newer first, then by response id). The text is there only if the voice family keeps it."""
    rs = [(float(sig["sentiment"]), -ts, k, sig) for k, ts, sig in state.live("voice")
          if ts > lo and sig.get("sentiment") is not None]
    rs.sort(key=lambda r: r[:3])
    out = []
    for sent, neg_ts, k, sig in rs[:n]:
        c = {"response_id": k, "ts": -neg_ts, "kind": sig.get("kind"), "category": sig.get("category"),
             "sentiment": sent, "themes": list(sig.get("themes", ()))}
        if sig.get("comment") is not None:
            c["comment"] = sig["comment"]
        out.append(c)
    return out


def _flag(sig: Mapping, *names: str) -> bool:
    return any(bool(sig.get(n)) for n in names)


def _revenue(state: HealthState, now: float, cfg: HealthConfig, facts: dict) -> float | None:
    best = None
    for k, ts, sig in state.live("revenue"):  # one entity (the account); several: the newest
        if best is None or (ts, k) > (best[0], best[1]):
            best = (ts, k, sig)
    if best is None:
        facts.update(mrr=None, churned=None)
        return None
    ts, _, sig = best
    churned = bool(sig.get("churned"))
    contracted = _flag(sig, "contracted_recently", "contracted_30d") and ts > now - cfg.revenue_recent_seconds
    renewal = _flag(sig, "renewal_due_soon", "renewal_due_30d")
    cancel = _flag(sig, "cancel_pending")
    facts.update(mrr=sig.get("mrr"), churned=churned, contracted_recently=contracted,
                 renewal_due_soon=renewal, cancel_pending=cancel)
    if churned:
        return 0.0
    pen = (cfg.revenue_contraction_penalty * contracted + cfg.revenue_renewal_penalty * renewal
           + cfg.revenue_cancel_penalty * cancel)
    return _r(max(0.0, 1.0 - pen))


_COMPONENTS = {"usage": _usage, "support": _support, "voice": _voice, "revenue": _revenue}


def evaluate(state: HealthState, now: float, cfg: HealthConfig | None = None) -> tuple[HealthScore, dict]:
    """The score of an account at ``now`` and the facts behind it (for the lowest-accounts view)."""
    cfg = cfg or DEFAULT_CONFIG
    facts: dict[str, Any] = {}
    comps = {name: fn(state, now, cfg, facts) for name, fn in _COMPONENTS.items()}
    num = den = 0.0
    for name, v in comps.items():
        w = cfg.weights.get(name, 0.0)
        if v is not None and w > 0:
            num += w * v
            den += w
    total = _r(num / den) if den > 0 else None
    return HealthScore(total, comps, cfg.band(total)), facts


# Window edges are computed as ``x + window`` here but compared as ``x <= now - window`` in the
# components: a cached score ends this much early so float rounding cannot outlive it.
_EDGE_MARGIN = 1e-3


def valid_until(state: HealthState, now: float, cfg: HealthConfig | None = None) -> float:
    """The first instant after ``now`` from which :func:`evaluate` of this (unchanged) state may
    differ from its value at ``now``: the nearest window edge or running SLA due time ahead.

    Every comparison with ``now`` in the components has its edge here (conservative: an edge
    that changes nothing only shortens the validity). ``math.inf`` when nothing is ahead.
    """
    cfg = cfg or DEFAULT_CONFIG
    edges: list[float] = []
    add = edges.append
    for _, ts, sig in state.live("usage"):
        add(ts + cfg.usage_known_seconds)  # the user stops being known
        la = sig.get("last_active_ts")
        if la is not None:
            add(la + cfg.usage_active_seconds)  # the user stops being active
    for _, _, sig in state.live("support"):
        created = sig.get("created_ts")
        if created is not None:
            add(created + cfg.support_recent_seconds)  # a closed ticket stops being considered
            if not sig.get("first_reply_breached") and sig.get("first_reply_stopped_ts") is None:
                due = sig.get("first_reply_due_ts")
                if due is None:
                    target = cfg.first_reply_targets.get(sig.get("priority"))
                    due = None if target is None else created + target
                if due is not None:
                    add(due)  # the running first-reply clock breaches
        lr = sig.get("last_reopen_ts")
        if lr is not None:
            add(lr + cfg.support_recent_seconds)  # the reopen stops counting
    for _, ts, _ in state.live("voice"):
        add(ts + cfg.voice_window_seconds)  # the response leaves the window
    for _, ts, _ in state.live("revenue"):
        add(ts + cfg.revenue_recent_seconds)  # a contraction stops counting
    ahead = [e for e in edges if e >= now]
    return min(ahead) - _EDGE_MARGIN if ahead else math.inf


def score(state: HealthState, now: float, cfg: HealthConfig | None = None) -> HealthScore:
    """Score of one account at wall-clock ``now`` (see docs/metrics.md, Composite)."""
    return evaluate(state, now, cfg)[0]
