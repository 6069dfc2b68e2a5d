#!/usr/bin/env python3
"""Builds the Grafana boards in deploy/grafana/dashboards/ from code.

    python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    python deploy/grafana/build_dashboards.py --check  # exit 1 if they are out of date

The JSON files are this script's committed output (Grafana provisions them from
disk); tests/unit/tools/test_dashboards.py fails when they differ from what it builds.
Code rather than hand-written JSON so every board shares one datasource uid, one
layout rule, the same variables and the alert annotation, and so SLA compliance
queries follow the default SLA targets in stream_app.config (bucket edges are the
targets): regenerate after changing those defaults.

Queries use the raw metrics documented in docs/metrics.md, summed across workers
before dividing (each worker exposes only the partitions it owns).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "stream-app-prometheus"}
# Alert rules of deploy/prometheus/rules/ are named StreamApp*; Prometheus keeps
# their state in the synthetic ALERTS series.
ALERTS_EXPR = 'ALERTS{alertstate="firing", alertname=~"StreamApp.*"}'
# Default SLA targets, priority -> (first reply s, resolution s): duplicated from
# stream_app.config when the package is importable, so the boards follow the code.
_FALLBACK_SLA = {"urgent": (1800, 14400), "high": (3600, 28800), "normal": (14400, 86400), "low": (86400, 259200)}
PRIORITIES = ("urgent", "high", "normal", "low")


def sla_targets() -> dict[str, tuple[float | None, float | None]]:
    try:
        from stream_app.config import Settings
    except ImportError:  # building without the package installed
        return dict(_FALLBACK_SLA)
    default = Settings.model_fields["support_sla_targets"].default
    return {p: tuple(t) for p, t in default.items()}


def go_float(value: float) -> str:
    """The `le` label value prometheus_client writes for a bucket edge (1800 -> "1800.0")."""
    return repr(float(value))


# --------------------------------------------------------------------------- panels


def target(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, fmt: str = "time_series") -> dict:
    t: dict[str, Any] = {
        "refId": ref,
        "datasource": dict(DATASOURCE),
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }
    if fmt != "time_series":
        t["format"] = fmt
    return t


def _targets(queries: list[tuple[str, str]], instant: bool = False, fmt: str = "time_series") -> list[dict]:
    return [
        target(expr, legend, ref=chr(ord("A") + i), instant=instant, fmt=fmt)
        for i, (expr, legend) in enumerate(queries)
    ]


def _field_defaults(unit: str, decimals: int | None, minimum: float | None, maximum: float | None,
                    steps: list[tuple[str, float | None]] | None, mappings: list | None) -> dict:
    d: dict[str, Any] = {"unit": unit}
    if decimals is not None:
        d["decimals"] = decimals
    if minimum is not None:
        d["min"] = minimum
    if maximum is not None:
        d["max"] = maximum
    d["thresholds"] = {
        "mode": "absolute",
        "steps": [{"color": c, "value": v} for c, v in (steps or [("green", None)])],
    }
    d["mappings"] = mappings or []
    return d


def timeseries(title: str, queries: list[tuple[str, str]], *, unit: str = "short", description: str = "",
               minimum: float | None = None, maximum: float | None = None, stack: bool = False,
               w: int = 12, h: int = 8) -> dict:
    defaults = _field_defaults(unit, None, minimum, maximum, None, None)
    defaults["custom"] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10 if not stack else 40,
        "showPoints": "never",
        "spanNulls": True,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": _targets(queries),
        "_size": (w, h),
    }


def stat(title: str, queries: list[tuple[str, str]], *, unit: str = "short", description: str = "",
         decimals: int | None = None, steps: list[tuple[str, float | None]] | None = None,
         mappings: list | None = None, text_mode: str = "auto", w: int = 4, h: int = 4) -> dict:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "fieldConfig": {"defaults": _field_defaults(unit, decimals, None, None, steps, mappings), "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "textMode": text_mode,
            "orientation": "auto",
        },
        "targets": _targets(queries),
        "_size": (w, h),
    }


def bargauge(title: str, queries: list[tuple[str, str]], *, unit: str = "short", description: str = "",
             fmt: str = "time_series", minimum: float | None = 0, maximum: float | None = None,
             steps: list[tuple[str, float | None]] | None = None, mappings: list | None = None,
             w: int = 12, h: int = 8) -> dict:
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": dict(DATASOURCE),
        "fieldConfig": {"defaults": _field_defaults(unit, None, minimum, maximum, steps, mappings), "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
            "valueMode": "color",
        },
        "targets": _targets(queries, instant=True, fmt=fmt),
        "_size": (w, h),
    }


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def text(title: str, content: str, *, w: int = 24, h: int = 3) -> dict:
    return {"type": "text", "title": title, "options": {"mode": "markdown", "content": content}, "_size": (w, h)}


def query_var(name: str, label: str, query: str, *, multi: bool = True, default: str | None = None) -> dict:
    """A variable filled by label_values(); multi-select ones match everything with `.*` on All."""
    v: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": dict(DATASOURCE),
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
        "definition": query,
        "refresh": 2,  # on time range change: new teams/plans appear without a reload
        "sort": 1,
        "regex": "",
        "hide": 0,
        "multi": multi,
        "includeAll": multi,
        "options": [],
    }
    if multi:
        v["allValue"] = ".*"
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        v["current"] = {"selected": True, "text": default, "value": default}
    return v


def layout(panels: list[dict]) -> list[dict]:
    """Left to right, wrapping at 24 columns; a row always starts a new line. Ids in order."""
    out, x, y, line_h = [], 0, 0, 0
    for pid, panel in enumerate(panels, start=1):
        w, h = panel.pop("_size")
        if panel["type"] == "row" or x + w > 24:
            x, y, line_h = 0, y + line_h, 0
        panel = {"id": pid, **panel, "gridPos": {"x": x, "y": y, "w": w, "h": h}}
        x += w
        line_h = max(line_h, h)
        if panel["type"] == "row":
            x, y, line_h = 0, y + h, 0
        out.append(panel)
    return out


def dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict], *,
              time_from: str = "now-6h", refresh: str = "30s") -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["stream_app"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "links": [
            {"type": "dashboards", "tags": ["stream_app"], "asDropdown": True, "title": "stream_app boards",
             "includeVars": False, "keepTime": True},
        ],
        "templating": {"list": variables},
        "annotations": {
            "list": [
                {
                    "name": "Alerts firing",
                    "datasource": dict(DATASOURCE),
                    "enable": True,
                    "hide": False,
                    "iconColor": "red",
                    "expr": ALERTS_EXPR,
                    "step": "60s",
                    "titleFormat": "{{alertname}}",
                    "textFormat": "{{alertname}} ({{severity}}) firing",
                    "tagKeys": "alertname,severity",
                    "useValueForTime": False,
                }
            ]
        },
        "panels": layout(panels),
    }


PERCENT = dict(unit="percentunit", minimum=0, maximum=1)
RED_BELOW_1 = [("red", None), ("green", 1)]

# --------------------------------------------------------------------------- boards


def support_board() -> dict:
    # Ticket volumes carry team, channel and priority; every other support series team and
    # priority (docs/metrics.md, series budget): the channel filter applies to volume panels.
    s = 'team=~"$team", priority=~"$priority"'
    sw = s + ', window="$window"'
    vw = 'team=~"$team", channel=~"$channel", priority=~"$priority", window="$window"'
    m = "stream_app_support_"
    targets = sla_targets()

    def compliance(hist: str, which: int) -> tuple[str, str]:
        """Share of tickets within their priority's target: per priority, the bucket at the
        target (an edge by construction) over the count; `or` unions the priorities."""
        parts = [
            f'sum by (priority) ({m}{hist}_bucket{{{sw}, priority="{p}", le="{go_float(t[which])}"}})'
            for p, t in targets.items()
            if t[which] is not None
        ]
        return (
            f"({' or '.join(parts)})\n  / sum by (priority) ({m}{hist}_gcount{{{sw}}})",
            "{{priority}}",
        )

    def compliance_all(hist: str, which: int) -> str:
        parts = [
            f'{m}{hist}_bucket{{{sw}, priority="{p}", le="{go_float(t[which])}"}}'
            for p, t in targets.items()
            if t[which] is not None
        ]
        return f"sum({' or '.join(parts)})\n  / sum({m}{hist}_gcount{{{sw}}})"

    def quantiles(hist: str) -> list[tuple[str, str]]:
        return [
            (f"histogram_quantile({q}, sum by (le) ({m}{hist}_bucket{{{sw}}}))", f"p{int(q * 100)}")
            for q in (0.5, 0.9)
        ]

    target_text = ", ".join(
        f"{p} {int(t[0]) // 60} min / {int(t[1]) // 3600} h" for p, t in targets.items() if None not in t
    )
    panels = [
        row("Backlog now"),
        stat("Open tickets", [(f"sum({m}backlog_tickets{{{s}}})", "open")],
             description="Tickets whose current status is not solved/closed."),
        stat("Oldest unsolved ticket", [(f"time() - min({m}oldest_unsolved_ticket_created_timestamp_seconds{{{s}}})", "age")],
             unit="s", steps=[("green", None), ("orange", 86400), ("red", 259200)]),
        stat("Tickets at SLA risk", [(f"sum({m}sla_at_risk_tickets{{{s}}})", "at risk")],
             description="Running SLA clocks past the at-risk fraction of their target, not yet breached.",
             steps=[("green", None), ("orange", 1)]),
        stat("Tickets past SLA", [(f"sum({m}sla_breached_tickets{{{s}}})", "breached")],
             description="Running SLA clocks already past their target (unanswered / unresolved and late).",
             steps=[("green", None), ("red", 1)]),
        stat("First-reply SLA compliance ($window)", [(compliance_all("first_response_seconds", 0), "compliance")],
             unit="percentunit", decimals=1, steps=[("red", None), ("orange", 0.8), ("green", 0.95)],
             description=f"Tickets first answered within their priority's target ({target_text})."),
        stat("Incomplete tickets", [(f"sum({m}incomplete_tickets)", "incomplete")],
             description="Tickets with events but no ticket.created yet (all teams)."),
        timeseries("Backlog by status", [(f"sum by (status) ({m}backlog_tickets{{{s}}})", "{{status}}")],
                   stack=True, w=8),
        timeseries("Backlog by priority", [(f"sum by (priority) ({m}backlog_tickets{{{s}}})", "{{priority}}")],
                   stack=True, w=8),
        timeseries("Backlog by team", [(f"sum by (team) ({m}backlog_tickets{{{s}}})", "{{team}}")],
                   stack=True, w=8),
        timeseries("Backlog older than 1 / 3 / 7 days",
                   [(f"sum by (older_than) ({m}backlog_age_tickets{{{s}}})", "older than {{older_than}}")],
                   description="Tickets not solved/closed whose age (now - creation) is above 1, 3, 7 days "
                               "(cumulative: a ticket older than 7 d is in all three).", w=12),
        bargauge("Backlog older than 3 days by team and priority",
                 [(f'sum by (team, priority) ({m}backlog_age_tickets{{{s}, older_than="3d"}})', "{{team}} {{priority}}")],
                 steps=[("green", None), ("orange", 1), ("red", 10)], w=12),
        row("First response ($window window)"),
        timeseries("First response time p50 / p90", quantiles("first_response_seconds"), unit="s",
                   description="Creation to first agent public reply, tickets answered in the window."),
        timeseries("First-reply SLA compliance by priority", [compliance("first_response_seconds", 0)],
                   description=f"Share answered within target ({target_text}).", **PERCENT),
        timeseries("First response time p90 by team",
                   [(f"histogram_quantile(0.9, sum by (team, le) ({m}first_response_seconds_bucket{{{sw}}}))", "{{team}}")],
                   unit="s"),
        timeseries("Mean response time, every exchange, by priority",
                   [(f"sum by (priority) ({m}response_seconds_gsum{{{sw}}})\n  / sum by (priority) ({m}response_seconds_gcount{{{sw}}})",
                     "{{priority}}")],
                   unit="s", description="Earliest unanswered customer message to the next agent public reply."),
        row("Resolution ($window window)"),
        timeseries("Full resolution time p50 / p90", quantiles("full_resolution_seconds"), unit="s",
                   description="Creation to last solve, tickets currently resolved, by solve time."),
        timeseries("Resolution SLA compliance by priority", [compliance("full_resolution_seconds", 1)], **PERCENT),
        timeseries("First contact resolution and reopen rate", [
            (f"sum({m}first_contact_resolved_tickets{{{sw}}})\n  / sum({m}first_solved_tickets{{{sw}}})", "FCR"),
            (f"sum({m}reopens{{{vw}}})\n  / sum({m}tickets_solved{{{vw}}})", "reopen rate"),
        ], description="The reopen rate follows the channel filter too (ticket volumes).", **PERCENT),
        timeseries("Requester wait and handle time (mean)", [
            (f"sum({m}requester_wait_seconds_gsum{{{sw}}})\n  / sum({m}requester_wait_seconds_gcount{{{sw}}})",
             "requester wait"),
            (f"sum({m}handle_time_seconds_gsum{{{sw}}})\n  / sum({m}handle_time_seconds_gcount{{{sw}}})",
             "handle time (AHT)"),
        ], unit="s"),
        row("Depth: touches, reassignments, on-hold and pending ($window window, tickets solved)"),
        timeseries("One- / two- / multi-touch resolutions", [
            (f'sum({m}agent_touches_bucket{{{sw}, le="1.0"}}) - sum({m}agent_touches_bucket{{{sw}, le="0.0"}})',
             "one-touch"),
            (f'sum({m}agent_touches_bucket{{{sw}, le="2.0"}}) - sum({m}agent_touches_bucket{{{sw}, le="1.0"}})',
             "two-touch"),
            (f'sum({m}agent_touches_gcount{{{sw}}}) - sum({m}agent_touches_bucket{{{sw}, le="2.0"}})',
             "multi-touch"),
            (f'sum({m}agent_touches_bucket{{{sw}, le="0.0"}})', "no public reply"),
        ], stack=True, w=8,
            description="Tickets currently solved/closed, by agent public replies up to their last solve."),
        timeseries("Reassignments per solved ticket, by team", [
            (f"sum by (team) ({m}reassignments_gsum{{{sw}}})\n  / sum by (team) ({m}reassignments_gcount{{{sw}}})",
             "{{team}}"),
        ], w=8,
            description="Moves to another team, or from one agent to another, up to the last solve (mean)."),
        timeseries("On-hold and agent wait (pending) time (mean)", [
            (f"sum({m}on_hold_seconds_gsum{{{sw}}})\n  / sum({m}on_hold_seconds_gcount{{{sw}}})", "on hold"),
            (f"sum({m}agent_wait_seconds_gsum{{{sw}}})\n  / sum({m}agent_wait_seconds_gcount{{{sw}}})",
             "agent wait (pending)"),
        ], unit="s", w=8, description="Per ticket solved in the window, from creation to its last solve."),
        row("SLA breaches and tickets at risk"),
        timeseries("SLA breaches by target ($window)",
                   [(f"sum by (target) ({m}sla_breaches{{{sw}}})", "{{target}}")],
                   description="Breaches counted at the moment the target passed, in the window.", w=8),
        bargauge("SLA breaches by team ($window)", [(f"sum by (team) ({m}sla_breaches{{{sw}}})", "{{team}}")],
                 steps=[("green", None), ("orange", 1), ("red", 10)], w=8),
        timeseries("Tickets at risk / past due now, by priority", [
            (f"sum by (priority, target) ({m}sla_at_risk_tickets{{{s}}})", "{{priority}} {{target}} at risk"),
            (f"sum by (priority, target) ({m}sla_breached_tickets{{{s}}})", "{{priority}} {{target}} past due"),
        ], w=8),
        row("Volume ($window window, filtered by channel too)"),
        timeseries("Tickets created by team", [(f"sum by (team) ({m}tickets_created{{{vw}}})", "{{team}}")], w=8),
        timeseries("Tickets solved by team", [(f"sum by (team) ({m}tickets_solved{{{vw}}})", "{{team}}")], w=8),
        bargauge("Created vs solved by channel", [
            (f"sum by (channel) ({m}tickets_created{{{vw}}})", "{{channel}} created"),
            (f"sum by (channel) ({m}tickets_solved{{{vw}}})", "{{channel}} solved"),
        ], w=8),
    ]
    variables = [
        query_var("team", "Team", f"label_values({m}tickets_created, team)"),
        query_var("channel", "Channel (volumes)", f"label_values({m}tickets_created, channel)"),
        query_var("priority", "Priority", f"label_values({m}tickets_created, priority)"),
        query_var("window", "Window", f"label_values({m}first_response_seconds_gcount, window)",
                  multi=False, default="24h"),
    ]
    return dashboard(
        "stream-app-support", "stream_app / Support operations",
        "Backlog and its age, first response and resolution times, touches, reassignments, on-hold "
        "and pending time, SLA compliance, breaches, tickets at risk and volume, by team and priority; "
        "ticket volumes by channel too.",
        panels, variables,
    )


def usage_board() -> dict:
    m = "stream_app_usage_"
    c = 'client=~"$client"'
    cw = c + ', window="$window"'

    def au(window: str) -> str:
        return f'sum({m}active_users{{window="{window}"}})'

    panels = [
        row("Active users"),
        stat("DAU", [(au("24h"), "DAU")], description="Distinct users active in the last 24 h (exact)."),
        stat("WAU", [(au("7d"), "WAU")]),
        stat("MAU", [(au("30d"), "MAU")]),
        stat("Stickiness (DAU / MAU)", [(f"{au('24h')} / {au('30d')}", "DAU/MAU")], unit="percentunit", decimals=1),
        stat("Active user rate", [(f'{au("30d")}\n  / sum({m}known_users{{window="90d"}})', "MAU / known")],
             unit="percentunit", decimals=1, description="Monthly actives among users known in the last 90 days."),
        stat("Open sessions", [(f"sum({m}open_sessions{{{c}}})", "open")],
             description="Sessions without logout whose last event is within the idle timeout."),
        timeseries("DAU / WAU / MAU", [(f"sum by (window) ({m}active_users)", "{{window}}")]),
        timeseries("Stickiness", [
            (f"{au('24h')} / {au('30d')}", "DAU / MAU"),
            (f"{au('24h')} / {au('7d')}", "DAU / WAU"),
            (f"{au('7d')} / {au('30d')}", "WAU / MAU"),
        ], **PERCENT),
        timeseries("Daily active users by client",
                   [(f'sum by (client) ({m}client_active_users{{{c}, window="24h"}})', "{{client}}")],
                   description="A user active on two clients counts in both: do not add the lines up.", w=8),
        timeseries("Open sessions by client", [(f"sum by (client) ({m}open_sessions{{{c}}})", "{{client}}")],
                   stack=True, w=8),
        timeseries("Sessions per daily active user", [
            (f'sum({m}sessions_started{{window="24h"}}) / {au("24h")}', "sessions / DAU"),
        ], w=8),
        *lifecycle_panels(m),
        row("Sessions ($window window)"),
        timeseries("Sessions started by client", [(f"sum by (client) ({m}sessions_started{{{cw}}})", "{{client}}")],
                   stack=True, w=8),
        timeseries("Session duration p50 / p90", [
            (f"histogram_quantile({q}, sum by (le) ({m}session_duration_seconds_bucket{{{cw}}}))", f"p{int(q * 100)}")
            for q in (0.5, 0.9)
        ], unit="s", description="Earliest to latest event of sessions that ended (logout or idle) in the window.",
                   w=8),
        timeseries("Mean session duration by client", [
            (f"sum by (client) ({m}session_duration_seconds_gsum{{{cw}}})\n"
             f"  / sum by (client) ({m}session_duration_seconds_gcount{{{cw}}})", "{{client}}"),
        ], unit="s", w=8),
        row("Features ($window window)"),
        bargauge("Users per feature (top 15)",
                 [(f'topk(15, sum by (feature) ({m}feature_users{{window="$window"}}))', "{{feature}}")],
                 description='Distinct users per feature; "other" = features beyond the label cap.'),
        timeseries("Feature reach (share of weekly actives, top 10)", [
            (f'topk(10, sum by (feature) ({m}feature_users{{window="7d"}})\n  / scalar({au("7d")}))', "{{feature}}"),
        ], **PERCENT),
        timeseries("Features used per weekly active user", [
            (f'sum({m}user_feature_pairs{{window="7d"}}) / {au("7d")}', "features / WAU"),
        ], w=8),
        timeseries("Sign-ups and adopted sign-ups", [
            (f"sum by (window) ({m}signups)", "sign-ups {{window}}"),
            (f"sum by (window) ({m}adopted_signups)", "adopted {{window}}"),
        ], w=8),
        stat("Adoption rate (30d)", [
            (f'sum({m}adopted_signups{{window="30d"}}) / sum({m}signups{{window="30d"}})', "adopted"),
        ], unit="percentunit", decimals=1, w=8, h=8,
             description="New users active within the adoption period of their sign-up; recent ones still maturing."),
    ]
    variables = [
        query_var("client", "Client", f"label_values({m}sessions_started, client)"),
        query_var("window", "Window", f"label_values({m}sessions_started, window)", multi=False, default="24h"),
    ]
    return dashboard(
        "stream-app-usage", "stream_app / Product usage",
        "DAU/WAU/MAU, stickiness, lifecycle and power users, sessions and their duration, feature usage "
        "and adoption.",
        panels, variables,
    )


def lifecycle_panels(m: str) -> list[dict]:
    """Usage board, issue #13 item 6: lifecycle (Amplitude) per UTC day / ISO week and the
    power-user curve."""
    statuses = "Statuses: new (first activity), current (active in the previous one too), resurrected " \
               "(back after a gap), dormant (active in the previous one, not in this one)."
    return [
        row("Lifecycle and power users (UTC days, ISO weeks)"),
        bargauge("Lifecycle today", [
            (f'sum by (status) ({m}lifecycle_users{{period="current_day"}})', "{{status}}"),
        ], w=6, description="Today so far (UTC). " + statuses),
        bargauge("Lifecycle yesterday", [
            (f'sum by (status) ({m}lifecycle_users{{period="previous_day"}})', "{{status}}"),
        ], w=6, description=statuses),
        bargauge("Lifecycle this week", [
            (f'sum by (status) ({m}lifecycle_users{{period="current_week"}})', "{{status}}"),
        ], w=6, description="Monday to now (UTC). " + statuses),
        bargauge("Lifecycle last week", [
            (f'sum by (status) ({m}lifecycle_users{{period="previous_week"}})', "{{status}}"),
        ], w=6, description=statuses),
        bargauge("Power-user curve, last 7 days", [
            (f'sum by (days) ({m}power_users{{window="7d"}})', "{{days}} d"),
        ], description="Users by the number of UTC days they were active among the last 7 (today included)."),
        bargauge("Power-user curve, last 28 days", [
            (f'sum by (days) ({m}power_users{{window="28d"}})', "{{days}} d"),
        ], description="Users by the number of UTC days they were active among the last 28 (today included)."),
    ]


def revenue_board() -> dict:
    m = "stream_app_revenue_"
    p = 'plan=~"$plan"'
    per = 'period="$period"'
    mrr = f"sum({m}mrr_reporting{{{p}}})"
    arpa = f"{mrr} / sum({m}paying_accounts{{{p}}})"
    start_mrr = f"sum({m}period_start_mrr{{{per}}})"
    churn_rate = f"sum({m}period_churned_accounts{{{per}}})\n  / sum({m}period_start_accounts{{{per}}})"
    nrr = (
        f"({start_mrr}\n   + sum({m}period_cohort_mrr_movement{{{per}, movement=\"expansion\"}})\n"
        f"   - sum({m}period_cohort_mrr_movement{{{per}, movement=~\"contraction|churn\"}}))\n  / {start_mrr}"
    )
    mv = 'window="$window"'
    net_new = (
        f'sum({m}mrr_movement_amount{{{mv}, movement=~"new|expansion|reactivation"}})\n'
        f'  - sum({m}mrr_movement_amount{{{mv}, movement=~"contraction|churn"}})'
    )
    money = "In the reporting currency (see the stat on the right)."
    panels = [
        row("Recurring revenue now"),
        stat("MRR", [(mrr, "MRR")], decimals=0, description=money),
        stat("ARR", [(f"12 * {mrr}", "ARR")], decimals=0, description="12 x MRR. " + money),
        stat("Paying accounts", [(f"sum({m}paying_accounts{{{p}}})", "paying")]),
        stat("ARPA", [(arpa, "ARPA")], decimals=2, description="MRR per paying account. " + money),
        stat("Reporting currency", [(f"max by (currency) ({m}reporting_currency_info)", "{{currency}}")],
             text_mode="name"),
        stat("Unconverted subscriptions", [(f"sum({m}unconverted_subscriptions) or vector(0)", "unconverted")],
             steps=[("green", None), ("red", 1)],
             description="Paying subscriptions in a currency without an FX rate: missing from reporting MRR."),
        timeseries("MRR by plan", [(f"sum by (plan) ({m}mrr_reporting{{{p}}})", "{{plan}}")], stack=True, w=8),
        timeseries("MRR by currency (native units)", [(f"sum by (currency) ({m}mrr{{{p}}})", "{{currency}}")], w=8),
        timeseries("ARPA by plan", [
            (f"sum by (plan) ({m}mrr_reporting{{{p}}})\n  / sum by (plan) ({m}paying_accounts{{{p}}})", "{{plan}}"),
        ], w=8),
        row("MRR movements ($window window)"),
        bargauge("MRR moved by movement", [(f"sum by (movement) ({m}mrr_movement_amount{{{mv}}})", "{{movement}}")],
                 w=8, description="new, expansion, reactivation, contraction, churn; by the time they took effect."),
        stat("Net new MRR", [(net_new, "net new")], decimals=0, w=8, h=8,
             steps=[("red", None), ("green", 0)]),
        timeseries("Movements by type (count)", [(f"sum by (movement) ({m}mrr_movements{{{mv}}})", "{{movement}}")],
                   w=8),
        *churn_coming_panels(m, p, mv, per, money),
        row("Retention ($period)"),
        stat("Customer churn rate", [(churn_rate, "churn")], unit="percentunit", decimals=1,
             steps=[("green", None), ("orange", 0.03), ("red", 0.08)],
             description="Accounts paying at the period start that churned in it / accounts paying at the start."),
        stat("Customer retention rate", [
            (f"sum({m}period_retained_accounts{{{per}}})\n  / sum({m}period_start_accounts{{{per}}})", "retention"),
        ], unit="percentunit", decimals=1),
        stat("Net revenue retention", [(nrr, "NRR")], unit="percentunit", decimals=1,
             steps=[("red", None), ("orange", 0.9), ("green", 1)],
             description="(start MRR + expansion - contraction - churn of the start cohort) / start MRR."),
        stat("Lifetime value", [(f"({arpa})\n  / ({churn_rate})", "LTV")], decimals=0,
             description="ARPA / customer churn rate of the period (infinite while nobody churned). " + money),
        timeseries("Accounts: start, end, new, retained, churned", [
            (f"sum({m}period_{k}_accounts{{{per}}})", k) for k in ("start", "end", "new", "retained", "churned")
        ], w=8),
        row("Renewals, trials, purchases"),
        timeseries("Renewal rate by period", [
            (f"sum by (period) ({m}renewals_renewed)\n  / sum by (period) ({m}renewals_due)", "{{period}}"),
        ], w=6, **PERCENT),
        bargauge("Renewals due / renewed ($period)", [
            (f"sum({m}renewals_due{{{per}}})", "due"),
            (f"sum({m}renewals_renewed{{{per}}})", "renewed"),
        ], w=6),
        timeseries("Trial conversion rate by period", [
            (f"sum by (period) ({m}trials_converted)\n  / sum by (period) ({m}trials_started)", "{{period}}"),
        ], w=6, **PERCENT),
        bargauge("Trials started / converted ($period)", [
            (f"sum({m}trials_started{{{per}}})", "started"),
            (f"sum({m}trials_converted{{{per}}})", "converted"),
        ], w=6),
        stat("Repeat purchase rate", [
            (f"sum({m}repeat_purchasing_accounts) / sum({m}purchasing_accounts)", "repeat"),
        ], unit="percentunit", decimals=1, w=6),
        stat("Mean time between purchases", [
            (f"sum({m}purchase_gap_seconds_sum) / sum({m}purchase_gaps)", "gap"),
        ], unit="s", w=6),
        stat("Purchasing accounts", [(f"sum({m}purchasing_accounts)", "purchasing")], w=6),
        stat("Accounts tracked", [(f"sum({m}accounts_tracked)", "tracked")], w=6),
    ]
    variables = [
        query_var("plan", "Plan", f"label_values({m}mrr_reporting, plan)"),
        query_var("window", "Movement window", f"label_values({m}mrr_movements, window)", multi=False, default="30d"),
        query_var("period", "Period", f"label_values({m}period_start_accounts, period)",
                  multi=False, default="previous_month"),
    ]
    return dashboard(
        "stream-app-revenue", "stream_app / Revenue and retention",
        "MRR, ARR, ARPA, MRR movements, pending churn, churn by reason, failed payments, Quick Ratio, "
        "retention, NRR, GRR, renewals, trials and purchases.",
        panels, variables, time_from="now-7d", refresh="1m",
    )


def churn_coming_panels(m: str, p: str, mv: str, per: str, money: str) -> list[dict]:
    """Revenue board, issue #13 item 5: churn that is coming (pending cancellations), why churn
    happened (reason, failed payments) and the ratios built on the movements."""
    pending = f"sum({m}pending_churn_mrr{{{p}}})"
    gained = f'sum({m}mrr_movement_amount{{{mv}, movement=~"new|expansion|reactivation"}})'
    lost = f'sum({m}mrr_movement_amount{{{mv}, movement=~"contraction|churn"}})'
    start_mrr = f"sum({m}period_start_mrr{{{per}}})"
    grr = (f"({start_mrr}\n   - sum({m}period_cohort_mrr_movement{{{per}, movement=~\"contraction|churn\"}}))\n"
           f"  / {start_mrr}")
    return [
        row("Churn that is coming and why ($window window)"),
        stat("Pending churn MRR", [(pending, "pending")], decimals=0, steps=[("green", None), ("orange", 1)],
             description="MRR of paying subscriptions whose cancellation is scheduled but not yet effective "
                         "(alert StreamAppRevenuePendingChurnHigh). " + money),
        stat("Accounts with a pending cancellation", [(f"sum({m}pending_churn_accounts{{{p}}})", "accounts")]),
        stat("Pending churn share of MRR", [(f"{pending}\n  / sum({m}mrr_reporting{{{p}}})", "share")],
             unit="percentunit", decimals=1),
        bargauge("Pending churn MRR by plan", [(f"sum by (plan) ({m}pending_churn_mrr{{{p}}})", "{{plan}}")],
                 w=6, h=4),
        bargauge("Churned MRR by reason", [(f"sum by (reason) ({m}churn_movement_amount{{{mv}}})", "{{reason}}")],
                 w=6, h=4, description="voluntary, involuntary (failed payments), other (ended without a "
                                       "cancellation, or a free plan). " + money),
        stat("Quick Ratio", [(f"{gained}\n  / {lost}", "quick ratio")], decimals=2,
             steps=[("red", None), ("orange", 1), ("green", 4)],
             description="(new + expansion + reactivation) / (contraction + churn) MRR in the window."),
        stat("Gross revenue retention ($period)", [(grr, "GRR")], unit="percentunit", decimals=1,
             steps=[("red", None), ("orange", 0.8), ("green", 0.9)],
             description="(start MRR - contraction - churn of the start cohort) / start MRR: NRR without expansion."),
        stat("ASP (MRR per new account)", [
            (f'sum({m}mrr_movement_amount{{{mv}, movement="new"}})\n  / sum({m}mrr_movements{{{mv}, movement="new"}})',
             "ASP"),
        ], decimals=2, description="Average selling price: MRR of the new accounts / new accounts. " + money),
        stat("Mean time to churn", [
            (f'sum({m}churn_tenure_seconds_sum{{{mv}}})\n  / sum({m}mrr_movements{{{mv}, movement="churn"}})', "tenure"),
        ], unit="s", description="From an account's first payment to its churn, over the window's churns."),
        stat("Payment recovery rate", [
            (f"sum({m}recovered_payments{{{mv}}})\n  / sum({m}failed_payments{{{mv}}})", "recovered"),
        ], unit="percentunit", decimals=1, description="Failed payments that later succeeded / failed payments."),
        stat("Recovered revenue", [(f"sum({m}recovered_revenue{{{mv}}})", "recovered")], decimals=0,
             description="Amount of failed payments that later succeeded. " + money),
        timeseries("Churned MRR by reason over time", [
            (f"sum by (reason) ({m}churn_movement_amount{{{mv}}})", "{{reason}}"),
        ], stack=True),
        timeseries("Failed and recovered payments", [
            (f"sum({m}failed_payments{{{mv}}})", "failed"),
            (f"sum({m}recovered_payments{{{mv}}})", "recovered"),
        ]),
    ]


def voice_board() -> dict:
    m = "stream_app_voice_"
    w = 'window="$window"'

    def n(kind: str) -> str:
        return f'sum({m}responses{{kind="{kind}", {w}}})'

    nps = (
        f'100 * (sum({m}responses{{kind="nps", category="promoter", {w}}})\n'
        f'  - sum({m}responses{{kind="nps", category="detractor", {w}}}))\n  / {n("nps")}'
    )
    csat = f'100 * sum({m}responses{{kind="csat", category="satisfied", {w}}})\n  / {n("csat")}'
    ces = f'100 * sum({m}responses{{kind="ces", category="easy", {w}}})\n  / {n("ces")}'
    minimum = f"scalar(max({m}min_responses))"
    small = [{"type": "range", "options": {"from": 0, "to": 0.9999, "result": {"text": "small sample", "color": "orange"}}}]
    sample_note = ("Below 1 = fewer responses than the configured minimum "
                   "(stream_app_voice_min_responses): treat the score as indicative only.")
    panels = [
        row("Scores ($window window)"),
        stat("NPS", [(nps, "NPS")], decimals=0, steps=[("red", None), ("orange", 0), ("green", 30)],
             description="% promoters (9-10) - % detractors (0-6), -100..100. Check the sample marker."),
        stat("CSAT (% satisfied)", [(csat, "CSAT")], unit="percent", decimals=1,
             steps=[("red", None), ("orange", 70), ("green", 85)]),
        stat("CES (% easy)", [(ces, "CES")], unit="percent", decimals=1,
             steps=[("red", None), ("orange", 60), ("green", 80)]),
        stat("Responses", [(f"sum by (kind) ({m}responses{{{w}}})", "{{kind}}")],
             description="Sample size behind each score."),
        stat("Sample vs minimum", [(f"sum by (kind) ({m}responses{{{w}}}) / {minimum}", "{{kind}}")],
             decimals=1, steps=[("orange", None), ("green", 1)], mappings=small, description=sample_note),
        stat("Minimum responses", [(f"max({m}min_responses)", "minimum")]),
        timeseries("NPS, CSAT, CES over time", [(nps, "NPS"), (csat, "CSAT % satisfied"), (ces, "CES % easy")],
                   minimum=-100, maximum=100),
        timeseries("Responses by kind and category", [
            (f"sum by (kind, category) ({m}responses{{{w}}})", "{{kind}} {{category}}"),
        ], stack=True),
        timeseries("Mean score by kind", [
            (f"sum by (kind) ({m}score_gsum{{{w}}}) / sum by (kind) ({m}score_gcount{{{w}}})", "{{kind}}"),
        ], description="NPS mean rating 0-10, CSAT 1-5, CES 1-7 (higher = easier).", w=8),
        timeseries("Comment rate by kind", [
            (f"sum by (kind) ({m}commented_responses{{{w}}}) / sum by (kind) ({m}responses{{{w}}})", "{{kind}}"),
        ], w=8, **PERCENT),
        bargauge("NPS score distribution", [
            (f'sum by (le) ({m}score_bucket{{kind="nps", {w}}})', "{{le}}"),
        ], fmt="heatmap", w=8, description="Responses per NPS score 0-10 (buckets de-accumulated)."),
    ]
    panels += voice_comment_panels(m, w)
    variables = [query_var("window", "Window", f"label_values({m}responses, window)", multi=False, default="30d")]
    return dashboard(
        "stream-app-voice", "stream_app / Voice of the customer",
        "NPS, CSAT and CES with their response counts and a small-sample marker.",
        panels, variables, time_from="now-7d", refresh="1m",
    )


def voice_comment_panels(m: str, w: str) -> list[dict]:
    """Qualitative feedback: what commenters talk about and how they feel (docs/metrics.md)."""
    det = f'kind="nps", category="detractor", {w}'
    sent = f"{m}comment_sentiment"
    return [
        row("Comments: themes and sentiment ($window window)"),
        bargauge("What NPS detractors write about", [
            (f"sum by (theme) ({m}comment_themes{{{det}}})", "{{theme}}"),
        ], w=8, description="Detractor (0-6) comments per theme (keywords: STREAM_APP_VOICE_COMMENT_THEMES); "
                            "a comment about two themes counts in both, about none: other."),
        timeseries("Detractor comments per theme", [
            (f"sum by (theme) ({m}comment_themes{{{det}}})", "{{theme}}"),
        ], w=8, description="Alert StreamAppVoiceDetractorThemeSpike: the 7d count of a theme above "
                            "twice its weekly average of the 23 days before."),
        timeseries("Comment themes by kind", [
            (f"sum by (kind, theme) ({m}comment_themes{{{w}}})", "{{kind}} {{theme}}"),
        ], stack=True, w=8),
        timeseries("Mean comment sentiment by kind and category", [
            (f"sum by (kind, category) ({sent}_gsum{{{w}}})\n  / sum by (kind, category) ({sent}_gcount{{{w}}})",
             "{{kind}} {{category}}"),
        ], minimum=-1, maximum=1, w=12,
            description="VADER compound score of the comments, -1 (most negative) .. 1 (most positive)."),
        timeseries("Negative comment share by kind", [
            (f'sum by (kind) ({sent}_bucket{{le="-0.05", {w}}})\n  / sum by (kind) ({sent}_gcount{{{w}}})',
             "{{kind}}"),
        ], w=12, description="Comments with sentiment <= -0.05 (VADER's negative cut-off).", **PERCENT),
    ]


def health_board() -> dict:
    m = "stream_app_health_"
    band_colors = {"at_risk": "red", "neutral": "orange", "healthy": "green"}
    panels = [
        row("Accounts by band"),
        *[
            stat(f"{band.replace('_', ' ').capitalize()} accounts", [(f'sum({m}accounts{{band="{band}"}})', band)],
                 steps=[(color, None)])
            for band, color in band_colors.items()
        ],
        stat("Share at risk", [(f'sum({m}accounts{{band="at_risk"}}) / sum({m}accounts_scored)', "at risk")],
             unit="percentunit", decimals=1, steps=[("green", None), ("orange", 0.1), ("red", 0.2)]),
        stat("Mean health score", [(f"sum({m}score_gsum) / sum({m}score_gcount)", "mean")], decimals=2,
             steps=[("red", None), ("orange", 0.4), ("green", 0.7)]),
        stat("Accounts scored / tracked", [
            (f"sum({m}accounts_scored)", "scored"), (f"sum({m}accounts_tracked)", "tracked"),
        ]),
        stat("Mean score vs 7 d / 30 d ago", [
            ("stream_app:health_score:mean_change_7d", "vs 7 d"), ("stream_app:health_score:mean_change_30d", "vs 30 d"),
        ], decimals=3, steps=[("red", None), ("orange", -0.02), ("green", 0)], w=6,
            description="Mean health score now minus 7 / 30 days ago (recording rules; empty until Prometheus "
                        "holds that much history)."),
        stat("Share at risk vs 7 d / 30 d ago", [
            ("stream_app:health_accounts_at_risk:ratio_change_7d", "vs 7 d"),
            ("stream_app:health_accounts_at_risk:ratio_change_30d", "vs 30 d"),
        ], unit="percentunit", decimals=1, steps=[("green", None), ("orange", 0.01), ("red", 0.05)], w=6,
            description="Share of scored accounts at risk now minus 7 / 30 days ago (percentage points)."),
        timeseries("Accounts by band", [(f"sum by (band) ({m}accounts)", "{{band}}")], stack=True),
        timeseries("Health score median and p10", [
            (f"histogram_quantile(0.5, sum by (le) ({m}score_bucket))", "median"),
            (f"histogram_quantile(0.1, sum by (le) ({m}score_bucket))", "p10"),
        ], minimum=0, maximum=1),
        row("Components"),
        bargauge("Health score distribution", [(f"sum by (le) ({m}score_bucket)", "{{le}}")], fmt="heatmap", w=8,
                 description="Scored accounts per score bucket (0.1 wide); at risk < 0.4 <= neutral < 0.7 <= healthy."),
        timeseries("Mean component score", [
            (f"sum by (component) ({m}component_score_gsum)\n  / sum by (component) ({m}component_score_gcount)",
             "{{component}}"),
        ], minimum=0, maximum=1, w=8, description="Which component drags the score down."),
        bargauge("Accounts below 0.4, by component", [
            (f'sum by (component) ({m}component_score_bucket{{le="0.4"}})\n'
             f"  / sum by (component) ({m}component_score_gcount)", "{{component}}"),
        ], unit="percentunit", maximum=1, w=8,
                 description="Share of the accounts having the component whose component score is at most 0.4."),
        timeseries("Component score median by component", [
            (f"histogram_quantile(0.5, sum by (component, le) ({m}component_score_bucket))", "{{component}}"),
        ], minimum=0, maximum=1),
        text("Lowest accounts", "The lowest-scoring accounts with their components and the facts behind "
             "them: `GET /accounts/lowest?limit=20` on any worker (port 6066), or "
             "`/accounts/<id>/health` for one account. Account ids never become metric labels.", w=12, h=8),
    ]
    return dashboard(
        "stream-app-health", "stream_app / Customer health",
        "Accounts per health band, the score distribution and the component scores behind it.",
        panels, [], time_from="now-7d", refresh="1m",
    )


def pipeline_board() -> dict:
    i = 'instance=~"$instance"'
    it = i + ', topic=~"$topic"'
    ri = "$__rate_interval"
    lag = (
        f"stream_app_faust_topic_partition_end_offset{{{it}}}\n"
        f"  - on (instance, topic, partition) stream_app_faust_topic_partition_offset_commited{{{it}}}"
    )
    families = ("support", "usage", "revenue", "voice")
    panels = [
        row("Workers"),
        stat("Workers ready", [(f"sum(stream_app_worker_ready{{{i}}})", "ready")],
             description="Workers that recovered their partitions and are processing.",
             steps=[("red", None), ("green", 1)]),
        stat("Workers exposing metrics", [(f"count(stream_app_worker_ready{{{i}}})", "workers")]),
        stat("Events consumed / s", [(f"sum(rate(stream_app_events_consumed_total{{{it}}}[{ri}]))", "events/s")],
             unit="ops"),
        stat("Rejected / s", [(f"sum(rate(stream_app_events_invalid_total{{{it}}}[{ri}]))", "rejected/s")],
             unit="ops", steps=[("green", None), ("orange", 0.1)]),
        stat("Consumer lag", [(f"sum({lag})", "messages")],
             description="End offset minus committed offset, summed over the selected topics' partitions.",
             steps=[("green", None), ("orange", 1000), ("red", 10000)]),
        stat("Max watermark age", [(f"time() - min(max by (topic) (stream_app_last_event_timestamp_seconds{{{it}}}))",
                                    "age")],
             unit="s", description="Now minus the newest event time seen, for the stalest input topic.",
             steps=[("green", None), ("orange", 300), ("red", 1800)]),
        timeseries("Ready and assigned partitions per worker", [
            (f"sum by (instance) (stream_app_worker_ready{{{i}}})", "{{instance}} ready"),
            (f"sum by (instance) (stream_app_assigned_partitions{{{it}}})", "{{instance}} partitions"),
        ]),
        timeseries("Events consumed per second, by worker", [
            (f"sum by (instance) (rate(stream_app_events_consumed_total{{{it}}}[{ri}]))", "{{instance}}"),
        ], unit="ops", stack=True),
        row("Throughput"),
        timeseries("Events consumed per second, by topic", [
            (f"sum by (topic) (rate(stream_app_events_consumed_total{{{it}}}[{ri}]))", "{{topic}}"),
        ], unit="ops", stack=True, w=8),
        timeseries("Valid events per second, by type", [
            (f"sum by (type) (rate(stream_app_events_valid_total{{{it}}}[{ri}]))", "{{type}}"),
        ], unit="ops", stack=True, w=8),
        timeseries("Duplicates and too-late events per second", [
            (f"sum by (topic) (rate(stream_app_events_duplicate_total{{{it}}}[{ri}]))", "{{topic}} duplicate"),
            (f"sum by (topic) (rate(stream_app_events_too_late_total{{{it}}}[{ri}]))", "{{topic}} too late"),
        ], unit="ops", w=8, description="Duplicates are applied once; too-late events update state but miss windows."),
        row("Rejections and dead letters"),
        timeseries("Rejected events per second, by reason", [
            (f"sum by (reason) (rate(stream_app_events_invalid_total{{{it}}}[{ri}]))", "{{reason}}"),
        ], unit="ops", stack=True, w=8),
        timeseries("Dead-lettered events per second, by topic and reason", [
            (f"sum by (topic, reason) (rate(stream_app_events_deadlettered_total{{{it}}}[{ri}]))",
             "{{topic}} {{reason}}"),
        ], unit="ops", stack=True, w=8),
        bargauge("Rejections by reason, since worker start", [
            (f"sum by (reason) (stream_app_events_invalid_total{{{it}}})", "{{reason}}"),
        ], w=8, description="Counters reset when a worker restarts."),
        row("Lag"),
        timeseries("Event-time lag p50 / p99 (arrival - event time)", [
            (f"histogram_quantile({q}, sum by (topic, le) (rate(stream_app_event_delay_seconds_bucket{{{it}}}[{ri}])))",
             f"{{{{topic}}}} p{int(q * 100)}")
            for q in (0.5, 0.99)
        ], unit="s"),
        timeseries("Watermark age by topic (now - newest event time)", [
            (f"time() - max by (topic) (stream_app_last_event_timestamp_seconds{{{it}}})", "{{topic}}"),
        ], unit="s"),
        timeseries("Consumer lag by topic", [(f"sum by (topic) ({lag})", "{{topic}}")], stack=True, w=8),
        timeseries("Consumer lag by worker", [(f"sum by (instance) ({lag})", "{{instance}}")], stack=True, w=8),
        timeseries("Time since last message, by worker and topic", [
            (f"time() - max by (instance, topic) (stream_app_last_consumed_timestamp_seconds{{{it}}})",
             "{{instance}} {{topic}}"),
        ], unit="s", w=8, description="A partition with no new messages also grows here; compare with lag."),
        row("Metric engine"),
        timeseries("Family watermark age (now - newest event time per index)", [
            (f"time() - max(stream_app_{f}_watermark_timestamp_seconds{{{i}}})", f) for f in families
        ], unit="s", w=8),
        timeseries("Window contributions dropped (too late) per second", [
            (f"sum(rate(stream_app_{f}_window_dropped_contributions_total{{{i}}}[{ri}]))", f) for f in families
        ], unit="ops", w=8),
        timeseries("Offset commit latency p99", [
            (f"histogram_quantile(0.99, sum by (instance, le) "
             f"(rate(stream_app_faust_consumer_commit_latency_bucket{{{i}}}[{ri}])))", "{{instance}}"),
        ], unit="ms", w=8),
    ]
    variables = [
        query_var("instance", "Worker", "label_values(stream_app_worker_ready, instance)"),
        query_var("topic", "Input topic", "label_values(stream_app_events_consumed_total, topic)"),
    ]
    return dashboard(
        "stream-app-pipeline", "stream_app / Pipeline health",
        "Throughput, rejections and dead letters, event-time and consumer lag, per worker and readiness.",
        panels, variables, time_from="now-1h",
    )


BOARDS = {
    "pipeline.json": pipeline_board,
    "support.json": support_board,
    "usage.json": usage_board,
    "revenue.json": revenue_board,
    "voice.json": voice_board,
    "health.json": health_board,
}


def build() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {name: json.dumps(make(), indent=2, ensure_ascii=False) + "\n" for name, make in BOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed board differs")
    args = parser.parse_args(argv)
    stale = []
    for name, content in build().items():
        path = OUT_DIR / name
        if path.exists() and path.read_text() == content:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(content)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run {Path(__file__).name})", file=sys.stderr)
        return 1
    print(("up to date" if not stale else f"wrote {', '.join(stale)}"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
