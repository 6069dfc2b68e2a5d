"""Independent batch computation of the support metrics, written from docs/metrics.md.

It deliberately shares no code with stream_app.engine (no windows, no support internals): it sees
the whole event log at once, dedupes by id, sorts by event time and recomputes every metric at
``now`` as Prometheus samples ``{(sample_name, frozenset(labels.items())): value}`` with zero
samples left out. Label values are used raw (callers keep them under the label caps).

Labels: ticket volumes (created, solved, reopens) carry team, channel and priority; every other
metric team and priority (the series budget of docs/metrics.md).

Events are dicts: {"id", "type", "time" (epoch seconds), "data": {...}}.
Params (plain dict): bucket, volume_windows, windows, edges_first_response, edges_resolution,
edges_handle, targets {priority: (first_reply_s | None, resolution_s | None)}, at_risk,
calendars {team or "*": (tz, weekdays, "HH:MM", "HH:MM")}, ticket_retention (s, 0 or absent =
tickets kept for good) and horizon (longest window + grace); support depth: edges_touches,
edges_reassignments, edges_status_time and backlog_age (thresholds, seconds).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client.utils import floatToGoString

from .common import Samples, by_entity, first_deliveries, time_order, window_name, window_test

P = "stream_app_support_"


def _business_seconds(cal, start, end):
    """Walk [start, end) segment by segment, cutting at local midnight, opening and closing."""
    tzname, weekdays, open_s, close_s = cal
    tz = ZoneInfo(tzname)
    oh, om = map(int, open_s.split(":"))
    ch, cm = map(int, close_s.split(":"))
    total = 0.0
    t = start
    while t < end:
        local = datetime.fromtimestamp(t, tz)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        o = datetime(day.year, day.month, day.day, oh, om, tzinfo=tz).timestamp()
        nxt = day + timedelta(days=1)
        midnight = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp()
        if (ch, cm) == (24, 0):
            c = midnight
        else:
            c = datetime(day.year, day.month, day.day, ch, cm, tzinfo=tz).timestamp()
        if local.weekday() not in weekdays:
            seg_end = midnight
        elif t < o:
            seg_end = o
        elif t < c:
            seg_end = c
            total += min(c, end) - t
        else:
            seg_end = midnight
        t = seg_end
    return total


def _lab(**kw):
    return frozenset(kw.items())


_STATUS_OF = {"ticket.solved": "solved", "ticket.reopened": "open", "ticket.closed": "closed"}


def _ends(life):
    """A life may end when it has no ticket.created, or its latest status (events in (time, id)
    order) is solved or closed."""
    if not any(e["type"] == "ticket.created" for e in life):
        return True
    status = "new"
    for e in life:
        s = e["data"].get("status") if e["type"] == "ticket.status_changed" else _STATUS_OF.get(e["type"])
        if s:
            status = s
    return status in ("solved", "closed")


def _days(seconds):
    return f"{seconds // 86400}d"


def _reassignments(evs, created):
    """Times of the ticket.assigned events (creation on, log order) that move the ticket to
    another team, or from one agent to another."""
    team, agent, out = created["data"]["team"], None, []
    for e in evs:
        if e["type"] != "ticket.assigned" or e["time"] < created["time"]:
            continue
        new_team, new_agent = e["data"]["team"], e["data"].get("agent_id")
        if new_team != team or (agent and new_agent and new_agent != agent):
            out.append(e["time"])
        team, agent = new_team, new_agent
    return out


def _time_in(statuses, start, end, wanted):
    """Seconds of [start, end] in status ``wanted``, walking the (time, status) changes; the
    status is new before the first."""
    total, status, t = 0.0, "new", start
    for ts, s in statuses:
        if ts >= end:
            break
        if ts > t:
            total += (ts - t) if status == wanted else 0.0
            t = ts
        status = s
    if end > t and status == wanted:
        total += end - t
    return total


def compute(events, now, prm):
    g = prm["bucket"]
    log = sorted(first_deliveries(events), key=time_order)
    # Lives (docs/metrics.md, Support, Retention): a solved/closed or incomplete ticket's life
    # ends `ticket_retention` seconds after its newest event; a later event starts a new life,
    # which replaces it (incomplete unless it has a ticket.created). Only a ticket's last life
    # counts: an ended one is forgotten.
    retention = prm.get("ticket_retention") or 0
    tickets = {}
    for tid, evs in by_entity(log, "ticket_id").items():
        life = []
        for e in evs:
            if life and retention and e["time"] > max(x["time"] for x in life) + retention and _ends(life):
                life = []
            life.append(e)
        tickets[tid] = life
    # retained at now: open tickets, and the others until the cutoff a watermark at now gives
    # (bucket_start(now - horizon)) passes the end of their life
    kept_from = math.floor((now - prm.get("horizon", 0)) / g) * g

    def retained(life):
        return not retention or not _ends(life) or max(x["time"] for x in life) + retention >= kept_from

    out = Samples()
    put = out.put
    in_window = window_test(now, g)

    hist_obs = {}  # metric -> list of (labels dict, ts, value)

    def obs(metric, base, ts, value):
        hist_obs.setdefault(metric, []).append((base, ts, value))

    def count(metric, base, ts, windows):
        for w in windows:
            if in_window(ts, w):
                put(P + metric, _lab(**base, window=window_name(w)), 1)

    put(P + "tickets_tracked", _lab(), sum(1 for life in tickets.values() if retained(life)))
    for tid, evs in tickets.items():
        created = [e for e in evs if e["type"] == "ticket.created"]
        if not created:
            if retained(evs):
                put(P + "incomplete_tickets", _lab(), 1)
            continue
        c = created[0]
        C = c["time"]
        team = c["data"]["team"]
        for e in evs:
            if e["type"] == "ticket.assigned" and e["time"] >= C:
                team = e["data"]["team"]
        volume = {"team": team, "channel": c["data"]["channel"], "priority": c["data"]["priority"]}
        base = {"team": team, "priority": volume["priority"]}
        prio = base["priority"]

        statuses = []
        for e in evs:
            s = {
                "ticket.status_changed": e["data"].get("status"),
                "ticket.solved": "solved",
                "ticket.reopened": "open",
                "ticket.closed": "closed",
            }.get(e["type"])
            if s:
                statuses.append((e["time"], s))
        current = statuses[-1][1] if statuses else "new"
        is_done = current in ("solved", "closed")
        solve_times, reopen_times = [], []
        before = "new"
        for t, s in statuses:
            was_done, done = before in ("solved", "closed"), s in ("solved", "closed")
            if done and not was_done:
                solve_times.append(t)
            if was_done and not done:
                reopen_times.append(t)
            before = s

        replies = [e for e in evs if e["type"] == "ticket.replied"]
        agent_public = [
            e["time"] for e in replies
            if e["data"]["author_role"] == "agent" and e["data"].get("public", True)
        ]

        count("tickets_created", volume, C, prm["volume_windows"])
        for t in solve_times:
            count("tickets_solved", volume, t, prm["volume_windows"])
        for t in reopen_times:
            count("reopens", volume, t, prm["volume_windows"])
        if not is_done:
            put(P + "backlog_tickets", _lab(**base, status=current), 1)
            for th in prm["backlog_age"]:
                if now - C > th:
                    put(P + "backlog_age_tickets", _lab(**base, older_than=_days(th)), 1)
            k = (P + "oldest_unsolved_ticket_created_timestamp_seconds", _lab(**base))
            out[k] = min(out.get(k, C), C)

        if agent_public:
            r = agent_public[0]
            obs("first_response_seconds", base, r, max(0.0, r - C))
            cal = prm["calendars"].get(team, prm["calendars"].get("*"))
            if cal:
                obs("first_response_business_seconds", base, r, _business_seconds(cal, C, r))

        pending_since = None
        for e in replies:
            role, public = e["data"]["author_role"], e["data"].get("public", True)
            if role == "customer" and pending_since is None:
                pending_since = e["time"]
            elif role == "agent" and public and pending_since is not None:
                obs("response_seconds", base, e["time"], max(0.0, e["time"] - pending_since))
                pending_since = None

        if solve_times:
            F = solve_times[0]
            obs("first_resolution_seconds", base, F, max(0.0, F - C))
            count("first_solved_tickets", base, F, prm["windows"])
            if len([t for t in agent_public if t <= F]) <= 1 and not reopen_times:
                count("first_contact_resolved_tickets", base, F, prm["windows"])
        L = solve_times[-1] if (is_done and solve_times) else None
        if L is not None:
            obs("full_resolution_seconds", base, L, max(0.0, L - C))
            # requester wait: integrate the status timeline over [C, L]
            wait = 0.0
            marks = sorted({C, L} | {t for t, _ in statuses if C < t < L}) if L > C else []
            for a, b in zip(marks, marks[1:]):
                status_at = "new"
                for t, s in statuses:  # status in force during [a, b): last transition at or before a
                    if t <= a:
                        status_at = s
                if status_at in ("new", "open", "on_hold"):
                    wait += b - a
            obs("requester_wait_seconds", base, L, wait)
            spent = [
                e["data"].get("time_spent_seconds") for e in evs
                if e["type"] in ("ticket.replied", "ticket.solved")
                and e["data"].get("time_spent_seconds") is not None
            ]
            if spent:
                obs("handle_time_seconds", base, L, float(sum(spent)))
            # support depth, every solved ticket up to its last solve
            obs("agent_touches", base, L, sum(1 for t in agent_public if t <= L))
            obs("reassignments", base, L, sum(1 for t in _reassignments(evs, c) if t <= L))
            obs("on_hold_seconds", base, L, _time_in(statuses, C, L, "on_hold"))
            obs("agent_wait_seconds", base, L, _time_in(statuses, C, L, "pending"))

        targets = prm["targets"].get(prio)
        if targets:
            fr_target, res_target = targets
            firsts = ([agent_public[0]] if agent_public else []) + solve_times[:1]
            for kind, target, stop in (
                ("first_reply", fr_target, min(firsts) if firsts else None),
                ("resolution", res_target, L),
            ):
                if target is None:
                    continue
                lab = dict(base, target=kind)
                deadline = C + target
                breached = (stop - C > target) if stop is not None else (now - C > target)
                if breached:
                    count("sla_breaches", lab, deadline, prm["windows"])
                if stop is None:
                    if now - C > target:
                        put(P + "sla_breached_tickets", _lab(**lab), 1)
                    elif now - C >= prm["at_risk"] * target:
                        put(P + "sla_at_risk_tickets", _lab(**lab), 1)

    edges = {
        "first_response_seconds": prm["edges_first_response"],
        "first_response_business_seconds": prm["edges_first_response"],
        "response_seconds": prm["edges_first_response"],
        "first_resolution_seconds": prm["edges_resolution"],
        "full_resolution_seconds": prm["edges_resolution"],
        "requester_wait_seconds": prm["edges_resolution"],
        "handle_time_seconds": prm["edges_handle"],
        "agent_touches": prm["edges_touches"],
        "reassignments": prm["edges_reassignments"],
        "on_hold_seconds": prm["edges_status_time"],
        "agent_wait_seconds": prm["edges_status_time"],
    }
    for metric, rows in hist_obs.items():
        for w in prm["windows"]:
            for base, ts, v in rows:
                if not in_window(ts, w):
                    continue
                lab = dict(base, window=window_name(w))
                for e in edges[metric]:
                    if v <= e:
                        put(P + metric + "_bucket", _lab(**lab, le=floatToGoString(e)), 1)
                put(P + metric + "_bucket", _lab(**lab, le="+Inf"), 1)
                put(P + metric + "_gcount", _lab(**lab), 1)
                put(P + metric + "_gsum", _lab(**lab), v)
    return out
