"""Independent batch computation of the product usage metrics, written from docs/metrics.md.

No code shared with stream_app.engine: it sees the whole event log at once, dedupes by id, sorts by
event time, groups events by user and session and counts distinct users directly (sets of users
per window), not through the last-activity trick the engine uses. Samples are returned as
``{(sample_name, frozenset(labels.items())): value}`` with zero samples left out; label values are
raw (callers keep them under the label caps).

Events are dicts: {"id", "type", "time" (epoch seconds), "data": {...}} with data.user_id.
Params (plain dict): bucket, active_windows, session_windows, feature_windows, known_seconds,
idle, adoption, edges.

Event times are floored to whole seconds first (the documented resolution of usage metrics).

Exactness note: the engine counts a user in a window when its *last* activity is in it; this
module counts a user when *any* activity is in it. The two agree when ``now`` is at or after
every event time, which is how the tests call it (a live worker reads at now >= event times).
"""

from __future__ import annotations

import math

from prometheus_client.utils import floatToGoString

from .common import Samples, by_entity, first_deliveries, time_order, window_name, window_test

P = "stream_app_usage_"
CLIENTS = ("web", "desktop", "ios", "android", "api")
ACTIVITY = ("activity.login", "activity.heartbeat", "activity.feature_used", "activity.logout")


def compute(events, now, prm):
    log = sorted((dict(e, time=math.floor(e["time"])) for e in first_deliveries(events)), key=time_order)
    out = Samples()
    put = out.put
    in_window = window_test(now, prm["bucket"])

    users = by_entity(log, "user_id")
    # retained at now: until the cutoff a watermark at now gives passes the user's newest event
    kept_from = math.floor((now - prm.get("horizon", math.inf)) / prm["bucket"]) * prm["bucket"]
    put(P + "users_tracked", {}, sum(1 for evs in users.values() if max(e["time"] for e in evs) >= kept_from))

    # distinct sets per (metric, labels, window)
    distinct = {}

    def mark(metric, labels, key, ts, windows):
        for w in windows:
            if in_window(ts, w):
                distinct.setdefault((metric, tuple(sorted(labels.items())), w), set()).add(key)

    durations = []  # (client, end ts, seconds)
    for uid, evs in users.items():
        acts = [e for e in evs if e["type"] in ACTIVITY]
        signups = [e["time"] for e in evs if e["type"] == "activity.signed_up"]
        for e in evs:
            mark("known_users", {}, uid, e["time"], (prm["known_seconds"],))
        for e in acts:
            mark("active_users", {}, uid, e["time"], prm["active_windows"])
            if e["type"] == "activity.feature_used":
                f = e["data"]["feature"]
                mark("feature_users", {"feature": f}, uid, e["time"], prm["feature_windows"])
                mark("user_feature_pairs", {}, (uid, f), e["time"], prm["feature_windows"])
        if signups:
            su = min(signups)
            for w in prm["active_windows"]:
                if in_window(su, w):
                    put(P + "signups", {"window": window_name(w)}, 1)
                    if acts and min(e["time"] for e in acts) <= su + prm["adoption"]:
                        put(P + "adopted_signups", {"window": window_name(w)}, 1)

        sessions = {}
        for e in acts:
            sid = e["data"].get("session_id")
            if sid:
                sessions.setdefault(sid, []).append(e)
        for sid, sevs in sessions.items():
            first, last = sevs[0]["time"], sevs[-1]["time"]
            logins = {e["data"].get("client", "web") for e in sevs if e["type"] == "activity.login"}
            known = sorted(c for c in logins if c in CLIENTS)
            client = known[0] if known else "other"
            for w in prm["session_windows"]:
                if in_window(first, w):
                    put(P + "sessions_started", {"client": client, "window": window_name(w)}, 1)
            logged_out = any(e["type"] == "activity.logout" for e in sevs)
            if logged_out or now - last > prm["idle"]:
                durations.append((client, last, last - first))
            else:
                put(P + "open_sessions", {"client": client}, 1)
            # activity of this session counts for every client it was logged in from
            for c in logins:
                lab = {"client": c if c in CLIENTS else "other"}
                for e in sevs:
                    mark("client_active_users", lab, uid, e["time"], prm["active_windows"])

    # lifecycle per UTC day and Monday-start week; power users over the last 7 / 28 UTC days
    today = math.floor(now / 86400)
    week = lambda day: (day + 3) // 7  # noqa: E731 - 1970-01-01 (day 0) was a Thursday
    for uid, evs in users.items():
        days = {math.floor(e["time"] / 86400) for e in evs if e["type"] in ACTIVITY}
        if not days:
            continue
        for period, unit, p in (("current_day", lambda d: d, today), ("previous_day", lambda d: d, today - 1),
                                ("current_week", week, week(today)), ("previous_week", week, week(today) - 1)):
            active = {unit(d) for d in days}
            if p in active:
                status = "new" if unit(min(days)) == p else "current" if p - 1 in active else "resurrected"
            elif p - 1 in active:
                status = "dormant"
            else:
                continue
            put(P + "lifecycle_users", {"period": period, "status": status}, 1)
        for n in (7, 28):
            k = len({d for d in days if today - n < d <= today})
            if k:
                put(P + "power_users", {"window": f"{n}d", "days": str(k)}, 1)

    for (metric, labels, w), members in distinct.items():
        put(P + metric, dict(labels, window=window_name(w)), len(members))

    for client, end, v in durations:
        for w in prm["session_windows"]:
            if not in_window(end, w):
                continue
            lab = {"client": client, "window": window_name(w)}
            for edge in prm["edges"]:
                if v <= edge:
                    put(P + "session_duration_seconds_bucket", dict(lab, le=floatToGoString(edge)), 1)
            put(P + "session_duration_seconds_bucket", dict(lab, le="+Inf"), 1)
            put(P + "session_duration_seconds_gcount", lab, 1)
            put(P + "session_duration_seconds_gsum", lab, v)
    return out
