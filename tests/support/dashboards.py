"""Reading the Grafana boards (deploy/grafana/dashboards) and the Prometheus rules
(deploy/prometheus/rules) the way Grafana and Prometheus do: their queries, variables and
recorded names. Used by the structural board checks and the end-to-end Prometheus test."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .paths import ROOT

DASHBOARD_DIR = ROOT / "deploy" / "grafana" / "dashboards"
BUILDER = ROOT / "deploy" / "grafana" / "build_dashboards.py"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
DATASOURCE_UID = "stream-app-prometheus"
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
# $name, ${name}, ${name:format}, [[name]]
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES_RE = re.compile(r"^label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*(\w+)\s*\)$")
METRIC_RE = re.compile(r"\b(stream_app_\w+)\b")
SELECTOR_RE = re.compile(r"\b(stream_app_\w+)\s*\{([^}]*)\}")
MATCHER_RE = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")


def log_profile():
    """Tickets at human pace (so SLA clocks run late and breach within hours), billing
    compressed to minutes (so trials convert, subscriptions renew and churn within hours)."""
    from stream_app.tools.generator import Profile

    return Profile(trial_seconds=600.0, month_seconds=1200.0, close_after_seconds=900.0)


def load_boards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def iter_panels(board: dict):
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def panel_queries(board: dict) -> list[tuple[str, dict]]:
    """(panel title, target) of every query target of a board."""
    return [(p["title"], t) for p in iter_panels(board) for t in p.get("targets", [])]


def variable_query(var: dict) -> str:
    q = var.get("query")
    return q["query"] if isinstance(q, dict) else q


def variables_in(expr: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in VARIABLE_RE.finditer(expr)}


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables the way the datasource would (values given per name)."""

    def repl(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        return values.get(name, m.group(0))

    return VARIABLE_RE.sub(repl, expr)


def selector_labels(expr: str) -> list[tuple[str, str, str]]:
    """(metric, label, value) of every label matcher written after a stream_app metric."""
    return [
        (metric, label, value)
        for metric, body in SELECTOR_RE.findall(expr)
        for label, value in MATCHER_RE.findall(body)
    ]


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.y*ml"))


def recorded_names() -> set[str]:
    """Names recorded by the rules in deploy/prometheus/rules (they may be queried too)."""
    import yaml

    names = set()
    for path in rule_files():
        doc = yaml.safe_load(path.read_text()) or {}
        for group in doc.get("groups", []):
            names |= {r["record"] for r in group.get("rules", []) if "record" in r}
    return names
