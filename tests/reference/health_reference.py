"""Independent batch computation of the customer-health scores, written from docs/metrics.md.

No code shared with stream_app.engine: it sees the whole list of signal messages at once. Per
account and per (source, entity) the message with the greatest ts wins (equal ts: a deletion if
there is one, else the one later in the list); the winner is dropped if it is a deletion (signal
None) or older than the account's newest ts minus the source's retention. Scores are recomputed at ``now`` with exact fractions and
rounded to 12 decimals (as documented), then published as Prometheus samples
``{(sample_name, frozenset(labels.items())): value}`` with zero samples left out.

Messages are dicts {"account_id", "source", "entity", "ts", "signal": dict | None}.
Params (plain dict): weights, at_risk_below, healthy_from, usage_active, usage_known, session_cap,
intensity_weight, support_recent, pen_open, pen_breach, pen_reopen, targets {priority: s|None},
voice_window, voice_n, pen_bottom, revenue_recent, pen_contraction, pen_renewal, pen_cancel,
retention {source: s|None}, edges.
"""

from __future__ import annotations

from fractions import Fraction as F

P = "stream_app_health_"
BOTTOM = {"detractor", "dissatisfied", "difficult"}
COMPONENTS = ("usage", "support", "voice", "revenue")


def _fr(x):
    return F(x) if not isinstance(x, F) else x


def _round(x):
    return round(float(x), 12)


def latest_signals(messages, prm):
    """{account: {source: {entity: (ts, signal)}}} after the newest-wins and retention rules."""
    accounts = {}
    for m in messages:
        acc = m["account_id"]
        a = accounts.setdefault(acc, {"hw": None, "win": {}})
        ts = float(m["ts"])
        a["hw"] = ts if a["hw"] is None else max(a["hw"], ts)
        key = (m["source"], str(m["entity"]))
        best = a["win"].get(key)
        sig = None if m["signal"] is None else {k: v for k, v in m["signal"].items() if k != "account_id"}
        # a later message with the same ts wins, unless the kept one is a deletion
        if best is None or ts > best[0] or (ts == best[0] and best[1] is not None):
            a["win"][key] = (ts, sig)
    out = {}
    for acc, a in accounts.items():
        per = {s: {} for s in COMPONENTS}
        for (src, ent), (ts, sig) in a["win"].items():
            keep = prm["retention"].get(src)
            if sig is None or (keep is not None and ts < a["hw"] - keep):
                continue
            per[src][ent] = (ts, sig)
        out[acc] = per
    return out


def usage_component(users, now, prm):
    """Known users: newest event within usage_known. Active: last active within usage_active.
    usage = (1 - w) * active / known + w * min(1, sessions of active users / (known * cap))."""
    known = [s for ts, s in users.values() if ts > now - prm["usage_known"]]
    if not known:
        return None
    since = now - prm["usage_active"]
    active = [s for s in known if s.get("last_active_ts") is not None and s["last_active_ts"] > since]
    sessions = sum(_fr(s.get("sessions_7d") or 0) for s in active)
    w = _fr(prm["intensity_weight"])
    intensity = min(F(1), sessions / (len(known) * _fr(prm["session_cap"])))
    return (1 - w) * F(len(active), len(known)) + w * intensity


def support_component(tickets, now, prm):
    """Open tickets and tickets created within support_recent; 1 - penalties, floored at 0."""
    recent = now - prm["support_recent"]
    n = n_open = n_breach = n_reopen = 0
    for _, s in tickets.values():
        if not s["open"] and not (s["created_ts"] is not None and s["created_ts"] > recent):
            continue
        n += 1
        if s["open"]:
            n_open += 1
        breach = s["first_reply_breached"]
        if not breach and s.get("first_reply_stopped_ts") is None:
            due = s.get("first_reply_due_ts")
            if due is None and prm["targets"].get(s["priority"]) is not None:
                due = s["created_ts"] + prm["targets"][s["priority"]]
            breach = due is not None and now > due
        if breach:
            n_breach += 1
        if s.get("last_reopen_ts") is not None and s["last_reopen_ts"] > recent:
            n_reopen += 1
    if n == 0:
        return None
    pen = _fr(prm["pen_open"]) * n_open + _fr(prm["pen_breach"]) * n_breach + _fr(prm["pen_reopen"]) * n_reopen
    return max(F(0), 1 - pen)


def voice_component(responses, now, prm):
    """The latest voice_n responses within voice_window (by ts, then entity key, newest first):
    mean score minus pen_bottom times the share in the bottom category, floored at 0."""
    rs = sorted(((ts, e, s) for e, (ts, s) in responses.items() if ts > now - prm["voice_window"]),
                key=lambda r: (r[0], r[1]), reverse=True)[: prm["voice_n"]]
    if not rs:
        return None
    mean = sum(_fr(s["score"]) for _, _, s in rs) / len(rs)
    bottom = F(sum(1 for _, _, s in rs if s["category"] in BOTTOM), len(rs))
    return max(F(0), mean - _fr(prm["pen_bottom"]) * bottom)


def revenue_component(accounts, now, prm):
    """Churned: 0. Else 1 - contraction (signal newer than revenue_recent) - renewal due - cancel."""
    if not accounts:
        return None
    ts, s = max(((ts, e, s) for e, (ts, s) in accounts.items()), key=lambda r: (r[0], r[1]))[::2]
    if s.get("churned"):
        return F(0)
    pen = F(0)
    if (s.get("contracted_recently") or s.get("contracted_30d")) and ts > now - prm["revenue_recent"]:
        pen += _fr(prm["pen_contraction"])
    if s.get("renewal_due_soon") or s.get("renewal_due_30d"):
        pen += _fr(prm["pen_renewal"])
    if s.get("cancel_pending"):
        pen += _fr(prm["pen_cancel"])
    return max(F(0), 1 - pen)


def scores(messages, now, prm):
    """{account: (total | None, {component: value | None}, band | None)}."""
    fns = {"usage": usage_component, "support": support_component, "voice": voice_component,
           "revenue": revenue_component}
    out = {}
    for acc, per in latest_signals(messages, prm).items():
        comps = {}
        for c in COMPONENTS:
            v = fns[c](per[c], now, prm)
            comps[c] = None if v is None else _round(v)
        present = [(F(prm["weights"][c]), F(v)) for c, v in comps.items()
                   if v is not None and prm["weights"].get(c, 0) > 0]
        wsum = sum(w for w, _ in present)
        total = _round(sum(w * v for w, v in present) / wsum) if present else None
        if total is None:
            band = None
        elif total < prm["at_risk_below"]:
            band = "at_risk"
        elif total < prm["healthy_from"]:
            band = "neutral"
        else:
            band = "healthy"
        out[acc] = (total, comps, band)
    return out


def _hist(out, name, labels, values, edges):
    for e in edges:
        n = sum(1 for v in values if v <= e)
        if n:
            out[(name + "_bucket", frozenset({**labels, "le": f"{float(e)}"}.items()))] = n
    if values:
        out[(name + "_bucket", frozenset({**labels, "le": "+Inf"}.items()))] = len(values)
        out[(name + "_gcount", frozenset(labels.items()))] = len(values)
    s = sum(values)
    if s:
        out[(name + "_gsum", frozenset(labels.items()))] = s


def compute(messages, now, prm):
    sc = scores(messages, now, prm)
    out = {}
    totals = [t for t, _, _ in sc.values() if t is not None]
    for band in ("at_risk", "neutral", "healthy"):
        n = sum(1 for _, _, b in sc.values() if b == band)
        if n:
            out[(P + "accounts", frozenset({"band": band}.items()))] = n
    if totals:
        out[(P + "accounts_scored", frozenset())] = len(totals)
    if sc:
        out[(P + "accounts_tracked", frozenset())] = len(sc)
    _hist(out, P + "score", {}, totals, prm["edges"])
    for c in COMPONENTS:
        _hist(out, P + "component_score", {"component": c},
              [comps[c] for _, comps, _ in sc.values() if comps[c] is not None], prm["edges"])
    return out
